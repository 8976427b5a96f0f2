package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/internal/upcasting"
)

const (
	// readStreamSQL returns one row per event in the range, each carrying
	// the stream's current version and type; a live stream with no event
	// in the range gives one row with NULL message columns, a missing or
	// archived stream gives no row. One statement, so version and events
	// come from one snapshot.
	readStreamSQL = `SELECT s.stream_position, s.stream_type, coalesce(s.incarnation, 0),
       m.message_id, m.message_type, m.message_data, m.message_metadata, m.message_schema_version,
       m.stream_position, m.global_position, m.transaction_id, m.created
FROM streams s
LEFT JOIN LATERAL (
    SELECT message_id, message_type, message_data, message_metadata, message_schema_version,
           stream_position, global_position, transaction_id, created
    FROM messages
    WHERE stream_id = $1 AND partition = $2 AND NOT is_archived
      AND stream_position >= $3 AND stream_position <= $4
    ORDER BY stream_position
    LIMIT $5
) m ON true
WHERE s.stream_id = $1 AND s.partition = $2 AND NOT s.is_archived
ORDER BY m.stream_position`

	// readAllHeadSQL, the filters and readAllTailSQL make up the global
	// read. The inner query walks messages_global_read_idx in order and
	// stops at the limit; the stream type is joined to the page afterwards,
	// so no plan has to join or sort the whole rest of the log.
	//
	// The visibility guard returns only rows of transactions older than
	// the horizon: the oldest transaction still in flight when the
	// statement's snapshot was taken (pg_snapshot_xip), so a transaction
	// that took a global position earlier but commits later can't be
	// skipped. Two refinements over pg_snapshot_xmin:
	//   - the reader's own transaction counts as in flight (a snapshot
	//     leaves it out), so a session never reads its own uncommitted
	//     events from the global log;
	//   - a transaction that pg_stat_activity shows running in another
	//     database of the cluster is ignored: it can't insert here, and
	//     counting it would stall every reader of every database behind,
	//     for example, a CREATE DATABASE. A transaction whose database
	//     can't be told (finished since the snapshot, prepared, hidden)
	//     counts. The xid-to-database mapping never changes, so a stale
	//     view of pg_stat_activity only makes the guard more cautious.
	//
	// $3 (types) is NULL for every type.
	readAllHeadSQL = `WITH horizon AS (
    SELECT least(
        pg_current_xact_id_if_assigned(),
        (SELECT min(x.xid) FROM pg_snapshot_xip(pg_current_snapshot()) AS x (xid)
         WHERE NOT EXISTS (
             SELECT FROM pg_stat_get_activity(NULL) AS a
             WHERE a.backend_xid = x.xid::xid
               AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))),
        pg_snapshot_xmax(pg_current_snapshot())) AS xid
)
SELECT m.message_id, m.message_type, m.message_data, m.message_metadata, m.message_schema_version,
       m.stream_id, m.partition, coalesce(s.stream_type, ''), m.stream_position, m.global_position,
       m.transaction_id, m.created, coalesce(s.incarnation, 0)
FROM (
    SELECT * FROM messages
    WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
      AND transaction_id < (SELECT xid FROM horizon)
      AND NOT is_archived
      AND ($3::text[] IS NULL OR message_type = ANY($3::text[]))`
	readAllTailSQL = `
    ORDER BY transaction_id, global_position
    LIMIT $4
) AS m
LEFT JOIN streams s ON s.stream_id = m.stream_id AND s.partition = m.partition AND NOT s.is_archived
ORDER BY m.transaction_id, m.global_position`

	readAllSQL          = readAllHeadSQL + readAllTailSQL
	readAllPartitionSQL = readAllHeadSQL + `
      AND partition = $5::text` + readAllTailSQL
)

// ReadStream implements [store.EventStore]. With Config.Upcaster, events
// are upcast (see [Config]).
func (s *Store) ReadStream(ctx context.Context, stream store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	return upcasting.ReadStream(s.upcaster, opts, func(o store.ReadOptions) (store.ReadResult, error) {
		return s.readStream(ctx, stream, o)
	})
}

