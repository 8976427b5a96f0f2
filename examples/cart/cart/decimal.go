package cart

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Limits of a [Decimal] read by [ParseDecimal] (and so from JSON). They
// are far beyond any price or cart total, and keep a hostile input such as
// "1e999999999" from costing memory or time.
const (
	// MaxIntegerDigits is the most digits a Decimal may have before the
	// decimal point.
	MaxIntegerDigits = 40
	// MaxFractionDigits is the most digits a Decimal may have after the
	// decimal point (trailing zeros do not count).
	MaxFractionDigits = 30
	// maxDecimalText is the longest text ParseDecimal reads. It leaves room
	// for leading zeros and an exponent around the longest canonical form.
	maxDecimalText = 256
	// maxExponent bounds the exponent of scientific notation before any
	// arithmetic is done with it.
	maxExponent = 1000
)

// ErrInvalidDecimal matches every error of ParseDecimal and of decoding a
// Decimal from JSON or text.
var ErrInvalidDecimal = errors.New("invalid decimal")

// Decimal is an exact decimal number for money: unit prices and totals.
// There is no rounding anywhere: 0.1 × 3 is exactly 0.3 and 2 × 25 + 15 − 25
// is exactly 40.
//
// The zero value is 0. A Decimal is immutable: arithmetic returns new values
// and never changes its operands, so Decimals can be copied and shared
// freely. The representation is canonical (no trailing fractional zeros,
// no negative zero), so two equal Decimals are also equal under
// reflect.DeepEqual; compare with [Decimal.Equal] or [Decimal.Cmp] anyway.
//
// In JSON a Decimal is a number in plain notation (25, 19.99, -0.3, never an
// exponent); it decodes from a JSON number or a string holding one, in
// plain or scientific notation ("19.99", "1.999e1").
type Decimal struct {
	// unscaled × 10^-scale is the value. unscaled is nil for zero and is
	// never modified after construction.
	unscaled *big.Int
	// scale is the number of digits after the point: 0 for integers,
	// otherwise unscaled is not a multiple of 10.
	scale int32
}

var bigTen = big.NewInt(10)

// NewDecimal returns unscaled × 10^-scale: NewDecimal(1999, 2) is 19.99.
func NewDecimal(unscaled int64, scale uint8) Decimal {
	return makeDecimal(big.NewInt(unscaled), int32(scale))
}

// DecimalFromInt returns n as a Decimal.
func DecimalFromInt(n int64) Decimal { return NewDecimal(n, 0) }

// makeDecimal returns the canonical Decimal u × 10^-scale, taking ownership
// of u. scale must be ≥ 0.
func makeDecimal(u *big.Int, scale int32) Decimal {
	if u.Sign() == 0 {
		return Decimal{}
	}
	var q, r big.Int
	for scale > 0 {
		q.QuoRem(u, bigTen, &r)
		if r.Sign() != 0 {
			break
		}
		u.Set(&q)
		scale--
	}
	return Decimal{unscaled: u, scale: scale}
}

// ParseDecimal reads a decimal number: an optional sign, digits with an
// optional fractional part, and an optional exponent ("19.99", "-0.5",
// "25", "1.999e1", ".5"). Surrounding spaces, thousands separators, "NaN"
// and "Inf" are rejected. Values with more than [MaxIntegerDigits] digits
// before or [MaxFractionDigits] digits after the point are rejected. Every
// error matches [ErrInvalidDecimal].
func ParseDecimal(s string) (Decimal, error) {
	if s == "" {
		return Decimal{}, fmt.Errorf("%w: empty", ErrInvalidDecimal)
	}
	if len(s) > maxDecimalText {
		return Decimal{}, fmt.Errorf("%w: %d characters, at most %d allowed", ErrInvalidDecimal, len(s), maxDecimalText)
	}
	bad := func() (Decimal, error) {
		return Decimal{}, fmt.Errorf("%w: %q is not a decimal number", ErrInvalidDecimal, s)
	}
	i := 0
	neg := false
	if s[i] == '+' || s[i] == '-' {
		neg = s[i] == '-'
		i++
	}
	digitsAt := func(from int) int {
		j := from
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		return j
	}
	intEnd := digitsAt(i)
	intPart := s[i:intEnd]
	i = intEnd
	var fracPart string
	if i < len(s) && s[i] == '.' {
		fracEnd := digitsAt(i + 1)
		fracPart = s[i+1 : fracEnd]
		i = fracEnd
	}
	if intPart == "" && fracPart == "" {
		return bad()
	}
	exp := 0
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		expEnd := digitsAt(i)
		if expEnd == i {
			return bad()
		}
		for _, c := range s[i:expEnd] {
			exp = exp*10 + int(c-'0')
			if exp > maxExponent {
				return Decimal{}, fmt.Errorf("%w: exponent of %q out of range (at most %d)", ErrInvalidDecimal, s, maxExponent)
			}
		}
		if expNeg {
			exp = -exp
		}
		i = expEnd
	}
	if i != len(s) {
		return bad()
	}

	// value = digits × 10^-scale
	digits := strings.TrimLeft(intPart+fracPart, "0")
	scale := len(fracPart) - exp
	if digits == "" {
		return Decimal{}, nil
	}
	trimmed := strings.TrimRight(digits, "0")
	scale -= len(digits) - len(trimmed)
	digits = trimmed
	intDigits, fracDigits := len(digits)-scale, scale
	if scale < 0 {
		fracDigits = 0
	}
	if intDigits > MaxIntegerDigits {
		return Decimal{}, fmt.Errorf("%w: %q has %d digits before the point, at most %d allowed",
			ErrInvalidDecimal, s, intDigits, MaxIntegerDigits)
	}
	if fracDigits > MaxFractionDigits {
		return Decimal{}, fmt.Errorf("%w: %q has %d digits after the point, at most %d allowed",
			ErrInvalidDecimal, s, fracDigits, MaxFractionDigits)
	}
	if scale < 0 {
		digits += strings.Repeat("0", -scale)
		scale = 0
	}
	u, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		return bad()
	}
	if neg {
		u.Neg(u)
	}
	return Decimal{unscaled: u, scale: int32(scale)}, nil
}

