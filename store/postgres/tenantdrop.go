package postgres

import (
	"fmt"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/store"
)

// codeCheckViolation is SQLSTATE check_violation.
const codeCheckViolation = "23514"

// isTenantDropped reports whether err is a write refused by the tombstone
// partition of a dropped tenant (see pgtenant.DroppedConstraint): the
// tenant's value is routed to a partition whose CHECK (false) rejects
// every row.
func isTenantDropped(err error) bool {
	pgErr, ok := pgError(err)
	return ok && pgErr.Code == codeCheckViolation && pgErr.ConstraintName == pgtenant.DroppedConstraint
}

// tenantDropped wraps err, a write refused because its tenant was dropped,
// so that it matches store.ErrTenantDropped.
func tenantDropped(what, partition string, err error) error {
	return fmt.Errorf("%s: %w: partition %q, nothing was written: %w", what, store.ErrTenantDropped, partition, err)
}
