package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/internal/upcasting"
)

// An append is one statement: a CTE that creates or advances the streams
// row with the expected-version check in its WHERE/ON CONFLICT clause, a CTE
// that inserts every message from parallel arrays at positions prev+1..,
// and a final SELECT that returns the result and notifies NotifyChannel
// (on the pool of a store with a Notifier, a variant without the
// notification: the Notifier sends it after the commit).
// When the check fails the streams CTE returns no row, so nothing is
// inserted and the statement returns no row either.
//
// There are two families of statements, for the two ways a store runs.
//
// On the pool (each append its own implicit transaction) the statements
// never read a partitioned table by partition: streams is written with
// INSERT … ON CONFLICT (also for an existing stream: Exact(n > 0) and
// StreamExists upsert with the version check in DO UPDATE … WHERE) and
// messages with a plain INSERT. PostgreSQL routes such writes to the
// tenant's partition at run time, so even the generic plan of the prepared
// statement touches (and locks) only that partition, and an append costs
// the same with 1 or 1,000 tenant partitions. A generic plan of a read such
// as "WHERE partition = $2" would instead lock every partition of the table
// on each execution. Refusals then show up in one of three ways: no row
// (version check failed on an existing stream), a unique violation on
// (partition, message_id) (a message id is stored: an idempotent retry or
// a duplicate), or, for the upserts, a NOT NULL violation on message_data
// (the stream was missing, so the upsert inserted a row: the messages CTE
// then writes NULL data on purpose, and the statement rolls back). Each
// leads to the same look-up (explainEmptyAppend).
//
// In a transaction (WithTx, WithSession) an error would abort the caller's
// transaction, so the statements never fail on a refusal: an existing
// stream is advanced with UPDATE … WHERE version, and the streams CTE
// refuses to write when any of the append's message ids is already stored
// in the partition (the NOT EXISTS guard), so the common idempotent retry -
// a client re-sending an append whose reply it lost - writes nothing and
// raises no error. The unique (partition, message_id) constraint still backs
// the guard up for two identical appends racing each other.
//
// Parameters shared by every variant:
//
//	$1 stream id, $2 partition, $3 number of events,
//	$4 message ids, $5 types, $6 data, $7 metadata, $8 schema versions (text[])
//
// and $9 is the stream type (insert variants) or the expected version
// (the exact and upsert variants; NULL in the upsert for StreamExists);
// the exact and upsert variants take the required incarnation as $10 (0:
// none).
//
// Incarnations. A statement that creates the stream takes the global
// position of its first event when it inserts the streams row (the
// proposed row's nextval), records it as the stream's incarnation, and
// gives that position to the first message; every other message takes
// its position after the streams row is written or locked, so within an
// incarnation global positions rise with stream positions. A proposed row
// that loses to an existing one (ON CONFLICT) leaves its position unused,
// a gap in the global log like that of a rolled-back append.
const (
	// The guard looks each id up on its own (LATERAL ... LIMIT 1 keeps the
	// planner from turning it into a join or a scan of the partition), so
	// even a generic plan made while the table was small probes the
	// (partition, message_id) index once per event.
	appendGuardSQL = `NOT EXISTS (
        SELECT FROM unnest($4::text[]) AS g (id)
        CROSS JOIN LATERAL (
            SELECT FROM messages WHERE partition = $2::text AND message_id = g.id LIMIT 1) AS hit)`

	appendMessagesSQL = `
), m AS (
    INSERT INTO messages (stream_id, stream_position, partition, global_position, message_data, message_metadata,
                          message_schema_version, message_type, message_id)
    SELECT $1::text, s.prev + e.ord, $2::text,
           coalesce(CASE WHEN s.prev = 0 AND e.ord = 1 THEN s.incarnation END, nextval('emt_global_message_position')),
           `
	appendTailSQL         = appendMessagesSQL + `e.data::jsonb` + appendMessagesRestSQL
	appendTailCheckedSQL  = appendMessagesSQL + `CASE WHEN s.prev > 0 THEN e.data::jsonb END` + appendMessagesRestSQL
	appendMessagesRestSQL = `, e.meta::jsonb, e.schema_version, e.type, e.id
    FROM s, unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
            WITH ORDINALITY AS e(id, type, data, meta, schema_version, ord)
    ORDER BY e.ord
    RETURNING global_position
), last AS (
    SELECT max(global_position) AS global_position FROM m
)
SELECT s.prev + $3::bigint, last.global_position, pg_current_xact_id(),
       ` + appendNotifySQL + `,
       coalesce(s.incarnation, 0)
FROM s, last`

	// appendNotifySQL is the final SELECT's notification; the quiet
	// statements (see appendQuiet) have appendQuietSQL in its place.
	// appendNewIncarnationSQL is the incarnation of a stream the statement
	// creates.
	appendNotifySQL = `pg_notify('` + NotifyChannel + `',
                 json_build_object('partition', $2::text, 'globalPosition', last.global_position)::text)`
	appendQuietSQL = `NULL::void`

	appendNewIncarnationSQL = `nextval('emt_global_message_position')`
	appendReturningSQL      = `
    RETURNING stream_position - $3::bigint AS prev, incarnation`

	// appendIncarnationCheckSQL is the check of a required incarnation.
	appendIncarnationCheckSQL = `($10::bigint = 0 OR incarnation = $10::bigint)`

	// appendAnySQL creates the stream or advances it, whatever its version.
	// Two of these racing on one stream serialise on the streams row (the
	// loser of an insert race takes the DO UPDATE branch), so both succeed
	// at contiguous positions.
	appendAnySQL = `WITH s AS (
    INSERT INTO streams (stream_id, partition, stream_type, stream_position, incarnation)
    SELECT $1::text, $2::text, $9::text, $3::bigint, ` + appendNewIncarnationSQL + `
    WHERE ` + appendGuardSQL + `
    ON CONFLICT (stream_id, partition, is_archived)
        DO UPDATE SET stream_position = streams.stream_position + EXCLUDED.stream_position` +
		appendReturningSQL + appendTailSQL

	// appendNewSQL creates the stream and writes nothing when it exists
	// (NoStream and Exact(0)). The loser of a creation race waits for the
	// winner's commit and then finds the conflict: no row, no error.
	appendNewSQL = `WITH s AS (
    INSERT INTO streams (stream_id, partition, stream_type, stream_position, incarnation)
    SELECT $1::text, $2::text, $9::text, $3::bigint, ` + appendNewIncarnationSQL + `
    WHERE ` + appendGuardSQL + `
    ON CONFLICT DO NOTHING` + appendReturningSQL + appendTailSQL

	// appendExactSQL advances an existing stream at version $9.
	appendExactSQL = `WITH s AS (
    UPDATE streams SET stream_position = stream_position + $3::bigint
    WHERE stream_id = $1::text AND partition = $2::text AND NOT is_archived
      AND stream_position = $9::bigint AND ` + appendIncarnationCheckSQL + `
      AND ` + appendGuardSQL + appendReturningSQL + appendTailSQL

	// appendExistingSQL advances an existing stream at any version
	// (StreamExists, $9 NULL); also used for Any with a required
	// incarnation.
	appendExistingSQL = `WITH s AS (
    UPDATE streams SET stream_position = stream_position + $3::bigint
    WHERE stream_id = $1::text AND partition = $2::text AND NOT is_archived
      AND ($9::bigint IS NULL OR stream_position = $9::bigint) AND ` + appendIncarnationCheckSQL + `
      AND ` + appendGuardSQL + appendReturningSQL + appendTailSQL

	// appendAnyPoolSQL is appendAnySQL without the guard, for the pool.
	appendAnyPoolSQL = `WITH s AS (
    INSERT INTO streams (stream_id, partition, stream_type, stream_position, incarnation)
    VALUES ($1::text, $2::text, $9::text, $3::bigint, ` + appendNewIncarnationSQL + `)
    ON CONFLICT (stream_id, partition, is_archived)
        DO UPDATE SET stream_position = streams.stream_position + EXCLUDED.stream_position` +
		appendReturningSQL + appendTailSQL

	// appendNewPoolSQL is appendNewSQL without the guard, for the pool.
	appendNewPoolSQL = `WITH s AS (
    INSERT INTO streams (stream_id, partition, stream_type, stream_position, incarnation)
    VALUES ($1::text, $2::text, $9::text, $3::bigint, ` + appendNewIncarnationSQL + `)
    ON CONFLICT DO NOTHING` + appendReturningSQL + appendTailSQL

	// appendExistingPoolSQL advances an existing stream at version $9 (any
	// version when $9 is NULL) of incarnation $10 (any when 0), for the
	// pool. A live stream has at least one event, so prev > 0 exactly when
	// the row was updated; when the stream is missing the upsert inserts it
	// with prev = 0 (and no incarnation), and the NULL data written then
	// fails the statement, which rolls the insert back.
	appendExistingPoolSQL = `WITH s AS (
    INSERT INTO streams (stream_id, partition, stream_type, stream_position)
    VALUES ($1::text, $2::text, '', $3::bigint)
    ON CONFLICT (stream_id, partition, is_archived)
        DO UPDATE SET stream_position = streams.stream_position + EXCLUDED.stream_position
        WHERE ($9::bigint IS NULL OR streams.stream_position = $9::bigint)
          AND ($10::bigint = 0 OR streams.incarnation = $10::bigint)` +
		appendReturningSQL + appendTailCheckedSQL

	// appendLookupSQL runs only after an append wrote nothing: it returns
	// the stream's current version (NULL when missing) and every stored
	// message carrying one of the append's ids (none: one row of NULLs).
	appendLookupSQL = `SELECT
    (SELECT stream_position FROM streams WHERE stream_id = $1 AND partition = $2 AND NOT is_archived),
    (SELECT coalesce(incarnation, 0) FROM streams WHERE stream_id = $1 AND partition = $2 AND NOT is_archived),
    m.message_id, m.stream_id, m.stream_position, m.global_position, m.transaction_id, m.is_archived
FROM (VALUES (1)) AS one (x)
LEFT JOIN LATERAL (
    SELECT hit.* FROM unnest($3::text[]) AS g (id)
    CROSS JOIN LATERAL (
        SELECT message_id, stream_id, stream_position, global_position, transaction_id, is_archived
        FROM messages WHERE partition = $2 AND message_id = g.id LIMIT 1) AS hit
) AS m ON true`
)

