package tenancy

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"
)

// TenantID names a tenant. A tenant is an event-store partition: every
// stream, message, checkpoint and read-model row belongs to exactly one.
type TenantID string

// DefaultPartition is the partition used when none is given, for
// single-tenant applications.
const DefaultPartition = "default_partition"

// MaxLength is the longest tenant id accepted, in bytes.
const MaxLength = 63

// ErrInvalidTenantID matches every tenant id validation failure.
var ErrInvalidTenantID = errors.New("invalid tenant id")

// Validate reports whether id is an acceptable tenant (partition) id:
// 1 to MaxLength bytes of ASCII letters, digits, '_' and '-'. Anything else
// (quotes, semicolons, spaces, non-ASCII) is rejected, so an id can never
// carry SQL or collide after case folding in a table name.
func Validate(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidTenantID)
	}
	if len(id) > MaxLength {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidTenantID, len(id), MaxLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			continue
		}
		r, _ := utf8.DecodeRuneInString(id[i:])
		return fmt.Errorf("%w: %q contains %q at byte %d (allowed: letters, digits, '_' and '-')", ErrInvalidTenantID, id, r, i)
	}
	return nil
}

// Validate reports whether t is an acceptable tenant id; see [Validate].
func (t TenantID) Validate() error { return Validate(string(t)) }

// String returns the tenant id as a string.
func (t TenantID) String() string { return string(t) }

type ctxKey struct{}

// WithTenant returns a copy of ctx that carries tenant t.
func WithTenant(ctx context.Context, t TenantID) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant carried by ctx, if any.
func FromContext(ctx context.Context) (TenantID, bool) {
	t, ok := ctx.Value(ctxKey{}).(TenantID)
	return t, ok && t != ""
}
