package tenancy

import (
	"crypto/sha256"
	"encoding/hex"
	"unicode/utf8"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/store"
)

// maxIdentifier is PostgreSQL's identifier limit (NAMEDATALEN-1), in bytes.
const maxIdentifier = pgtenant.MaxIdentifier

// hashedPrefixLen is how many bytes of the readable name a hashed name
// keeps before "_" and 16 hex digits: 46 + 1 + 16 = 63.
const hashedPrefixLen = maxIdentifier - 1 - 16

// PartitionName returns the name of tenant id's partition of table (a bare
// relation name, without schema). The name is meant for quoting with
// pgx.Identifier; it never needs to be unquoted.
//
// The name is table + "_t_" + an escaped id: lowercase letters and digits
// stand for themselves, '_' becomes "__", '-' becomes "_0" and an uppercase
// letter X becomes "_x". The escape is prefix-free, so two ids never share
// an escaped form: "a-b" → "a_0b", "a_b" → "a__b", "A" → "_a", "a" → "a".
// Names stay lowercase, so psql users need no quotes for ordinary ids.
//
// When that name would be longer than 62 bytes (long ids, long table names),
// the name is instead its first 46 bytes followed by "_" and 16 hex digits of
// SHA-256(table, id): exactly 63 bytes, PostgreSQL's identifier limit.
// Readable names are at most 62 bytes and hashed names exactly 63, so the
// two forms never meet; readable names of one table are distinct because the
// escape is injective; hashed names differ unless 64-bit hashes collide, and
// [Manager.Create] checks the catalog and refuses (with
// [ErrPartitionConflict]) rather than reuse a relation it did not create for
// this tenant.
//
// An invalid id returns an error matching [ErrInvalidTenantID].
func PartitionName(table string, id store.TenantID) (string, error) {
	if err := id.Validate(); err != nil {
		return "", err
	}
	return partitionName(table, string(id)), nil
}

func partitionName(table, id string) string {
	return relationName(table, "_t_", "", id)
}

// tombstoneName is the name of the tombstone partition that stands for
// tenant id in table once the tenant is dropped: table + "_x_" + the
// escaped id, hashed like a partition name when too long (with "dropped"
// in the hash input, so the two hashed forms differ too).
func tombstoneName(table, id string) string {
	return relationName(table, "_x_", "dropped\x00", id)
}

// relationName is table + infix + the escaped id, or when that is longer
// than 62 bytes its first 46 bytes, "_" and 16 hex digits of
// SHA-256(table, salt + id).
func relationName(table, infix, salt, id string) string {
	name := table + infix + escapeID(id)
	if len(name) < maxIdentifier {
		return name
	}
	prefix := truncateUTF8(name, hashedPrefixLen)
	for len(prefix) < hashedPrefixLen {
		// Only when a multi-byte character of the table name was cut:
		// keep the hashed form at exactly 63 bytes.
		prefix += "_"
	}
	sum := sha256.Sum256([]byte(table + "\x00" + salt + id))
	return prefix + "_" + hex.EncodeToString(sum[:8])
}

// escapeID maps a valid tenant id to lowercase letters, digits and '_'
// injectively; see PartitionName.
func escapeID(id string) string {
	b := make([]byte, 0, len(id)+8)
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, '_', c-'A'+'a')
		case c == '_':
			b = append(b, '_', '_')
		case c == '-':
			b = append(b, '_', '0')
		default:
			// Unreachable for validated ids; keep the mapping injective
			// anyway by spelling the byte out.
			const digits = "0123456789abcdef"
			b = append(b, '_', '1', digits[c>>4], digits[c&15])
		}
	}
	return string(b)
}

// unescapeID inverts escapeID; ok is false for strings escapeID never
// produces.
func unescapeID(s string) (id string, ok bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		case c == '_' && i+1 < len(s):
			i++
			switch d := s[i]; {
			case d == '_':
				b = append(b, '_')
			case d == '0':
				b = append(b, '-')
			case d >= 'a' && d <= 'z':
				b = append(b, d-'a'+'A')
			default:
				return "", false
			}
		default:
			return "", false
		}
	}
	return string(b), true
}

// truncateUTF8 returns the longest prefix of s of at most n bytes that does
// not cut a character in two.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
