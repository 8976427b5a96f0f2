package cart_test

import (
	"encoding/json"
	"errors"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/troupehq/troupe/examples/cart/cart"
)

func TestParseDecimal(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"0", "0"},
		{"-0", "0"},
		{"+0.000", "0"},
		{"25", "25"},
		{"25.00", "25"},
		{"19.99", "19.99"},
		{"-19.990", "-19.99"},
		{"+7", "7"},
		{"0.1", "0.1"},
		{".5", "0.5"},
		{"5.", "5"},
		{"007.50", "7.5"},
		{"1e2", "100"},
		{"1.999E1", "19.99"},
		{"25e-2", "0.25"},
		{"-1.5e+3", "-1500"},
		{"0e999", "0"},
		{"1e-30", "0.000000000000000000000000000001"},
		{"1" + strings.Repeat("0", 39), "1" + strings.Repeat("0", 39)},
		{"0." + strings.Repeat("0", 29) + "1", "0." + strings.Repeat("0", 29) + "1"},
		{"1.5" + strings.Repeat("0", 100), "1.5"},
	}
	for _, tc := range cases {
		d, err := cart.ParseDecimal(tc.in)
		if err != nil {
			t.Errorf("ParseDecimal(%q): %v", tc.in, err)
			continue
		}
		if d.String() != tc.want {
			t.Errorf("ParseDecimal(%q) = %s, want %s", tc.in, d, tc.want)
		}
	}
}

func TestParseDecimalRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", " 1", "1 ", "-", "+", ".", "-.", "1..2", "1.2.3", "1e", "1e+", "e5", "1,000", "1_000",
		"0x10", "NaN", "Inf", "-Infinity", "1/3", "١", "12a", "--1", "1e1.5",
		"1e1001", "1e-99999999999999999999", // exponent out of range, caught before any arithmetic
		"1" + strings.Repeat("0", 40), // 41 integer digits
		"1e40",
		"0." + strings.Repeat("0", 30) + "1", // 31 fraction digits
		"1e-31",
		strings.Repeat("1", 300), // too long
	} {
		d, err := cart.ParseDecimal(in)
		if err == nil {
			t.Errorf("ParseDecimal(%.60q) = %s, want an error", in, d)
			continue
		}
		if !errors.Is(err, cart.ErrInvalidDecimal) {
			t.Errorf("ParseDecimal(%.60q) error %v does not match ErrInvalidDecimal", in, err)
		}
	}
}

func TestDecimalArithmeticIsExact(t *testing.T) {
	t.Parallel()
	if got := dec("0.1").MulInt(3); !got.Equal(dec("0.3")) || got.String() != "0.3" {
		t.Errorf("0.1 × 3 = %s, want 0.3", got)
	}
	if got := dec("0.1").Add(dec("0.2")); got.String() != "0.3" {
		t.Errorf("0.1 + 0.2 = %s, want 0.3", got)
	}
	total := dec("25").MulInt(2).Add(dec("15").MulInt(1)).Sub(dec("25"))
	if total.String() != "40" || !total.Equal(cart.DecimalFromInt(40)) {
		t.Errorf("2×25 + 1×15 − 25 = %s, want 40", total)
	}
	if got := dec("19.99").Mul(dec("0.5")); got.String() != "9.995" {
		t.Errorf("19.99 × 0.5 = %s", got)
	}
	if got := dec("1.10").Sub(dec("1.1")); !got.IsZero() || got.Sign() != 0 || got.String() != "0" {
		t.Errorf("1.10 − 1.1 = %s, want 0", got)
	}
	if got := dec("-2.5").Neg(); got.String() != "2.5" {
		t.Errorf("−(−2.5) = %s", got)
	}
	if got := cart.NewDecimal(1999, 2); got.String() != "19.99" {
		t.Errorf("NewDecimal(1999, 2) = %s", got)
	}
	if got := cart.NewDecimal(-500, 3); got.String() != "-0.5" {
		t.Errorf("NewDecimal(-500, 3) = %s", got)
	}
	if got := dec("0.05").MulInt(0); !got.IsZero() {
		t.Errorf("0.05 × 0 = %s", got)
	}
	var zero cart.Decimal
	if zero.String() != "0" || !zero.Add(dec("1.5")).Equal(dec("1.5")) || zero.Cmp(dec("-1")) != 1 {
		t.Error("the zero Decimal does not behave as 0")
	}
	// Operands are never modified.
	a, b := dec("1.5"), dec("2.25")
	_, _, _, _ = a.Add(b), a.Sub(b), a.Mul(b), a.MulInt(7)
	if a.String() != "1.5" || b.String() != "2.25" {
		t.Errorf("arithmetic modified its operands: %s, %s", a, b)
	}
}

