package readmodel

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// The expected outputs below were produced by JavaScript's
// encodeURIComponent (Node.js).
func TestEncodeURIComponentMatchesJavaScript(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"ABCxyz0189", "ABCxyz0189"},
		{"hello world", "hello%20world"},
		{"a|b:c", "a%7Cb%3Ac"},
		{"-_.!~*'()", "-_.!~*'()"},
		{"#$&+,/:;=?@", "%23%24%26%2B%2C%2F%3A%3B%3D%3F%40"},
		{"é", "%C3%A9"},
		{"日本", "%E6%97%A5%E6%9C%AC"},
		{"😀", "%F0%9F%98%80"},
		{"%", "%25"},
		{"[]{}", "%5B%5D%7B%7D"},
		{"\n\t", "%0A%09"},
		{"\"<>\\^`", "%22%3C%3E%5C%5E%60"},
		{"\x00", "%00"},
		{"€", "%E2%82%AC"},
		{"\x7f", "%7F"},
		{"tenant-1", "tenant-1"},
		{"cart/42?x=1&y=2", "cart%2F42%3Fx%3D1%26y%3D2"},
		{"Ω≈ç√∫", "%CE%A9%E2%89%88%C3%A7%E2%88%9A%E2%88%AB"},
		{"a b+c", "a%20b%2Bc"},
	}
	for _, c := range cases {
		if got := encodeURIComponent(c.in); got != c.want {
			t.Errorf("encodeURIComponent(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRowIDMatchesJavaScript(t *testing.T) {
	t.Parallel()
	cases := []struct {
		keys map[string]any
		want string
	}{
		{map[string]any{"tenant_id": "t1", "cart_id": "c|1:2", "partition": "default_partition"},
			"cart_id:c%7C1%3A2|partition:default_partition|tenant_id:t1"},
		{map[string]any{"a b": "x y", "z": "é"}, "a%20b:x%20y|z:%C3%A9"},
		// JavaScript's String() of each value.
		{map[string]any{"id": 42, "flag": true, "n": nil, "f": 1.5, "big": 1e21, "small": 1.5e-7},
			"big:1e%2B21|f:1.5|flag:true|id:42|n:null|small:1.5e-7"},
		{map[string]any{}, ""},
	}
	for _, c := range cases {
		if got := RowID(c.keys); got != c.want {
			t.Errorf("RowID(%v) = %q, want %q", c.keys, got, c.want)
		}
	}
}

func TestRowIDIsUnambiguous(t *testing.T) {
	t.Parallel()
	// Separators inside keys or values must not make two key sets collide.
	a := RowID(map[string]any{"a": "1|b:2"})
	b := RowID(map[string]any{"a": "1", "b": "2"})
	if a == b {
		t.Fatalf("two different key sets share the stream id %q", a)
	}
}

func TestKeyString(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   any
		want string
	}{
		{nil, "null"}, {"s", "s"}, {[]byte("b"), "b"}, {true, "true"}, {false, "false"},
		{int(-3), "-3"}, {int8(8), "8"}, {int16(16), "16"}, {int32(32), "32"}, {int64(1 << 40), "1099511627776"},
		{uint(1), "1"}, {uint8(2), "2"}, {uint16(3), "3"}, {uint32(4), "4"}, {uint64(5), "5"},
		{0.1, "0.1"}, {-0.0, "0"}, {100.0, "100"}, {1e21, "1e+21"}, {123456789012345680000.0, "123456789012345680000"},
		{1e-7, "1e-7"}, {0.000001, "0.000001"}, {float32(0.5), "0.5"},
		{stringer{}, "stringer!"}, {struct{ A int }{1}, "{1}"},
	}
	for _, c := range cases {
		if got := keyString(c.in); got != c.want {
			t.Errorf("keyString(%#v) = %q, want %q", c.in, got, c.want)
		}
	}
}

type stringer struct{}

func (stringer) String() string { return "stringer!" }

func FuzzEncodeURIComponent(f *testing.F) {
	for _, s := range []string{"", "abc", "a b", "é", "😀", "\xff\xfe", "%41", "a|b:c", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := encodeURIComponent(s)
		for i := 0; i < len(enc); i++ {
			c := enc[i]
			if c != '%' && !unreserved(c) {
				t.Fatalf("encodeURIComponent(%q) = %q keeps reserved byte %q", s, enc, c)
			}
			if c == '%' && (i+2 >= len(enc) || strings.ToUpper(enc[i+1:i+3]) != enc[i+1:i+3]) {
				t.Fatalf("encodeURIComponent(%q) = %q has a malformed or lower-case escape", s, enc)
			}
		}
		dec, err := url.PathUnescape(enc)
		if err != nil {
			t.Fatalf("PathUnescape(%q): %v", enc, err)
		}
		if dec != s {
			t.Fatalf("round trip of %q gave %q", s, dec)
		}
		if utf8.ValidString(s) && strings.ContainsAny(enc, "|:") {
			t.Fatalf("encodeURIComponent(%q) = %q contains a stream-id separator", s, enc)
		}
	})
}
