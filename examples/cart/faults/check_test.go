//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/store"
)

// lostAcks returns the acknowledged writes whose event is not in the log:
// the stream must hold an event of the acknowledged type at the version
// the answer gave, at or before the global position it gave.
func lostAcks(ctx context.Context, pool *pgxpool.Pool, tenant string, acks []ack) ([]string, error) {
	type key struct {
		stream  string
		version int64
	}
	type row struct {
		typ string
		gp  int64
	}
	stored := map[key]row{}
	rows, err := pool.Query(ctx, `SELECT stream_id, stream_position, message_type, global_position
		FROM messages WHERE partition = $1 AND NOT is_archived`, tenant)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k key
		var r row
		if err := rows.Scan(&k.stream, &k.version, &r.typ, &r.gp); err != nil {
			return nil, err
		}
		stored[k] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var lost []string
	for _, a := range acks {
		r, ok := stored[key{a.cartID, a.version}]
		if !ok || r.typ != a.eventType || r.gp > a.globalPos {
			lost = append(lost, fmt.Sprintf("%s of cart %s at version %d (global position %d): stored %+v (found %t)",
				a.eventType, a.cartID, a.version, a.globalPos, r, ok))
		}
	}
	return lost, nil
}

// duplicates lists what the log holds twice: global positions, message
// ids, stream positions, and streams whose positions are not 1..N.
func duplicates(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	checks := []struct{ what, sql string }{
		{"global position", `SELECT global_position::text FROM messages GROUP BY global_position HAVING count(*) > 1`},
		{"message id", `SELECT message_id FROM messages GROUP BY message_id HAVING count(*) > 1`},
		{"stream position", `SELECT partition || '/' || stream_id || '@' || stream_position FROM messages
			WHERE NOT is_archived GROUP BY partition, stream_id, stream_position HAVING count(*) > 1`},
		{"stream with a gap", `SELECT partition || '/' || stream_id FROM messages WHERE NOT is_archived
			GROUP BY partition, stream_id HAVING max(stream_position) <> count(*) OR min(stream_position) <> 1`},
	}
	var out []string
	for _, c := range checks {
		rows, err := pool.Query(ctx, c.sql)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, c.what+" "+v)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// cartRow is a carts read-model row, or the row a fold of the log says it
// should be, in comparable form.
type cartRow struct {
	Currency     string
	Items        string // canonical JSON
	IsCheckedOut bool
	IsCancelled  bool
	Total        string
	OrderID      string
}

// readModelDiff compares the tenant's carts rows with a fold of each cart
// stream in the log and returns the differences (nil when equal).
func readModelDiff(ctx context.Context, pool *pgxpool.Pool, tenant string) ([]string, error) {
	codec := store.NewJSONCodec()
	if err := cart.RegisterEvents(codec); err != nil {
		return nil, err
	}
	want := map[string]cart.State{}
	rows, err := pool.Query(ctx, `SELECT stream_id, message_type, message_data FROM messages
		WHERE partition = $1 AND NOT is_archived ORDER BY stream_id, stream_position`, tenant)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, typ string
		var data []byte
		if err := rows.Scan(&id, &typ, &data); err != nil {
			rows.Close()
			return nil, err
		}
		v, err := codec.Decode(typ, data)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("decode %s of cart %s: %w", typ, id, err)
		}
		e, ok := v.(cart.Event)
		if !ok {
			rows.Close()
			return nil, fmt.Errorf("%s of cart %s decoded to %T", typ, id, v)
		}
		s, seen := want[id]
		if !seen {
			s = cart.InitialState()
		}
		want[id] = cart.Evolve(s, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	got := map[string]cartRow{}
	rows, err = pool.Query(ctx, `SELECT cart_id, coalesce(currency, ''), items_json::text, is_checked_out, is_cancelled,
		coalesce(total::text, ''), coalesce(order_id, '') FROM carts WHERE partition = $1`, tenant)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id, items string
		var r cartRow
		if err := rows.Scan(&id, &r.Currency, &items, &r.IsCheckedOut, &r.IsCancelled, &r.Total, &r.OrderID); err != nil {
			rows.Close()
			return nil, err
		}
		var parsed []cart.Item
		if err := json.Unmarshal([]byte(items), &parsed); err != nil {
			rows.Close()
			return nil, fmt.Errorf("items_json of cart %s: %w", id, err)
		}
		r.Items = canonicalItems(parsed)
		if r.Total != "" {
			d, err := cart.ParseDecimal(r.Total)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("total of cart %s: %w", id, err)
			}
			r.Total = d.String()
		}
		got[id] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	var diff []string
	for id, s := range want {
		w := cartRow{Currency: s.Currency, Items: canonicalItems(s.Items),
			IsCheckedOut: s.Status == cart.StatusCheckedOut, IsCancelled: s.Status == cart.StatusCancelled}
		if w.IsCheckedOut {
			w.Total, w.OrderID = s.Total.String(), s.OrderID
		}
		g, ok := got[id]
		switch {
		case !ok:
			diff = append(diff, fmt.Sprintf("cart %s: no row, the log folds to %+v", id, w))
		case g != w:
			diff = append(diff, fmt.Sprintf("cart %s: row %+v, the log folds to %+v", id, g, w))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			diff = append(diff, fmt.Sprintf("cart %s: a row without events", id))
		}
	}
	slices.Sort(diff)
	return diff, nil
}

// canonicalItems renders items as JSON with the decimals normalised.
func canonicalItems(items []cart.Item) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprintf("%s|%s|%s|%d", it.SKU, it.Name, it.UnitPrice.String(), it.Quantity)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