func TestDecimalCompare(t *testing.T) {
	t.Parallel()
	ordered := []string{"-100", "-1.5", "-0.001", "0", "0.001", "0.01", "0.1", "1", "1.05", "1.5", "10", "1e3"}
	for i, x := range ordered {
		for j, y := range ordered {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := dec(x).Cmp(dec(y)); got != want {
				t.Errorf("Cmp(%s, %s) = %d, want %d", x, y, got, want)
			}
		}
	}
	if dec("-3").Sign() != -1 || dec("3").Sign() != 1 {
		t.Error("Sign is wrong")
	}
}

// Equal values are identical under reflect.DeepEqual however they were
// made, so events and states holding Decimals compare as expected.
func TestDecimalIsCanonical(t *testing.T) {
	t.Parallel()
	same := [][]cart.Decimal{
		{dec("0.3"), dec("0.1").MulInt(3), dec("0.30"), dec("3e-1"), cart.NewDecimal(30, 2), dec("0.6").Sub(dec("0.3"))},
		{dec("40"), dec("4e1"), dec("40.000"), cart.DecimalFromInt(40), dec("25").MulInt(2).Sub(dec("10"))},
		{{}, dec("0"), dec("-0.0"), dec("1.5").Sub(dec("1.5")), cart.NewDecimal(0, 9), dec("7").MulInt(0)},
	}
	for _, group := range same {
		for i := 1; i < len(group); i++ {
			if !reflect.DeepEqual(group[0], group[i]) {
				t.Errorf("%s and %s are equal but not DeepEqual", group[0], group[i])
			}
		}
	}
}

