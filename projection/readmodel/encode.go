package readmodel

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// encodeURIComponent escapes s exactly like JavaScript's
// encodeURIComponent: the unreserved characters A–Z a–z 0–9 - _ . ! ~ * ' ( )
// are kept and every other byte of the UTF-8 encoding is written as %XX with
// upper-case hex digits. For valid UTF-8 the result is byte for byte what
// JavaScript returns; bytes that are not valid UTF-8 (where JavaScript has
// no equivalent string) are escaped one by one, so decoding the result
// always gives s back.
func encodeURIComponent(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0F])
	}
	return b.String()
}

// unreserved reports whether JavaScript's encodeURIComponent leaves c as is.
func unreserved(c byte) bool {
	switch {
	case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '!', '~', '*', '\'', '(', ')':
		return true
	}
	return false
}

// RowID returns the id of the read-model row with these keys: the stream_id
// under which the InTable variant stores the row's state in the snapshots
// table. It is the entries sorted
// by key name, each written as encodeURIComponent(key) ":"
// encodeURIComponent(value), joined with "|". Values are written as
// keyString does. Encoding makes the id unambiguous: neither ':' nor '|'
// survives encodeURIComponent.
//
// Key names are sorted by byte (code point) order; the seed sorts with
// JavaScript's localeCompare, which gives the same order for the
// lower-case snake_case column names read models use.
func RowID(keys map[string]any) string {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(encodeURIComponent(k))
		b.WriteByte(':')
		b.WriteString(encodeURIComponent(keyString(keys[k])))
	}
	return b.String()
}

// keyString renders a key value the way JavaScript's String() does for the
// values a key usually holds: strings as they are, integers in decimal,
// finite floats in their shortest form, booleans as true/false, nil as
// "null". Values implementing fmt.Stringer use String; anything else is
// formatted with fmt's %v.
func keyString(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case []byte:
		return string(x)
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.FormatInt(int64(x), 10)
	case int8:
		return strconv.FormatInt(int64(x), 10)
	case int16:
		return strconv.FormatInt(int64(x), 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint:
		return strconv.FormatUint(uint64(x), 10)
	case uint8:
		return strconv.FormatUint(uint64(x), 10)
	case uint16:
		return strconv.FormatUint(uint64(x), 10)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float32:
		return formatFloat(float64(x), 32)
	case float64:
		return formatFloat(x, 64)
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprintf("%v", v)
	}
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0" // JavaScript prints -0 as "0" too
	}
	if abs := math.Abs(f); abs >= 1e21 || abs < 1e-6 {
		// JavaScript switches to exponent notation here and writes the
		// exponent without leading zeros: 1e+21, 1.5e-7.
		mant, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, bits), "e")
		return mant + "e" + exp[:1] + strings.TrimLeft(exp[1:], "0")
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}
