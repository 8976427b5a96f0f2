package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/internal/upcasting"
)

// A batch append sends every part's append statement in one pgx.Batch on
// one connection. On the pool (or a connection) the batch is one implicit
// transaction: pgx sends it with a single Sync, so PostgreSQL commits the
// statements together at its end, and an error in any statement rolls all
// of them back and leaves the connection idle. In a caller's transaction
// the batch runs inside a savepoint of its own instead, so a failed round
// leaves the caller's transaction usable.
//
// On the pool the parts use the pool's statements (see the comment on the
// statements in append.go): they never read a partitioned table by
// partition, so their prepared generic plans lock only the partitions they
// write, however many tenants there are, and cost no planning. A part
// refused by its version check on an existing stream returns no row and
// raises no error. The refusals that do raise one — a message id already
// stored (a retry or a duplicate: a unique violation) and an exact or
// stream-exists append to a missing stream (the NULL message_data the
// statement writes on purpose) — abort the round: the part that raised it
// is explained by the look-up AppendToStream uses, and the others are sent
// again without it. So is any other error (a constraint or a value
// PostgreSQL refuses), which becomes that part's own error; a batch takes
// at most one round more than it has refused parts. In the steady state of
// a host (streams that exist, versions it knows) no part raises anything.
//
// A run of consecutive parts to existing streams (Exact(n > 0),
// StreamExists: a host's steady state) shares one statement on the pool
// instead, which costs PostgreSQL far less than a statement per part; a
// run whose statement raises an error is sent again part by part (see
// append_multi.go).
//
// In a caller's transaction the parts use the guarded statements of the
// transaction family, which refuse without raising an error (an error
// would abort the caller's transaction); parts that returned no row are
// explained after the round.
//
// Parts are sent in (partition, stream) order, so two batches lock the
// streams rows they share in the same order and never deadlock each other.
const (
	batchSavepointSQL = `SAVEPOINT troupe_append_batch`
	batchReleaseSQL   = `RELEASE SAVEPOINT troupe_append_batch`
	batchRollbackSQL  = `ROLLBACK TO SAVEPOINT troupe_append_batch; RELEASE SAVEPOINT troupe_append_batch`
)

var _ store.BatchAppender = (*Store)(nil)

// batchPart is one part of a batch on its way to PostgreSQL.
type batchPart struct {
	index    int // in the caller's slice
	stream   store.StreamID
	opts     store.AppendOptions
	n        int64 // number of events
	ids      []string
	sql      string
	args     []any
	attempts int  // rounds that wrote nothing for it although it was allowed
	alone    bool // sent on its own statement, never in a run's (see append_multi.go)
}

// AppendBatch implements [store.BatchAppender]. In the common case it is
// one round trip and one transaction: every part's append statement (one
// statement for each run of parts to existing streams) in one pgx.Batch,
// committed together. Refused parts cost one look-up each after
// the commit; a part whose statement raises an error costs one more round
// for the others. With Config.Notifier set (and not in a caller's
// transaction) the Notifier is poked once per written part after the
// commit; otherwise each part's statement notifies [NotifyChannel], and
// PostgreSQL sends the notifications at the one commit.
//
// A batch that could not get a connection, or whose first round never
// reached PostgreSQL, fails with an error matching store.ErrUnavailable.
// When the connection is lost or ctx ends after some round committed, the
// parts whose outcome is unknown get the error as their Err and the others
// keep their outcome.
func (s *Store) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	if len(appends) == 0 {
		return nil, nil
	}
	prepared, errs := store.PrepareBatch(upcasting.VersionedBatch(s.upcaster, appends))
	out := make([]store.StreamAppendResult, len(appends))
	quiet := s.notifier != nil && !s.inTx()
	var pending []*batchPart
	for i, a := range prepared {
		if errs[i] != nil {
			out[i].Err = errs[i]
			continue
		}
		ids, args, err := appendArgs(a.Stream, a.Events, a.Options)
		if err != nil {
			out[i].Err = err
			continue
		}
		sql, more := appendStatementFor(s.inTx(), quiet, a.Options)
		pending = append(pending, &batchPart{index: i, stream: a.Stream, opts: a.Options, n: int64(len(a.Events)), ids: ids, sql: sql, args: append(args, more...)})
	}
	if len(pending) == 0 {
		return out, nil
	}
	slices.SortFunc(pending, func(a, b *batchPart) int {
		return cmp.Or(cmp.Compare(a.opts.Partition, b.opts.Partition), cmp.Compare(a.stream, b.stream))
	})

	db, release, err := s.acquire(ctx)
	if err != nil {
		return nil, unavailable(fmt.Sprintf("append batch of %d streams: get a connection", len(pending)), err)
	}
	defer release()

	committed := false // whether some round committed (its outcomes are known)
	for len(pending) > 0 {
		rows, failed, err := s.batchRound(ctx, db, pending)
		switch {
		case err != nil && !committed:
			if notSent(err) {
				return nil, unavailable(fmt.Sprintf("append batch of %d streams", len(pending)), err)
			}
			return nil, fmt.Errorf("append batch of %d streams: outcome unknown: %w", len(pending), err)
		case err != nil:
			for _, p := range pending {
				out[p.index].Err = appendError(p.stream, p.opts.Partition, err)
			}
			return out, nil
		case failed == roundAgain:
			// A run's statement failed and rolled the round back: its
			// parts go on their own statements.
			continue
		case failed >= 0:
			// The round rolled back: the failed part gets its error (or,
			// for a message id stored meanwhile, its explanation), the
			// others go again.
			p := pending[failed]
			pending = slices.Delete(pending, failed, failed+1)
			if !isUniqueViolation(rows[failed].err) && !isMissingStream(rows[failed].err) {
				out[p.index].Err = appendError(p.stream, p.opts.Partition, rows[failed].err)
				continue
			}
			if isUniqueViolation(rows[failed].err) && sharesMessageID(p, pending) {
				// The stored id is a batch mate's, written earlier in the
				// same round: the two parts can't both be stored.
				out[p.index].Err = fmt.Errorf("append to stream %q in partition %q: %w: another part of the batch has one of its message ids",
					p.stream, p.opts.Partition, store.ErrDuplicateMessageID)
				continue
			}
			if s.explainBatchPart(ctx, db, p, out) {
				pending = append(pending, p)
			}
			continue
		}
		committed = true
		var again []*batchPart
		for i, p := range pending {
			if r := rows[i]; r.written {
				out[p.index].Result = r.res
				if quiet {
					s.notifier.Poke(p.opts.Partition, r.res.LastGlobalPosition)
				}
				continue
			}
			if s.explainBatchPart(ctx, db, p, out) {
				again = append(again, p)
			}
		}
		pending = again
	}
	return out, nil
}

