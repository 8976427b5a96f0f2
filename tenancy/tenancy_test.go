package tenancy_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/tenancy"
)

func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	for _, id := range []string{
		"a", "Z", "0", "_", "-", "a-b", "a_b", "Acme", "tenant-42_eu",
		tenancy.DefaultPartition,
		strings.Repeat("a", tenancy.MaxLength),
		strings.Repeat("Z-", 31) + "9", // 63 bytes
	} {
		assert.NoError(t, tenancy.Validate(id), "%q", id)
		got, err := tenancy.Parse(id)
		assert.NoError(t, err)
		assert.Equal(t, tenancy.TenantID(id), got)
		assert.NoError(t, tenancy.TenantID(id).Validate())
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, id string
		want     []string // substrings of the error message
	}{
		{"empty", "", []string{"empty", "1 to 63"}},
		{"one byte too long", strings.Repeat("a", tenancy.MaxLength+1), []string{"64 bytes, at most 63 allowed"}},
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
			err := tenancy.Validate(tc.id)
			require.Error(t, err)
			assert.ErrorIs(t, err, tenancy.ErrInvalidTenantID)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			_, err = tenancy.Parse(tc.id)
			assert.ErrorIs(t, err, tenancy.ErrInvalidTenantID)
			_, err = tenancy.PartitionName("messages", tenancy.TenantID(tc.id))
			assert.ErrorIs(t, err, tenancy.ErrInvalidTenantID)
		})
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, ok := tenancy.FromContext(ctx)
	assert.False(t, ok)
	_, ok = tenancy.FromContext(tenancy.WithTenant(ctx, ""))
	assert.False(t, ok, "an empty tenant counts as none")
	got, ok := tenancy.FromContext(tenancy.WithTenant(ctx, "acme"))
	assert.True(t, ok)
	assert.Equal(t, tenancy.TenantID("acme"), got)
	inner := tenancy.WithTenant(tenancy.WithTenant(ctx, "acme"), "globex")
	got, _ = tenancy.FromContext(inner)
	assert.Equal(t, tenancy.TenantID("globex"), got)
}

var validID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"", "a", "a-b", "a_b", "x'); DROP TABLE messages; --", "café", "\xff", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := tenancy.Validate(s)
		if validID.MatchString(s) != (err == nil) {
			t.Fatalf("Validate(%q) = %v, regexp says valid=%v", s, err, validID.MatchString(s))
		}
		if err != nil {
			if !errors.Is(err, tenancy.ErrInvalidTenantID) {
				t.Fatalf("Validate(%q) = %v, want ErrInvalidTenantID", s, err)
			}
			return
		}
		for _, table := range []string{"streams", "messages", "aggregate_snapshots", strings.Repeat("t", 63)} {
			name, err := tenancy.PartitionName(table, tenancy.TenantID(s))
			if err != nil {
				t.Fatal(err)
			}
			if len(name) > 63 || !regexp.MustCompile(`^[a-z0-9_]+$`).MatchString(name) {
				t.Fatalf("PartitionName(%q, %q) = %q: not a short lowercase identifier", table, s, name)
			}
		}
	})
}
