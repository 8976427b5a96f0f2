package postgres

import (
	"fmt"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/store"
)

// codeCheckViolation is SQLSTATE check_violation.
const codeCheckViolation = "23514"

// tenantDropped wraps err, a write refused because its tenant was dropped,
// so that it matches store.ErrTenantDropped.
func tenantDropped(what, partition string, err error) error {
	return fmt.Errorf("%s: %w: partition %q, nothing was written: %w", what, store.ErrTenantDropped, partition, err)
}

// IsTenantDropped reports whether err, returned by any statement, is a
// write refused because its tenant was dropped: the tenant's value is
// routed to a tombstone partition that tenancy.Manager.Drop left in its
// place (see docs/tenancy.md). Nothing was written, and the same write
// fails again until the tenant is created anew. The store's own appends
// return such refusals as errors matching store.ErrTenantDropped; code that
// writes tenant tables with its own SQL (projections, read models) can
// branch on this predicate.
func IsTenantDropped(err error) bool {
	pgErr, ok := pgError(err)
	return ok && pgErr.Code == codeCheckViolation && pgErr.ConstraintName == pgtenant.DroppedConstraint
}
