package postgres

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/store"
)

// A tombstone's check violation is a dropped tenant, not an invalid
// argument, although both are SQLSTATE class 23; any other check violation
// stays an invalid argument.
func TestAppendErrorOfADroppedTenant(t *testing.T) {
	dropped := fmt.Errorf("exec: %w", &pgconn.PgError{Code: "23514", ConstraintName: pgtenant.DroppedConstraint})
	other := &pgconn.PgError{Code: "23514", ConstraintName: "amount_positive"}

	err := appendError("s", "acme", dropped)
	if !errors.Is(err, store.ErrTenantDropped) || errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("tombstone refusal: got %v, want ErrTenantDropped only", err)
	}
	if !IsTenantDropped(dropped) || IsTenantDropped(other) || IsTenantDropped(errors.New("x")) {
		t.Error("IsTenantDropped misclassifies")
	}
	err = appendError("s", "acme", other)
	if errors.Is(err, store.ErrTenantDropped) || !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("other check violation: got %v, want ErrInvalidArgument", err)
	}
}