// The pool's statements without the notification, for a store with a
// Config.Notifier: the same text with appendNotifySQL replaced, so the
// result keeps its five columns.
var (
	appendAnyPoolQuietSQL      = appendQuiet(appendAnyPoolSQL)
	appendNewPoolQuietSQL      = appendQuiet(appendNewPoolSQL)
	appendExistingPoolQuietSQL = appendQuiet(appendExistingPoolSQL)
)

// appendQuiet returns sql with its notification replaced by NULL.
func appendQuiet(sql string) string {
	return strings.Replace(sql, appendNotifySQL, appendQuietSQL, 1)
}

// appendArgs returns the eight parameters shared by every append statement
// for events prepared by store.PrepareAppend (see the comment on the
// statements), and the message ids among them. It refuses events
// PostgreSQL's jsonb would reject (a string holding \u0000) before
// anything is sent.
func appendArgs(stream store.StreamID, events []store.EventData, opts store.AppendOptions) ([]string, []any, error) {
	n := len(events)
	ids := make([]string, n)
	types := make([]string, n)
	data := make([]string, n)
	metas := make([]string, n)
	versions := make([]string, n)
	for i, e := range events {
		ids[i], types[i], data[i], versions[i] = e.MessageID, e.Type, string(e.Data), e.SchemaVersion
		if nulEscape(e.Data) {
			return nil, nil, store.InvalidArgument("append to stream %q in partition %q: event %d (%s) data holds a string with \\u0000, which PostgreSQL's jsonb can't store",
				stream, opts.Partition, i, e.Type)
		}
		metas[i] = "{}"
		if len(e.Metadata) > 0 {
			b, err := json.Marshal(e.Metadata)
			if err != nil {
				return nil, nil, store.InvalidArgument("append to stream %q: event %d (%s) metadata: %v", stream, i, e.Type, err)
			}
			if nulEscape(b) {
				return nil, nil, store.InvalidArgument("append to stream %q in partition %q: event %d (%s) metadata holds a string with \\u0000, which PostgreSQL's jsonb can't store",
					stream, opts.Partition, i, e.Type)
			}
			metas[i] = string(b)
		}
	}
	return ids, []any{string(stream), opts.Partition, int64(n), ids, types, data, metas, versions}, nil
}

