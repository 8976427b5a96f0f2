package postgres

import (
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// A batch append on the pool writes a run of parts to existing streams
// (Exact(n > 0), StreamExists, or Any with a required incarnation: the
// parts appendExistingPoolSQL would carry) with one statement for the run
// instead of one per part: a host's batches are mostly such parts, and one
// statement costs PostgreSQL far less than many (one Bind/Execute and one
// executor start-up for the run).
//
// The statement keeps the pool family's property (see the comment on the
// statements in append.go): it never reads a partitioned table by
// partition. Streams are written with one INSERT … ON CONFLICT DO UPDATE
// whose WHERE checks each row's expected version and incarnation, looked
// up in the statement's input, and messages with one plain INSERT. Parts
// are numbered from 1 in the input ($1…$5, one element per part) and each
// event names its part and its ordinal in it ($6, $7; then the events'
// columns). A part refused by its check returns no row and is explained
// after the commit, as with the part's own statement. A missing stream is
// refused as appendExistingPoolSQL refuses it (the NULL message_data its
// events get fails the statement), and a stored message id raises a unique
// violation: either error rolls the whole round back, and the round is
// sent again with every part of the run on its own statement, which sorts
// out which part failed and why. The result has one row per written part,
// the part's number first and then the five columns of the per-part
// statements, with a notification per part in the notifying variant.
//
// A run is a sequence of consecutive eligible parts of the batch, which is
// sorted by (partition, stream), and the statement writes the streams rows
// in that order, so locks are still taken in the batch's order.
const appendMultiSQL = `WITH i AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
        WITH ORDINALITY AS i (stream_id, partition, n, expected, incarnation, part)
), s AS (
    INSERT INTO streams (stream_id, partition, stream_type, stream_position)
    SELECT stream_id, partition, '', n FROM i ORDER BY part
    ON CONFLICT (stream_id, partition, is_archived)
        DO UPDATE SET stream_position = streams.stream_position + EXCLUDED.stream_position
        WHERE (SELECT (i.expected IS NULL OR streams.stream_position = i.expected)
                      AND (i.incarnation = 0 OR streams.incarnation = i.incarnation)
               FROM i WHERE i.stream_id = EXCLUDED.stream_id AND i.partition = EXCLUDED.partition)
    RETURNING stream_id, partition, stream_position, incarnation
), p AS (
    SELECT i.part, i.stream_id, i.partition, s.stream_position - i.n AS prev, s.stream_position AS next, s.incarnation
    FROM s JOIN i USING (stream_id, partition)
), m AS (
    INSERT INTO messages (stream_id, stream_position, partition, global_position, message_data, message_metadata,
                          message_schema_version, message_type, message_id)
    SELECT p.stream_id, p.prev + e.ord, p.partition, nextval('emt_global_message_position'),
           CASE WHEN p.prev > 0 THEN e.data::jsonb END, e.meta::jsonb, e.schema_version, e.type, e.id
    FROM p JOIN unnest($6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])
            AS e (part, ord, id, type, data, meta, schema_version) ON e.part = p.part
    ORDER BY p.part, e.ord
    RETURNING partition, stream_id, global_position
), last AS (
    SELECT partition, stream_id, max(global_position) AS global_position FROM m GROUP BY partition, stream_id
)
SELECT p.part, p.next, last.global_position, pg_current_xact_id(),
       ` + appendMultiNotifySQL + `,
       coalesce(p.incarnation, 0)
FROM p JOIN last USING (partition, stream_id)
ORDER BY p.part`

// appendMultiNotifySQL is appendMultiSQL's notification, one per written
// part with its last global position, as the per-part statements send.
const appendMultiNotifySQL = `pg_notify('` + NotifyChannel + `',
                 json_build_object('partition', p.partition, 'globalPosition', last.global_position)::text)`

// appendMultiQuietSQL is appendMultiSQL without the notification, for a
// store with a Config.Notifier.
var appendMultiQuietSQL = strings.Replace(appendMultiSQL, appendMultiNotifySQL, appendQuietSQL, 1)

// multiEligible reports whether p may share a run's statement: on the
// pool, without row-level security (whose scope is set per part), and a
// part appendExistingPoolSQL carries.
func (s *Store) multiEligible(p *batchPart) bool {
	return !s.inTx() && !s.rls && !p.alone && (p.sql == appendExistingPoolSQL || p.sql == appendExistingPoolQuietSQL)
}

// batchRuns splits pending into the statements of a round: each element is
// the indices in pending of one statement's parts, a run of two or more
// consecutive eligible parts or a single part.
func (s *Store) batchRuns(pending []*batchPart) [][]int {
	var runs [][]int
	for i, p := range pending {
		if n := len(runs); n > 0 && s.multiEligible(p) {
			last := runs[n-1]
			if s.multiEligible(pending[last[len(last)-1]]) {
				runs[n-1] = append(last, i)
				continue
			}
		}
		runs = append(runs, []int{i})
	}
	return runs
}

// queueMulti queues the statement writing the parts run of pending.
func (s *Store) queueMulti(b *pgx.Batch, pending []*batchPart, run []int) {
	streams := make([]string, len(run))
	partitions := make([]string, len(run))
	counts := make([]int64, len(run))
	expected := make([]*int64, len(run))
	incarnations := make([]int64, len(run))
	var events int
	for _, i := range run {
		events += int(pending[i].n)
	}
	parts := make([]int64, 0, events)
	ords := make([]int64, 0, events)
	var ids, types, data, metas, versions []string
	for k, i := range run {
		p := pending[i]
		// The shared parameters of appendArgs, then appendExistingPoolSQL's
		// expected version (nil: any) and incarnation.
		streams[k], partitions[k], counts[k] = p.args[0].(string), p.args[1].(string), p.n
		if v, ok := p.args[8].(int64); ok {
			expected[k] = &v
		}
		incarnations[k] = p.args[9].(int64)
		for j := range p.n {
			parts = append(parts, int64(k+1))
			ords = append(ords, j+1)
		}
		ids = append(ids, p.args[3].([]string)...)
		types = append(types, p.args[4].([]string)...)
		data = append(data, p.args[5].([]string)...)
		metas = append(metas, p.args[6].([]string)...)
		versions = append(versions, p.args[7].([]string)...)
	}
	sql := appendMultiSQL
	if s.notifier != nil {
		sql = appendMultiQuietSQL
	}
	b.Queue(sql, streams, partitions, counts, expected, incarnations, parts, ords, ids, types, data, metas, versions)
}

// readMulti reads the rows of a run's statement into rows. A PostgreSQL
// error rolled the round back: the run's parts are marked to go alone and
// readMulti reports true (the round is sent again); any other error is
// returned.
func readMulti(br pgx.BatchResults, pending []*batchPart, run []int, rows []partRow) (fallback bool, err error) {
	res, err := br.Query()
	if err != nil {
		return fallBack(err, pending, run)
	}
	for res.Next() {
		var part, next, last, incarnation int64
		var r store.AppendResult
		if err := res.Scan(&part, &next, &last, &r.TransactionID, nil, &incarnation); err != nil {
			res.Close()
			return false, err
		}
		i := run[part-1]
		rows[i] = partRow{written: true, res: appendResult(next, last, r.TransactionID, incarnation, pending[i].n)}
	}
	res.Close()
	if err := res.Err(); err != nil {
		return fallBack(err, pending, run)
	}
	return false, nil
}

// fallBack handles err, the error of a run's statement: a PostgreSQL error
// marks the run's parts to go alone and reports true; any other error is
// returned.
func fallBack(err error, pending []*batchPart, run []int) (bool, error) {
	if sqlstateClass(err) == "" {
		return false, err
	}
	for _, i := range run {
		pending[i].alone = true
	}
	return true, nil
}