// readStream is ReadStream without upcasting: events as stored.
func (s *Store) readStream(ctx context.Context, stream store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	if err := store.ValidateStreamID(stream); err != nil {
		return store.ReadResult{}, err
	}
	partition, err := store.ValidatePartition(opts.Partition)
	if err != nil {
		return store.ReadResult{}, err
	}
	if opts.From < 0 || opts.To < 0 || opts.MaxCount < 0 {
		return store.ReadResult{}, store.InvalidArgument("read stream %q: negative From, To or MaxCount", stream)
	}
	to := int64(math.MaxInt64)
	if opts.To > 0 {
		to = int64(opts.To)
	}
	var limit *int64 // NULL: no limit
	if opts.MaxCount > 0 {
		l := int64(opts.MaxCount)
		limit = &l
	}
	rows, err := s.query(ctx, s.db(), partition, readStreamSQL, string(stream), partition, int64(opts.From), to, limit)
	if err != nil {
		return store.ReadResult{}, fmt.Errorf("read stream %q in partition %q: %w", stream, partition, err)
	}
	defer rows.Close()
	var res store.ReadResult
	for rows.Next() {
		var (
			version, incarnation   int64
			streamType             string
			id, typ, schemaVersion *string
			data, meta             []byte
			position, global       *int64
			tx                     *uint64
			created                *time.Time
		)
		if err := rows.Scan(&version, &streamType, &incarnation, &id, &typ, &data, &meta, &schemaVersion,
			&position, &global, &tx, &created); err != nil {
			return store.ReadResult{}, fmt.Errorf("read stream %q in partition %q: %w", stream, partition, err)
		}
		res.StreamExists = true
		res.CurrentVersion = store.Version(version)
		res.Incarnation = store.Incarnation(incarnation)
		if id == nil {
			continue // the stream exists but has no event in the range
		}
		e, err := newEvent(*id, *typ, data, meta, *schemaVersion, string(stream), partition, streamType, *position, *global, *tx, *created)
		if err != nil {
			return store.ReadResult{}, err
		}
		e.Incarnation = res.Incarnation
		res.Events = append(res.Events, e)
	}
	if err := rows.Err(); err != nil {
		return store.ReadResult{}, fmt.Errorf("read stream %q in partition %q: %w", stream, partition, err)
	}
	return res, nil
}

// ReadAll implements [store.EventStore]. Events of archived streams are
// left out. A store bound to a transaction never sees that transaction's
// own appends in the global log (they are not committed yet). PostgreSQL
// plans the query for the actual checkpoint and log size every time (see
// readAllRows).
//
// With Config.RowLevelSecurity, a read limited to a partition is scoped to
// it; a read of every partition sets no tenant and returns only the rows
// the connection's role may see (none for an application role on the
// pool).
//
// With Config.Upcaster, events are upcast (see [Config]).
func (s *Store) ReadAll(ctx context.Context, opts store.ReadAllOptions) (store.ReadAllResult, error) {
	return upcasting.ReadAll(s.upcaster, opts, func(o store.ReadAllOptions) (store.ReadAllResult, error) {
		return s.readAll(ctx, o)
	})
}

