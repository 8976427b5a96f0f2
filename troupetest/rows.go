package troupetest

import (
	"context"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// queryRows runs query and renders each row as one line.
func queryRows(pool *pgxpool.Pool, timeout time.Duration, query string, args ...any) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rows, err := pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", oneLine(query), err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, fmt.Errorf("query %s: %w", oneLine(query), err)
		}
		out = append(out, renderRow(vals))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query %s: %w", oneLine(query), err)
	}
	return out, nil
}

func renderRows(rows Rows) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = renderRow(r)
	}
	return out
}

// renderRow writes a row as its values' text joined by " | ", like psql.
func renderRow(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = valueText(v)
	}
	return strings.Join(parts, " | ")
}

// valueText is the text a value compares by.
func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case []byte:
		return `\x` + hex.EncodeToString(x)
	case bool:
		return strconv.FormatBool(x)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case [16]byte: // uuid
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16])
	case fmt.Stringer:
		return x.String()
	case driver.Valuer: // pgtype.Numeric and other pgtype values
		dv, err := x.Value()
		if err != nil {
			return fmt.Sprintf("%v", v)
		}
		return valueText(dv)
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct:
		if b, err := canonicalJSON(v); err == nil {
			return string(b)
		}
	}
	return fmt.Sprintf("%v", v)
}

// diff returns a line diff of want and got ("  " same, "- " only in
// want, "+ " only in got), or "" when they are equal.
func diff(want, got []string) string {
	if slices.Equal(want, got) {
		return ""
	}
	// Longest common subsequence, then walk it.
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			b.WriteString("  " + want[i] + "\n")
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			b.WriteString("- " + want[i] + "\n")
			i++
		default:
			b.WriteString("+ " + got[j] + "\n")
			j++
		}
	}
	return b.String()
}

// canonicalJSON encodes v as JSON the way a json or jsonb column's value
// read back encodes: through a generic value, so object keys are sorted
// and numbers are float64s whatever the Go struct's field order and types.
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return nil, err
	}
	return json.Marshal(generic)
}
