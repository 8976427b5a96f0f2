package tenancy

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

func TestPartitionNameExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ table, id, want string }{
		{"messages", "acme", "messages_t_acme"},
		{"messages", "a-b", "messages_t_a_0b"},
		{"messages", "a_b", "messages_t_a__b"},
		{"messages", "A", "messages_t__a"},
		{"messages", "a", "messages_t_a"},
		{"streams", "default", "streams_t_default"}, // never the DEFAULT partition streams_default
		{"streams", store.DefaultPartition, "streams_t_default__partition"},
	} {
		got, err := PartitionName(tc.table, store.TenantID(tc.id))
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "PartitionName(%q, %q)", tc.table, tc.id)
	}
}

// tables covers the event tables, a table name that leaves no room for a
// readable suffix, and a non-ASCII one whose hashed prefix cuts a character.
var tables = []string{
	"streams", "messages", "subscriptions", "aggregate_snapshots",
	strings.Repeat("r", 63),
	strings.Repeat("é", 30), // 60 bytes
}

// smallIDs returns every id of 1 to 4 characters over an alphabet that
// exercises each escape: lower, upper, digit, '_' and '-'.
func smallIDs() []string {
	alphabet := []string{"a", "A", "0", "_", "-"}
	ids := []string{""}
	var out []string
	for n := 1; n <= 4; n++ {
		var next []string
		for _, p := range ids {
			for _, c := range alphabet {
				next = append(next, p+c)
			}
		}
		out = append(out, next...)
		ids = next
	}
	return out
}

// longIDs returns 63-byte (and near) ids that share long prefixes and
// differ only in their last or first character, plus case variants.
func longIDs() []string {
	var out []string
	prefix := strings.Repeat("tenant_", 9) // 63 bytes
	for _, c := range []string{"a", "A", "0", "_", "-", "z", "Z"} {
		out = append(out, prefix[:62]+c, c+prefix[1:], prefix[:40]+c, prefix[:41]+c)
	}
	out = append(out, strings.ToUpper(prefix), strings.Repeat("a", 63), strings.Repeat("A", 63),
		strings.Repeat("a-", 31)+"a", strings.Repeat("a_", 31)+"a")
	return out
}

func TestPartitionNamesNeverCollide(t *testing.T) {
	t.Parallel()
	ids := append(smallIDs(), longIDs()...)
	for _, table := range tables {
		seen := make(map[string]string, len(ids))
		for _, id := range ids {
			require.NoError(t, store.ValidateTenantID(id), id)
			name, err := PartitionName(table, store.TenantID(id))
			require.NoError(t, err)
			if other, dup := seen[name]; dup && other != id {
				t.Fatalf("table %q: ids %q and %q both map to %q", table, other, id, name)
			}
			seen[name] = id
			assert.LessOrEqual(t, len(name), 63, "%q", name)
			assert.True(t, utf8.ValidString(name), "%q", name)
		}
	}
}

func TestPartitionNameForms(t *testing.T) {
	t.Parallel()
	for _, table := range tables {
		for _, id := range append(smallIDs(), longIDs()...) {
			name := partitionName(table, id)
			readable := table + "_t_" + escapeID(id)
			if len(readable) <= 62 {
				// The readable form decodes back to the id.
				require.Equal(t, readable, name)
				back, ok := unescapeID(strings.TrimPrefix(name, table+"_t_"))
				require.True(t, ok, name)
				require.Equal(t, id, back)
			} else {
				require.Len(t, name, 63, "hashed names are exactly 63 bytes: %q", name)
				require.Regexp(t, `_[0-9a-f]{16}$`, name)
			}
		}
	}
	// The switch between forms is at 62 bytes: messages_t_ is 11 bytes.
	assert.Equal(t, "messages_t_"+strings.Repeat("a", 51), partitionName("messages", strings.Repeat("a", 51)))
	assert.Len(t, partitionName("messages", strings.Repeat("a", 52)), 63)
	assert.NotEqual(t, partitionName("messages", strings.Repeat("a", 52)), partitionName("messages", strings.Repeat("a", 53)))
}

func TestEscapeIsInjective(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, id := range append(smallIDs(), longIDs()...) {
		e := escapeID(id)
		if other, dup := seen[e]; dup {
			t.Fatalf("%q and %q escape to %q", other, id, e)
		}
		seen[e] = id
		back, ok := unescapeID(e)
		require.True(t, ok)
		require.Equal(t, id, back)
	}
}

var lowerName = regexp.MustCompile(`^[a-z0-9_]+$`)

func FuzzPartitionName(f *testing.F) {
	f.Add("a-b", "a_b")
	f.Add("A", "a")
	f.Add(strings.Repeat("x", 62)+"a", strings.Repeat("x", 62)+"b")
	f.Add("a__b", "a_-b")
	f.Fuzz(func(t *testing.T, a, b string) {
		if store.ValidateTenantID(a) != nil || store.ValidateTenantID(b) != nil {
			return
		}
		for _, table := range tables {
			na, nb := partitionName(table, a), partitionName(table, b)
			if len(na) > 63 || !utf8.ValidString(na) {
				t.Fatalf("PartitionName(%q, %q) = %q: not a valid identifier", table, a, na)
			}
			if lowerName.MatchString(table) && !lowerName.MatchString(na) {
				t.Fatalf("PartitionName(%q, %q) = %q: not a lowercase identifier", table, a, na)
			}
			if (a == b) != (na == nb) {
				t.Fatalf("table %q: ids %q and %q map to %q and %q", table, a, b, na, nb)
			}
		}
		if back, ok := unescapeID(escapeID(a)); !ok || back != a {
			t.Fatalf("escape of %q does not round-trip: %q", a, back)
		}
	})
}

func TestPartitionNameRejectsInvalidIDs(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", "o'brien", "a b", strings.Repeat("a", store.MaxTenantIDLength+1)} {
		_, err := PartitionName("messages", store.TenantID(id))
		require.ErrorIs(t, err, store.ErrInvalidTenantID, "%q", id)
	}
}