func TestDecimalJSON(t *testing.T) {
	t.Parallel()
	type priced struct {
		Price cart.Decimal `json:"price"`
	}
	for in, want := range map[string]string{
		`{"price":25}`:        `{"price":25}`,
		`{"price":19.99}`:     `{"price":19.99}`,
		`{"price":"19.99"}`:   `{"price":19.99}`,
		`{"price":-0.30}`:     `{"price":-0.3}`,
		`{"price":1.5e2}`:     `{"price":150}`,
		`{"price":"2.5E-1"}`:  `{"price":0.25}`,
		`{"price":null}`:      `{"price":0}`,
		`{}`:                  `{"price":0}`,
		`{"price":0.1}`:       `{"price":0.1}`,
		`{"price": 7 }`:       `{"price":7}`,
		`{"price":"0.000"}`:   `{"price":0}`,
		`{"price":12345.678}`: `{"price":12345.678}`,
	} {
		var p priced
		if err := json.Unmarshal([]byte(in), &p); err != nil {
			t.Errorf("decode %s: %v", in, err)
			continue
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != want {
			t.Errorf("decode %s and encode = %s, want %s", in, out, want)
		}
	}
	for _, in := range []string{`{"price":"abc"}`, `{"price":true}`, `{"price":"1 "}`, `{"price":[1]}`,
		`{"price":{}}`, `{"price":""}`, `{"price":1e5000}`, `{"price":"NaN"}`} {
		var p priced
		err := json.Unmarshal([]byte(in), &p)
		if err == nil {
			t.Errorf("decode %s = %s, want an error", in, p.Price)
		}
	}
	var p priced
	if err := json.Unmarshal([]byte(`{"price":"1e40"}`), &p); !errors.Is(err, cart.ErrInvalidDecimal) {
		t.Errorf("decode out-of-range string: %v, want ErrInvalidDecimal", err)
	}
}

func TestDecimalText(t *testing.T) {
	t.Parallel()
	var d cart.Decimal
	if err := d.UnmarshalText([]byte("12.50")); err != nil || d.String() != "12.5" {
		t.Fatalf("UnmarshalText = %s, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("x")); !errors.Is(err, cart.ErrInvalidDecimal) {
		t.Fatalf("UnmarshalText(x) = %v", err)
	}
	if txt, _ := dec("-0.05").MarshalText(); string(txt) != "-0.05" {
		t.Fatalf("MarshalText = %s", txt)
	}
	if f := dec("19.99").Float64(); f != 19.99 {
		t.Fatalf("Float64 = %v", f)
	}
	if r := dec("0.25").Rat(); r.Cmp(big.NewRat(1, 4)) != 0 {
		t.Fatalf("Rat = %v", r)
	}
}

// FuzzParseDecimal checks that parsing never panics or hangs, that what it
// accepts is exactly the number big.Rat reads, and that a parsed value
// survives String and JSON round trips unchanged.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0", "25", "19.99", "-0.30", ".5", "5.", "1e2", "1.999E1", "-1.5e+3", "1e-30",
		"1e1001", "0e999", "1e40", "+7", "abc", "1..2", "", "-", "9999999999999999999999999999999999999999",
		"0.000000000000000000000000000001", `"1"`, "null"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := cart.ParseDecimal(s)
		if err != nil {
			if !errors.Is(err, cart.ErrInvalidDecimal) {
				t.Fatalf("ParseDecimal(%q) error %v does not match ErrInvalidDecimal", s, err)
			}
			return
		}
		str := d.String()
		if !canonical.MatchString(str) || str == "-0" {
			t.Fatalf("ParseDecimal(%q).String() = %q, not plain canonical notation", s, str)
		}
		again, err := cart.ParseDecimal(str)
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("ParseDecimal(%q) = %s does not survive a String round trip: %v, %v", s, str, again, err)
		}
		js, err := json.Marshal(d)
		if err != nil || string(js) != str {
			t.Fatalf("json.Marshal(%s) = %s, %v", str, js, err)
		}
		var fromJSON cart.Decimal
		if err := json.Unmarshal(js, &fromJSON); err != nil || !reflect.DeepEqual(fromJSON, d) {
			t.Fatalf("JSON round trip of %s = %v, %v", str, fromJSON, err)
		}
		quoted, _ := json.Marshal(s)
		var fromString cart.Decimal
		if err := json.Unmarshal(quoted, &fromString); err != nil || !reflect.DeepEqual(fromString, d) {
			t.Fatalf("decoding the JSON string %s = %v, %v; want %s", quoted, fromString, err, str)
		}
		if smallExponent(s) {
			r, ok := new(big.Rat).SetString(s)
			if !ok {
				t.Fatalf("ParseDecimal accepted %q, which big.Rat does not read", s)
			}
			if r.Cmp(d.Rat()) != 0 {
				t.Fatalf("ParseDecimal(%q) = %s, big.Rat reads %s", s, str, r.FloatString(40))
			}
		}
	})
}

// canonical is the plain notation String must produce: no exponent, no
// leading zeros, no trailing fractional zeros.
var canonical = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$`)

// smallExponent reports whether s has no exponent or a small one, so that
// big.Rat can read it quickly.
func smallExponent(s string) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return true
	}
	n, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
	return err == nil && n > -200 && n < 200
}