// inRange reports whether d is within the limits ParseDecimal accepts, so
// that it survives a JSON round trip. Arithmetic can leave the range.
func (d Decimal) inRange() bool {
	if d.unscaled == nil {
		return true
	}
	n := len(new(big.Int).Abs(d.unscaled).String())
	return d.scale <= MaxFractionDigits && n-int(d.scale) <= MaxIntegerDigits
}

// String returns d in plain notation: "40", "19.99", "-0.3", "0.001".
func (d Decimal) String() string {
	if d.unscaled == nil {
		return "0"
	}
	abs := new(big.Int).Abs(d.unscaled).String()
	sign := ""
	if d.unscaled.Sign() < 0 {
		sign = "-"
	}
	if d.scale == 0 {
		return sign + abs
	}
	scale := int(d.scale)
	if len(abs) <= scale {
		abs = strings.Repeat("0", scale-len(abs)+1) + abs
	}
	return sign + abs[:len(abs)-scale] + "." + abs[len(abs)-scale:]
}

// big returns d's unscaled value (never nil); callers must not modify it.
func (d Decimal) big() *big.Int {
	if d.unscaled == nil {
		return new(big.Int)
	}
	return d.unscaled
}

// aligned returns the unscaled values of d and e at their common scale.
func aligned(d, e Decimal) (a, b *big.Int, scale int32) {
	a, b = new(big.Int).Set(d.big()), new(big.Int).Set(e.big())
	scale = max(d.scale, e.scale)
	if d.scale < scale {
		a.Mul(a, pow10(scale-d.scale))
	}
	if e.scale < scale {
		b.Mul(b, pow10(scale-e.scale))
	}
	return a, b, scale
}

func pow10(n int32) *big.Int {
	return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil)
}

// Add returns d + e.
func (d Decimal) Add(e Decimal) Decimal {
	a, b, scale := aligned(d, e)
	return makeDecimal(a.Add(a, b), scale)
}

// Sub returns d − e.
func (d Decimal) Sub(e Decimal) Decimal {
	a, b, scale := aligned(d, e)
	return makeDecimal(a.Sub(a, b), scale)
}

// Mul returns d × e.
func (d Decimal) Mul(e Decimal) Decimal {
	return makeDecimal(new(big.Int).Mul(d.big(), e.big()), d.scale+e.scale)
}

// MulInt returns d × n.
func (d Decimal) MulInt(n int64) Decimal {
	return makeDecimal(new(big.Int).Mul(d.big(), big.NewInt(n)), d.scale)
}

// Neg returns −d.
func (d Decimal) Neg() Decimal {
	return makeDecimal(new(big.Int).Neg(d.big()), d.scale)
}

// Cmp compares d and e: -1 when d < e, 0 when equal, +1 when d > e.
func (d Decimal) Cmp(e Decimal) int {
	a, b, _ := aligned(d, e)
	return a.Cmp(b)
}

// Equal reports whether d and e are the same number.
func (d Decimal) Equal(e Decimal) bool { return d.Cmp(e) == 0 }

// Sign returns -1, 0 or +1 as d is negative, zero or positive.
func (d Decimal) Sign() int { return d.big().Sign() }

// IsZero reports whether d is 0.
func (d Decimal) IsZero() bool { return d.unscaled == nil }

// Rat returns d as a new big.Rat.
func (d Decimal) Rat() *big.Rat {
	return new(big.Rat).SetFrac(new(big.Int).Set(d.big()), pow10(d.scale))
}

// Float64 returns the float64 nearest to d, for display and metrics only;
// never compute money with it.
func (d Decimal) Float64() float64 {
	f, _ := d.Rat().Float64()
	return f
}

// MarshalJSON writes d as a JSON number in plain notation.
func (d Decimal) MarshalJSON() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalJSON reads a JSON number, or a JSON string holding a number.
// JSON null leaves d unchanged.
func (d *Decimal) UnmarshalJSON(data []byte) error {
	text := string(data)
	if text == "null" {
		return nil
	}
	if strings.HasPrefix(text, `"`) {
		if err := json.Unmarshal(data, &text); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidDecimal, err)
		}
	}
	v, err := ParseDecimal(text)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText writes d in plain notation.
func (d Decimal) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText reads d with ParseDecimal.
func (d *Decimal) UnmarshalText(text []byte) error {
	v, err := ParseDecimal(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
