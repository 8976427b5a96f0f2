package readmodel

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/shred"
)

// streamRef names one incarnation of a stream (incarnation 0: unknown).
type streamRef struct {
	partition   string
	stream      store.StreamID
	incarnation store.Incarnation
}

func refOf(e store.Event) streamRef { return streamRef{e.Partition, e.StreamID, e.Incarnation} }

// gap is a range of stream positions a row has not seen, to be read
// before the row's event number before.
type gap struct {
	row      int
	before   int
	stream   streamRef
	from, to store.Version
}

// fillGaps sorts each row's events by incarnation and stream position and
// inserts the events of the configured types that the row misses: stream
// positions of the same incarnation after the row's last applied one (none,
// for a row that restarts at a new incarnation) and before its next event
// that are not in all. A gap is read from that incarnation only: when the
// stream has been archived since, it stays unfilled.
func (p *Projection[S]) fillGaps(ctx context.Context, tx pgx.Tx, rows []*rowState[S], all []store.Event) error {
	present := map[streamRef]map[store.Version]struct{}{}
	for _, e := range all {
		ref := refOf(e)
		if present[ref] == nil {
			present[ref] = map[store.Version]struct{}{}
		}
		present[ref][e.StreamPosition] = struct{}{}
	}
	var gaps []gap
	for ri, r := range rows {
		slices.SortStableFunc(r.events, func(a, b store.Event) int {
			return cmp.Or(cmp.Compare(a.Incarnation, b.Incarnation), cmp.Compare(a.StreamPosition, b.StreamPosition))
		})
		last, lastGlobal := r.pos, r.global
		for i, e := range r.events {
			switch stepFor(last, lastGlobal, e) {
			case stepSkip:
				continue
			case stepRestart:
				last = 0
			}
			if from, to := last+1, e.StreamPosition-1; from <= to && !covered(present[refOf(e)], from, to) {
				gaps = append(gaps, gap{row: ri, before: i, stream: refOf(e), from: from, to: to})
			}
			last, lastGlobal = e.StreamPosition, e.GlobalPosition
		}
	}
	if len(gaps) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, g := range gaps {
		b.Queue(gapReadSQL, g.stream.partition, string(g.stream.stream), int64(g.from), int64(g.to), int64(g.stream.incarnation))
	}
	br := tx.SendBatch(ctx, b)
	found := make([][]store.Event, len(gaps))
	for gi, g := range gaps {
		evs, err := p.readGap(br, g)
		if err != nil {
			_ = br.Close()
			return err
		}
		found[gi] = evs
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("read model %q: read missed events: %w", p.cfg.Table, err)
	}
	if err := p.applyReadHook(ctx, found); err != nil {
		return err
	}
	for gi := len(gaps) - 1; gi >= 0; gi-- { // from the back, so indexes stay valid
		if len(found[gi]) == 0 {
			continue
		}
		r := rows[gaps[gi].row]
		r.events = slices.Insert(r.events, gaps[gi].before, found[gi]...)
	}
	return nil
}

// wholeSplit reads back the stored event that e is one event of a split
// of, and returns the events of the configured types it reads as (upcast
// with Config.Upcaster, through Config.ReadHook). A stored event no longer
// there (its stream archived since) reads as e alone, if relevant.
func (p *Projection[S]) wholeSplit(ctx context.Context, tx pgx.Tx, e store.Event) ([]store.Event, error) {
	if p.cfg.Upcaster == nil {
		return nil, fmt.Errorf("read model %q: event %s at position %d of stream %q is part of a split: set readmodel.Config.Upcaster (or a Codec that upcasts) to the store's upcaster, so the read model can read all of the split",
			p.cfg.Table, e.Type, e.StreamPosition, e.StreamID)
	}
	ref := refOf(e)
	b := &pgx.Batch{}
	b.Queue(gapReadSQL, ref.partition, string(ref.stream), int64(e.StreamPosition), int64(e.StreamPosition), int64(ref.incarnation))
	br := tx.SendBatch(ctx, b)
	stored, err := p.readGap(br, gap{stream: ref, from: e.StreamPosition, to: e.StreamPosition})
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("read model %q: read the split event at position %d of stream %q: %w", p.cfg.Table, e.StreamPosition, e.StreamID, cerr)
	}
	if err != nil {
		return nil, err
	}
	found := [][]store.Event{stored}
	if err := p.applyReadHook(ctx, found); err != nil {
		return nil, err
	}
	if len(found[0]) == 0 {
		return p.relevant([]store.Event{e}, !p.typed)
	}
	return found[0], nil
}