// maxAppendAttempts bounds how often an append is re-run when it wrote
// nothing although the state read afterwards would allow it (the stream
// changed between the two statements, for example archived meanwhile).
const maxAppendAttempts = 3

// AppendToStream implements [store.EventStore]. On the success path it is
// one statement (one round trip; with Config.RowLevelSecurity, one batch of
// the tenant scope and that statement). See [NotifyChannel] for the
// notification it sends.
func (s *Store) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	events, opts, err := store.PrepareAppend(stream, upcasting.Versioned(s.upcaster, events), opts)
	if err != nil {
		return store.AppendResult{}, err
	}
	ids, shared, err := appendArgs(stream, events, opts)
	if err != nil {
		return store.AppendResult{}, err
	}
	n := len(events)

	quiet := s.notifier != nil && !s.inTx()
	sql, args := appendStatementFor(s.inTx(), quiet, opts)
	args = append(shared, args...)

	// On a pool, take the connection first: a failure to get one (the
	// context ended while every connection was busy, or none could be
	// made) proves the append was never sent.
	db, release, err := s.acquire(ctx)
	if err != nil {
		return store.AppendResult{}, unavailable(fmt.Sprintf("append to stream %q in partition %q: get a connection", stream, opts.Partition), err)
	}
	defer release()

	for attempt := 1; ; attempt++ {
		var res store.AppendResult
		var next, lastGlobal, incarnation int64
		err := s.queryRow(ctx, db, opts.Partition, sql, args...).Scan(&next, &lastGlobal, &res.TransactionID, nil, &incarnation)
		if err == nil {
			res = appendResult(next, lastGlobal, res.TransactionID, incarnation, int64(n))
			if quiet {
				s.notifier.Poke(opts.Partition, res.LastGlobalPosition)
			}
			return res, nil
		}
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Nothing written: the version check failed or a message id
			// is already stored. Find out which.
		case isUniqueViolation(err) && !s.inTx():
			// A message id is stored (a retry, a duplicate, or an identical
			// append that raced this one and committed first); the
			// statement (its own transaction) rolled back. Look the ids up.
		case isMissingStream(err):
			// appendExistingPoolSQL found no stream and rolled back.
		case isUniqueViolation(err):
			return store.AppendResult{}, fmt.Errorf("append to stream %q in partition %q: %w: a concurrent append stored one of its message ids first, and the transaction is aborted: %w",
				stream, opts.Partition, store.ErrDuplicateMessageID, err)
		default:
			return store.AppendResult{}, appendError(stream, opts.Partition, err)
		}
		res, retry, err := s.explainEmptyAppend(ctx, db, stream, opts, ids)
		if err != nil || !retry {
			return res, err
		}
		if attempt == maxAppendAttempts {
			return store.AppendResult{}, fmt.Errorf("append to stream %q in partition %q: wrote nothing %d times although the stream's state allowed it",
				stream, opts.Partition, attempt)
		}
	}
}

