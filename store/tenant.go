package store

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"
)

// TenantID names a tenant. A tenant is an event-store partition: every
// stream, message, checkpoint and read-model row belongs to exactly one.
// Tenant ids are case-sensitive: "Acme" and "acme" are two tenants.
type TenantID string

// DefaultPartition is the partition used when none is given, for
// single-tenant applications. It is a valid partition like any other for
// the event store and projections, but not a tenant: in PostgreSQL its
// rows live in the DEFAULT partitions, and the tenancy package's Manager
// refuses to create or drop it (erasing it would erase every write that
// named no partition).
const DefaultPartition = "default_partition"

// MaxTenantIDLength is the longest tenant id accepted, in bytes: PostgreSQL's
// identifier limit.
const MaxTenantIDLength = 63

// ErrInvalidTenantID matches every tenant id validation failure.
var ErrInvalidTenantID = errors.New("invalid tenant id")

// ValidateTenantID reports whether id is an acceptable tenant (partition) id:
// 1 to MaxTenantIDLength bytes of ASCII letters, digits, '_' and '-'. Anything else
// (quotes, semicolons, spaces, control characters, non-ASCII letters,
// invalid UTF-8) is rejected, so an id can never carry SQL, and it maps to a
// partition table name without ambiguity (the tenancy package's
// PartitionName).
//
// The error matches [ErrInvalidTenantID] and says what is wrong: empty, too
// long (with the length), or which character at which byte offset.
func ValidateTenantID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty (want 1 to %d ASCII letters, digits, '_' or '-')", ErrInvalidTenantID, MaxTenantIDLength)
	}
	if len(id) > MaxTenantIDLength {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidTenantID, len(id), MaxTenantIDLength)
	}
	for i := 0; i < len(id); i++ {
		if validByte(id[i]) {
			continue
		}
		r, size := utf8.DecodeRuneInString(id[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("%w: %q contains the invalid UTF-8 byte 0x%02x at byte %d (allowed: ASCII letters, digits, '_' and '-')",
				ErrInvalidTenantID, id, id[i], i)
		}
		return fmt.Errorf("%w: %q contains %q at byte %d (allowed: ASCII letters, digits, '_' and '-')",
			ErrInvalidTenantID, id, r, i)
	}
	return nil
}

func validByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ParseTenantID validates s and returns it as a TenantID.
func ParseTenantID(s string) (TenantID, error) {
	if err := ValidateTenantID(s); err != nil {
		return "", err
	}
	return TenantID(s), nil
}

// Validate reports whether t is an acceptable tenant id; see
// [ValidateTenantID].
func (t TenantID) Validate() error { return ValidateTenantID(string(t)) }

// String returns the tenant id as a string.
func (t TenantID) String() string { return string(t) }

type tenantKey struct{}

// WithTenant returns a copy of ctx that carries tenant t. It does not
// validate t; whatever consumes the tenant does.
func WithTenant(ctx context.Context, t TenantID) context.Context {
	return context.WithValue(ctx, tenantKey{}, t)
}

// TenantFromContext returns the tenant carried by ctx, if any. An empty
// tenant counts as none.
func TenantFromContext(ctx context.Context) (TenantID, bool) {
	t, ok := ctx.Value(tenantKey{}).(TenantID)
	return t, ok && t != ""
}
