package store_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

func TestValidateTenantIDAccepts(t *testing.T) {
	t.Parallel()
	for _, id := range []string{
		"a", "Z", "0", "_", "-", "a-b", "a_b", "Acme", "tenant-42_eu",
		store.DefaultPartition,
		strings.Repeat("a", store.MaxTenantIDLength),
		strings.Repeat("Z-", 31) + "9", // 63 bytes
	} {
		assert.NoError(t, store.ValidateTenantID(id), "%q", id)
		got, err := store.ParseTenantID(id)
		assert.NoError(t, err)
		assert.Equal(t, store.TenantID(id), got)
		assert.NoError(t, store.TenantID(id).Validate())
	}
}

func TestValidateTenantIDRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, id string
		want     []string // substrings of the error message
	}{
		{"empty", "", []string{"empty", "1 to 63"}},
		{"one byte too long", strings.Repeat("a", store.MaxTenantIDLength+1), []string{"64 bytes, at most 63 allowed"}},
		{"far too long", strings.Repeat("a", 1000), []string{"1000 bytes"}},
		{"single quote", "o'brien", []string{`'\''`, "at byte 1"}},
		{"double quote", `a"b`, []string{`'"'`, "at byte 1"}},
		{"injection", "x'); DROP TABLE messages; --", []string{`'\''`, "at byte 1"}},
		{"semicolon", "a;b", []string{`';'`, "at byte 1"}},
		{"space", "acme corp", []string{`' '`, "at byte 4"}},
		{"leading space", " acme", []string{`' '`, "at byte 0"}},
		{"tab", "a\tb", []string{`'\t'`}},
		{"newline", "a\nb", []string{`'\n'`}},
		{"NUL", "a\x00b", []string{`'\x00'`}},
		{"dot", "a.b", []string{`'.'`}},
		{"slash", "a/b", []string{`'/'`}},
		{"backslash", `a\b`, []string{`'\\'`}},
		{"percent", "a%", []string{`'%'`}},
		{"unicode letter", "café", []string{`'é'`, "at byte 3"}},
		{"cjk", "日本", []string{`'日'`, "at byte 0"}},
		{"emoji", "a🙂", []string{`'🙂'`, "at byte 1"}},
		{"fullwidth digit", "１", []string{`'１'`}},
		{"invalid utf-8", "a\xffb", []string{"invalid UTF-8 byte 0xff", "at byte 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := store.ValidateTenantID(tc.id)
			require.Error(t, err)
			assert.ErrorIs(t, err, store.ErrInvalidTenantID)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			_, err = store.ParseTenantID(tc.id)
			assert.ErrorIs(t, err, store.ErrInvalidTenantID)
		})
	}
}

func TestTenantContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, ok := store.TenantFromContext(ctx)
	assert.False(t, ok)
	_, ok = store.TenantFromContext(store.WithTenant(ctx, ""))
	assert.False(t, ok, "an empty tenant counts as none")
	got, ok := store.TenantFromContext(store.WithTenant(ctx, "acme"))
	assert.True(t, ok)
	assert.Equal(t, store.TenantID("acme"), got)
	inner := store.WithTenant(store.WithTenant(ctx, "acme"), "globex")
	got, _ = store.TenantFromContext(inner)
	assert.Equal(t, store.TenantID("globex"), got)
}

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

func FuzzValidateTenantID(f *testing.F) {
	for _, s := range []string{"", "a", "a-b", "a_b", "x'); DROP TABLE messages; --", "café", "\xff", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := store.ValidateTenantID(s)
		if validID.MatchString(s) != (err == nil) {
			t.Fatalf("ValidateTenantID(%q) = %v, regexp says valid=%v", s, err, validID.MatchString(s))
		}
		if err != nil && !errors.Is(err, store.ErrInvalidTenantID) {
			t.Fatalf("ValidateTenantID(%q) = %v, want ErrInvalidTenantID", s, err)
		}
	})
}