// appendResult is the outcome of an append statement's row: the stream's
// version, the last global position, the transaction id and the stream's
// incarnation, for an append of n events.
func appendResult(next, last int64, tx uint64, incarnation, n int64) store.AppendResult {
	return store.AppendResult{NextExpectedVersion: store.Version(next), LastGlobalPosition: store.GlobalPosition(last),
		TransactionID: tx, Incarnation: store.Incarnation(incarnation), CreatedNewStream: next == n}
}

// appendError describes an append that failed with err, which none of the
// refusals AppendToStream explains (a version conflict, a stored message
// id) is: a write refused by the tombstone partition of a dropped tenant
// matches store.ErrTenantDropped; a PostgreSQL error whose class proves
// nothing was written matches store.ErrInvalidArgument (class 22, data exception, and 23, integrity
// violation: the input) or store.ErrRefused (class 42: the statement or
// the role's privileges); an error that proves nothing was sent matches
// store.ErrUnavailable. Any other error leaves the outcome unknown to the
// caller (the connection was lost while the statement ran, the context
// ended meanwhile) and is returned wrapped as it is.
func appendError(stream store.StreamID, partition string, err error) error {
	what := fmt.Sprintf("append to stream %q in partition %q", stream, partition)
	if IsTenantDropped(err) {
		return tenantDropped(what, partition, err)
	}
	switch sqlstateClass(err) {
	case classDataException, classIntegrityViolation:
		return fmt.Errorf("%s: %w: PostgreSQL rejected a value, nothing was written: %w", what, store.ErrInvalidArgument, err)
	case classSyntaxOrAccess:
		return fmt.Errorf("%s: %w, nothing was written: %w", what, store.ErrRefused, err)
	}
	if notSent(err) {
		return unavailable(what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// acquire returns where an operation's statements run: a connection taken
// from the pool for the operation when the store runs on a pool, and
// release, which gives it back; otherwise the store's handle and a no-op.
func (s *Store) acquire(ctx context.Context) (querier, func(), error) {
	if pool, ok := s.db().(*pgxpool.Pool); ok {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return nil, nil, err
		}
		return conn, conn.Release, nil
	}
	return s.db(), func() {}, nil
}

// appendStatement returns the append statement for opts and its
// parameters after the eight shared ones: the guarded statements in a
// transaction, the pool's otherwise (see the comment on the statements).
func appendStatement(inTx bool, opts store.AppendOptions) (string, []any) {
	return appendStatementFor(inTx, false, opts)
}

// appendStatementFor is appendStatement, with the pool's statements
// without their notification when quiet is set (a store with a Notifier,
// which sends it after the commit instead).
func appendStatementFor(inTx, quiet bool, opts store.AppendOptions) (string, []any) {
	if quiet && !inTx {
		sql, args := appendStatementFor(false, false, opts)
		switch sql {
		case appendAnyPoolSQL:
			sql = appendAnyPoolQuietSQL
		case appendNewPoolSQL:
			sql = appendNewPoolQuietSQL
		case appendExistingPoolSQL:
			sql = appendExistingPoolQuietSQL
		}
		return sql, args
	}
	exp := opts.ExpectedVersion
	v, exact := exp.Exact()
	incarnation := int64(opts.Incarnation)
	switch {
	case exp == store.NoStream || exact && v == 0:
		if inTx {
			return appendNewSQL, []any{opts.StreamType}
		}
		return appendNewPoolSQL, []any{opts.StreamType}
	case exp == store.StreamExists || incarnation != 0 && !exact:
		// A required incarnation requires the stream: with Any it is
		// StreamExists.
		if inTx {
			return appendExistingSQL, []any{nil, incarnation}
		}
		return appendExistingPoolSQL, []any{nil, incarnation}
	case exact:
		if inTx {
			return appendExactSQL, []any{int64(v), incarnation}
		}
		return appendExistingPoolSQL, []any{int64(v), incarnation}
	default:
		if inTx {
			return appendAnySQL, []any{opts.StreamType}
		}
		return appendAnyPoolSQL, []any{opts.StreamType}
	}
}

// isMissingStream reports whether err is appendExistingPoolSQL refusing to
// append to a missing stream (the NULL message_data it writes on purpose).
func isMissingStream(err error) bool {
	pgErr, ok := pgError(err)
	return ok && pgErr.Code == codeNotNullViolation && pgErr.ColumnName == "message_data"
}

func isUniqueViolation(err error) bool {
	pgErr, ok := pgError(err)
	return ok && pgErr.Code == codeUniqueViolation
}

// storedMessage is a stored message found by appendLookupSQL.
type storedMessage struct {
	stream   string
	position int64
	global   int64
	tx       uint64
	archived bool
}

// explainEmptyAppend runs after an append that wrote nothing and returns
// what the caller gets: the original result of an idempotent retry, an
// error matching ErrDuplicateMessageID, or a *store.VersionConflictError.
// retry is true when none of those applies because the stream changed
// since the append ran; the append should then run again.
func (s *Store) explainEmptyAppend(ctx context.Context, db querier, stream store.StreamID, opts store.AppendOptions, ids []string) (res store.AppendResult, retry bool, err error) {
	rows, err := s.query(ctx, db, opts.Partition, appendLookupSQL, string(stream), opts.Partition, ids)
	if err != nil {
		return res, false, fmt.Errorf("append to stream %q in partition %q: look up the stream after a refused append: %w", stream, opts.Partition, err)
	}
	var current, incarnation *int64
	found := make(map[string]storedMessage)
	for rows.Next() {
		var id, streamID *string
		var pos, global *int64
		var tx *uint64
		var archived *bool
		if err := rows.Scan(&current, &incarnation, &id, &streamID, &pos, &global, &tx, &archived); err != nil {
			rows.Close()
			return res, false, fmt.Errorf("append to stream %q in partition %q: look up the stream after a refused append: %w", stream, opts.Partition, err)
		}
		if id != nil {
			found[*id] = storedMessage{stream: *streamID, position: *pos, global: *global, tx: *tx, archived: *archived}
		}
	}
	if err := rows.Err(); err != nil {
		return res, false, fmt.Errorf("append to stream %q in partition %q: look up the stream after a refused append: %w", stream, opts.Partition, err)
	}

	exists := current != nil
	var version store.Version
	var actual store.Incarnation
	if exists {
		version = store.Version(*current)
	}
	if incarnation != nil {
		actual = store.Incarnation(*incarnation)
	}
	conflict := &store.VersionConflictError{
		Stream: stream, Partition: opts.Partition, Expected: opts.ExpectedVersion,
		Actual: version, ActualExists: exists,
		ExpectedIncarnation: opts.Incarnation, ActualIncarnation: actual,
	}
	if len(found) > 0 {
		res, err := s.idempotentResult(ctx, stream, opts, ids, found)
		if err == nil {
			if conflict.IncarnationChanged() {
				return store.AppendResult{}, false, conflict
			}
			res.Incarnation = actual
		}
		return res, false, err
	}
	if opts.ExpectedVersion.Allows(exists, version) && !conflict.IncarnationChanged() {
		return res, true, nil
	}
	return res, false, conflict
}

// idempotentResult decides whether an append whose message ids are (partly)
// stored is a retry of an earlier append: every id stored in this live
// stream at contiguous positions in the append's order (and right after
// version n for Exact(n) or NoStream). A retry gets the earlier append's
// result; anything else is a duplicate.
func (s *Store) idempotentResult(ctx context.Context, stream store.StreamID, opts store.AppendOptions, ids []string, found map[string]storedMessage) (store.AppendResult, error) {
	dup := func(format string, args ...any) error {
		return fmt.Errorf("append to stream %q in partition %q: %w: %s",
			stream, opts.Partition, store.ErrDuplicateMessageID, fmt.Sprintf(format, args...))
	}
	first, ok := found[ids[0]]
	if !ok {
		for i, id := range ids {
			if m, ok := found[id]; ok {
				return store.AppendResult{}, dup("message id %q of event %d is already stored at position %d of stream %q, but event 0 is new, so this is not a retry",
					id, i, m.position, m.stream)
			}
		}
	}
	for i, id := range ids {
		m, ok := found[id]
		switch {
		case !ok:
			return store.AppendResult{}, dup("message id %q of event 0 is already stored but event %d (%q) is new, so this is not a retry", ids[0], i, id)
		case m.stream != string(stream) || m.archived:
			where := "stream " + fmt.Sprintf("%q", m.stream)
			if m.archived {
				where = "archived " + where
			}
			return store.AppendResult{}, dup("message id %q is already stored in %s", id, where)
		case m.position != first.position+int64(i):
			return store.AppendResult{}, dup("message id %q is already stored at position %d, not in the order of this append", id, m.position)
		}
	}
	after, exact := opts.ExpectedVersion.Exact()
	if opts.ExpectedVersion == store.NoStream {
		after, exact = 0, true
	}
	if exact && first.position != int64(after)+1 {
		return store.AppendResult{}, dup("message id %q is already stored at position %d, not after version %d", ids[0], first.position, after)
	}
	last := found[ids[len(ids)-1]]
	s.logger.LogAttrs(ctx, slog.LevelDebug, "append_idempotent_retry",
		slog.String("stream_id", string(stream)), slog.String("partition", opts.Partition),
		slog.Int64("first_position", first.position), slog.Int("events", len(ids)))
	return store.AppendResult{
		NextExpectedVersion: store.Version(last.position),
		LastGlobalPosition:  store.GlobalPosition(last.global),
		TransactionID:       last.tx,
		CreatedNewStream:    first.position == 1,
	}, nil
}