// sharesMessageID reports whether p has a message id of one of others in
// the same partition.
func sharesMessageID(p *batchPart, others []*batchPart) bool {
	for _, o := range others {
		if o == p || o.opts.Partition != p.opts.Partition {
			continue
		}
		for _, id := range o.ids {
			if slices.Contains(p.ids, id) {
				return true
			}
		}
	}
	return false
}

// explainBatchPart explains a part that wrote nothing (see
// explainEmptyAppend) into out and reports whether it should be sent
// again.
func (s *Store) explainBatchPart(ctx context.Context, db querier, p *batchPart, out []store.StreamAppendResult) bool {
	res, retry, err := s.explainEmptyAppend(ctx, db, p.stream, p.opts, p.ids)
	switch {
	case err != nil || !retry:
		out[p.index] = store.StreamAppendResult{Result: res, Err: err}
		return false
	case p.attempts+1 == maxAppendAttempts:
		out[p.index].Err = fmt.Errorf("append to stream %q in partition %q: wrote nothing %d times although the stream's state allowed it",
			p.stream, p.opts.Partition, p.attempts+1)
		return false
	}
	p.attempts++
	return true
}

// partRow is what one part's statement returned in a round.
type partRow struct {
	written bool // a row: the part's events are in the round's transaction
	res     store.AppendResult
	err     error // the statement's error (only for the failed part)
}

// roundAgain is batchRound's failed when a run's statement raised a
// PostgreSQL error: the round rolled back and should be sent again.
const roundAgain = -2

// batchRound sends pending as one batch and returns each part's row. When
// a part's statement raised a PostgreSQL error the round rolled back and
// failed is its index (-1 otherwise; roundAgain when the statement was a
// run's); err is an error of the round as a whole (nothing sent, connection
// lost, ctx ended, the commit failed), after which the round's outcome is
// unknown unless notSent(err).
func (s *Store) batchRound(ctx context.Context, db querier, pending []*batchPart) (rows []partRow, failed int, err error) {
	inTx := s.inTx()
	b := &pgx.Batch{}
	if inTx {
		b.Queue(batchSavepointSQL)
	}
	runs := s.batchRuns(pending)
	for _, run := range runs {
		if len(run) > 1 {
			s.queueMulti(b, pending, run)
			continue
		}
		p := pending[run[0]]
		if s.rls {
			b.Queue(scopeSQL, p.opts.Partition)
		}
		b.Queue(p.sql, p.args...)
	}
	if inTx {
		b.Queue(batchReleaseSQL)
	}

	br := db.SendBatch(ctx, b)
	rows = make([]partRow, len(pending))
	failed = -1
	err = func() error {
		if inTx {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for _, run := range runs {
			if len(run) > 1 {
				again, err := readMulti(br, pending, run, rows)
				if again {
					failed = roundAgain
				}
				if again || err != nil {
					return err
				}
				continue
			}
			i, p := run[0], pending[run[0]]
			var next, last, incarnation int64
			var res store.AppendResult
			var err error
			if s.rls {
				_, err = br.Exec()
			}
			if err == nil {
				err = br.QueryRow().Scan(&next, &last, &res.TransactionID, nil, &incarnation)
			}
			switch {
			case err == nil:
				rows[i] = partRow{written: true, res: appendResult(next, last, res.TransactionID, incarnation, p.n)}
			case errors.Is(err, pgx.ErrNoRows):
			case sqlstateClass(err) != "":
				rows[i].err, failed = err, i
				return nil
			default:
				return err
			}
		}
		if inTx {
			_, err := br.Exec()
			return err
		}
		return nil
	}()
	closeErr := br.Close()
	switch {
	case err != nil:
		return nil, -1, err
	case failed != -1:
		if inTx {
			if _, err := db.Exec(ctx, batchRollbackSQL); err != nil {
				return nil, -1, fmt.Errorf("roll back to the batch's savepoint: %w", err)
			}
		}
		return rows, failed, nil
	case closeErr != nil:
		return nil, -1, closeErr
	}
	return rows, -1, nil
}