// covered reports whether every position from..to is in set.
func covered(set map[store.Version]struct{}, from, to store.Version) bool {
	if int64(to-from+1) > int64(len(set)) {
		return false
	}
	for q := from; q <= to; q++ {
		if _, ok := set[q]; !ok {
			return false
		}
	}
	return true
}

const gapReadSQL = `SELECT m.message_id, m.message_type, m.message_data, m.message_metadata, m.message_schema_version,
       s.stream_type, m.stream_position, m.global_position, m.transaction_id, m.created,
       coalesce(s.incarnation, 0)
FROM messages m
JOIN streams s ON s.stream_id = m.stream_id AND s.partition = m.partition AND NOT s.is_archived
WHERE m.partition = $1 AND m.stream_id = $2 AND NOT m.is_archived
  AND m.stream_position >= $3 AND m.stream_position <= $4
  AND ($5::bigint = 0 OR s.incarnation = $5::bigint)
ORDER BY m.stream_position`

// readGap reads one gap's events of the configured types, upcast with
// Config.Upcaster when it is set.
func (p *Projection[S]) readGap(br pgx.BatchResults, g gap) ([]store.Event, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("read model %q: read missed events of stream %q: %w", p.cfg.Table, g.stream.stream, err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var (
			id, typ, schemaVersion, streamType string
			data, meta                         []byte
			position, global, incarnation      int64
			txid                               uint64
			created                            time.Time
		)
		if err := rows.Scan(&id, &typ, &data, &meta, &schemaVersion, &streamType, &position, &global, &txid, &created, &incarnation); err != nil {
			return nil, fmt.Errorf("read model %q: read missed events of stream %q: %w", p.cfg.Table, g.stream.stream, err)
		}
		if _, ok := p.types[typ]; !ok && p.cfg.Upcaster == nil {
			continue
		}
		md := store.Metadata{}
		if len(meta) > 0 {
			if err := json.Unmarshal(meta, &md); err != nil {
				return nil, fmt.Errorf("read model %q: decode metadata of event %d of stream %q: %w", p.cfg.Table, position, g.stream.stream, err)
			}
			if md == nil {
				md = store.Metadata{}
			}
		}
		md[store.MetaMessageID] = id
		md[store.MetaStreamID] = string(g.stream.stream)
		md[store.MetaStreamPosition] = store.Version(position)
		md[store.MetaGlobalPosition] = store.GlobalPosition(global)
		md[store.MetaPartition] = g.stream.partition
		e := store.Event{
			Type: typ, Data: json.RawMessage(data), Metadata: md, MessageID: id,
			StreamID: g.stream.stream, StreamType: streamType, Partition: g.stream.partition,
			StreamPosition: store.Version(position), GlobalPosition: store.GlobalPosition(global),
			TransactionID: txid, Created: created, SchemaVersion: schemaVersion,
			Incarnation: store.Incarnation(incarnation),
		}
		// Bring the event to the current schema, as the projection's
		// store did with the batch, and keep what is of the configured
		// types.
		if out, err = p.appendRelevant(out, e, false); err != nil {
			return nil, fmt.Errorf("read model %q: read missed events of stream %q: %w", p.cfg.Table, g.stream.stream, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read model %q: read missed events of stream %q: %w", p.cfg.Table, g.stream.stream, err)
	}
	return out, nil
}

// applyReadHook passes the events of the gaps through Config.ReadHook, all
// at once, or refuses events holding values encrypted by store/shred when
// there is no hook to decrypt them.
func (p *Projection[S]) applyReadHook(ctx context.Context, found [][]store.Event) error {
	var all []store.Event
	for _, evs := range found {
		all = append(all, evs...)
	}
	if len(all) == 0 {
		return nil
	}
	if p.cfg.ReadHook == nil {
		for _, e := range all {
			if bytes.Contains(e.Data, encryptedMarker) {
				return fmt.Errorf("read model %q: event %s at position %d of stream %q in partition %q holds values encrypted by store/shred; set readmodel.Config.ReadHook to the Shredder's Decrypt",
					p.cfg.Table, e.Type, e.StreamPosition, e.StreamID, e.Partition)
			}
		}
		return nil
	}
	out, err := p.cfg.ReadHook(ctx, all)
	if err != nil {
		return fmt.Errorf("read model %q: read missed events: %w", p.cfg.Table, err)
	}
	if len(out) != len(all) {
		return fmt.Errorf("read model %q: readmodel.Config.ReadHook returned %d events for %d", p.cfg.Table, len(out), len(all))
	}
	for gi := range found {
		n := len(found[gi])
		found[gi], out = out[:n:n], out[n:]
	}
	return nil
}

var encryptedMarker = []byte(strconv.Quote(shred.EncryptedKey))