// readAll is ReadAll without upcasting: events as stored.
func (s *Store) readAll(ctx context.Context, opts store.ReadAllOptions) (store.ReadAllResult, error) {
	res := store.ReadAllResult{Next: opts.After}
	if opts.Partition != "" {
		if _, err := store.ValidatePartition(opts.Partition); err != nil {
			return res, err
		}
	}
	if opts.Limit < 0 {
		return res, store.InvalidArgument("read all: negative Limit %d", opts.Limit)
	}
	if opts.After.GlobalPosition < 0 {
		return res, store.InvalidArgument("read all: negative global position %d in After", opts.After.GlobalPosition)
	}
	limit := opts.Limit
	if limit == 0 {
		limit = store.DefaultReadAllLimit
	}
	var types []string // nil: every type
	if len(opts.Types) > 0 {
		types = opts.Types
	}
	sql := readAllSQL
	args := []any{opts.After.TransactionID, int64(opts.After.GlobalPosition), types, int64(limit)}
	if opts.Partition != "" {
		sql = readAllPartitionSQL
		args = append(args, opts.Partition)
	}
	rows, err := s.readAllRows(ctx, opts.Partition, sql, args)
	if err != nil {
		return res, fmt.Errorf("read all after %+v: %w", opts.After, err)
	}
	defer rows.Close()
	events := make([]store.Event, 0, min(limit, 64))
	for rows.Next() {
		var (
			id, typ, schemaVersion, streamID, partition, streamType string
			data, meta                                              []byte
			position, global, incarnation                           int64
			tx                                                      uint64
			created                                                 time.Time
		)
		if err := rows.Scan(&id, &typ, &data, &meta, &schemaVersion, &streamID, &partition, &streamType,
			&position, &global, &tx, &created, &incarnation); err != nil {
			return res, fmt.Errorf("read all after %+v: %w", opts.After, err)
		}
		e, err := newEvent(id, typ, data, meta, schemaVersion, streamID, partition, streamType, position, global, tx, created)
		if err != nil {
			return res, err
		}
		e.Incarnation = store.Incarnation(incarnation)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("read all after %+v: %w", opts.After, err)
	}
	if len(events) > 0 {
		res.Events = events
		res.Next = events[len(events)-1].Position()
	}
	return res, nil
}

// readAllRows runs the global read sql, planned for these arguments every
// time: a generic plan made while the log was small could sort the whole
// rest of the log for every batch once it is large. Without row-level
// security, or without a partition, it is the unnamed statement
// (pgx.QueryExecModeCacheDescribe). With row-level security and a
// partition it is a batch of the tenant scope, which also sets
// plan_cache_mode = force_custom_plan for the rest of the batch, and the
// read: on the pool that is one implicit transaction and one round trip;
// in a transaction the scope is sent first, on its own, so the plan
// setting does not outlive the read.
func (s *Store) readAllRows(ctx context.Context, partition, sql string, args []any) (pgx.Rows, error) {
	if !s.rls || partition == "" {
		return s.db().Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
	}
	if !s.inTx() {
		return scopedQuery(ctx, s.base, scopeCustomPlanSQL, partition, sql, args...)
	}
	if _, err := s.tx.Exec(ctx, scopeSQL, partition); err != nil {
		return nil, err
	}
	return s.tx.Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
}

// newEvent assembles a read event. The stored metadata is decoded and the
// system keys are set from the columns, over anything stored under them.
func newEvent(id, typ string, data, meta []byte, schemaVersion, streamID, partition, streamType string,
	position, global int64, tx uint64, created time.Time) (store.Event, error) {
	md := store.Metadata{}
	if len(meta) > 0 {
		if err := json.Unmarshal(meta, &md); err != nil {
			return store.Event{}, fmt.Errorf("decode metadata of event %d of stream %q in partition %q: %w", position, streamID, partition, err)
		}
		if md == nil { // stored JSON null
			md = store.Metadata{}
		}
	}
	md[store.MetaMessageID] = id
	md[store.MetaStreamID] = streamID
	md[store.MetaStreamPosition] = store.Version(position)
	md[store.MetaGlobalPosition] = store.GlobalPosition(global)
	md[store.MetaPartition] = partition
	return store.Event{
		Type:           typ,
		Data:           json.RawMessage(data),
		Metadata:       md,
		MessageID:      id,
		StreamID:       store.StreamID(streamID),
		StreamType:     streamType,
		Partition:      partition,
		StreamPosition: store.Version(position),
		GlobalPosition: store.GlobalPosition(global),
		TransactionID:  tx,
		Created:        created,
		SchemaVersion:  schemaVersion,
	}, nil
}
