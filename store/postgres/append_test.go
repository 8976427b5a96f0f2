package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

// 32 writers append to one stream with exact expected versions, each
// re-reading its version and retrying on conflict until it has written K
// events: every position is written exactly once, in each writer's order,
// and every failed attempt is a well-formed *store.VersionConflictError.
func TestAppendConcurrentExact(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	const (
		writers   = 32
		perWriter = 8
		stream    = store.StreamID("contended")
		partition = "tenant-x"
	)
	ctx := t.Context()
	start := make(chan struct{})
	errs := make(chan error, writers)
	var mu sync.Mutex
	conflicts := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for k := 0; k < perWriter; {
				rr, err := s.ReadStream(ctx, stream, store.ReadOptions{Partition: partition, From: math.MaxInt64})
				if err != nil {
					errs <- fmt.Errorf("writer %d: read: %w", w, err)
					return
				}
				v := rr.CurrentVersion
				ev := store.EventData{Type: "Wrote", Data: json.RawMessage(fmt.Sprintf(`{"w":%d,"k":%d}`, w, k))}
				res, err := s.AppendToStream(ctx, stream, []store.EventData{ev},
					store.AppendOptions{Partition: partition, ExpectedVersion: store.Exact(v)})
				if err == nil {
					if res.NextExpectedVersion != v+1 || res.CreatedNewStream != (v == 0) {
						errs <- fmt.Errorf("writer %d: appended at version %d: result %+v", w, v, res)
						return
					}
					k++
					continue
				}
				var vc *store.VersionConflictError
				switch {
				case !errors.As(err, &vc):
					errs <- fmt.Errorf("writer %d: append at version %d: not a conflict: %w", w, v, err)
					return
				case vc.Stream != stream || vc.Partition != partition || vc.Expected != store.Exact(v) ||
					!vc.ActualExists || vc.Actual <= v || vc.Actual > writers*perWriter:
					errs <- fmt.Errorf("writer %d: append at version %d: wrong conflict detail %+v", w, v, *vc)
					return
				}
				mu.Lock()
				conflicts++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	require.Equal(t, store.Version(writers*perWriter), requireConsistent(t, pool, stream, partition))
	rr, err := s.ReadStream(ctx, stream, store.ReadOptions{Partition: partition})
	require.NoError(t, err)
	require.Len(t, rr.Events, writers*perWriter)
	next := make([]int, writers) // each writer's events appear once, in its order
	for i, e := range rr.Events {
		require.Equal(t, store.Version(i+1), e.StreamPosition)
		var body struct{ W, K int }
		require.NoError(t, json.Unmarshal(e.Data, &body))
		require.Equal(t, next[body.W], body.K, "writer %d's events out of order at position %d", body.W, i+1)
		next[body.W]++
	}
	t.Logf("%d conflicts", conflicts)
	require.Positive(t, conflicts, "32 writers on one stream never conflicted: the test did not race")
}

// Two connections race to create a new stream: one wins, the other gets the
// typed conflict naming the winner's version, never a raw unique violation.
func TestAppendCreateRace(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	for _, expected := range []store.ExpectedVersion{store.NoStream, store.Exact(0)} {
		for round := range 25 {
			stream := store.StreamID(fmt.Sprintf("new-%s-%d", expected, round))
			ready := sync.WaitGroup{}
			ready.Add(2)
			start := make(chan struct{})
			type outcome struct {
				res store.AppendResult
				err error
			}
			out := make([]outcome, 2)
			var wg sync.WaitGroup
			for i := range 2 {
				// Each writer holds its own connection, so both statements
				// are on the wire when the barrier opens.
				conn, err := pool.Acquire(t.Context())
				require.NoError(t, err)
				wg.Go(func() {
					defer conn.Release()
					ready.Done()
					<-start
					out[i].res, out[i].err = s.AppendToStream(t.Context(), stream, events("Created", i+1),
						store.AppendOptions{ExpectedVersion: expected})
				})
			}
			ready.Wait()
			close(start)
			wg.Wait()
			winners := 0
			for i, o := range out {
				if o.err == nil {
					winners++
					require.True(t, o.res.CreatedNewStream)
					require.Equal(t, store.Version(i+1), o.res.NextExpectedVersion)
					loser := out[1-i]
					requireConflict(t, loser.err, stream, "default_partition", expected, store.Version(i+1), true)
				}
			}
			require.Equal(t, 1, winners, "round %d with %s: %v / %v", round, expected, out[0].err, out[1].err)
			requireConsistent(t, pool, stream, "default_partition")
		}
	}
}

// The loser of a creation race waits for the winner's transaction: if the
// winner commits it gets the conflict, if the winner rolls back it creates
// the stream itself. The winner's transaction is held open, so the race is
// certain.
func TestAppendCreateRaceWaitsForWinner(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	for _, commit := range []bool{true, false} {
		for _, expected := range []store.ExpectedVersion{store.NoStream, store.Exact(0), store.Any} {
			stream := store.StreamID(fmt.Sprintf("held-%t-%s", commit, expected))
			tx, err := pool.Begin(t.Context())
			require.NoError(t, err)
			_, err = s.WithTx(tx).AppendToStream(t.Context(), stream, events("First", 2), store.AppendOptions{ExpectedVersion: store.NoStream})
			require.NoError(t, err)

			waiting := lockWaiters(t, pool)
			done := make(chan struct{})
			var res store.AppendResult
			var appendErr error
			go func() {
				defer close(done)
				res, appendErr = s.AppendToStream(t.Context(), stream, events("Second", 1), store.AppendOptions{ExpectedVersion: expected})
			}()
			waitFor(t, "the second append to wait for the first", func() bool { return lockWaiters(t, pool) > waiting })
			if commit {
				require.NoError(t, tx.Commit(t.Context()))
			} else {
				require.NoError(t, tx.Rollback(t.Context()))
			}
			<-done
			switch {
			case expected == store.Any && commit:
				require.NoError(t, appendErr)
				require.NotZero(t, res.Incarnation)
				require.Equal(t, store.AppendResult{NextExpectedVersion: 3, LastGlobalPosition: res.LastGlobalPosition, TransactionID: res.TransactionID,
					Incarnation: res.Incarnation}, res)
			case commit:
				requireConflict(t, appendErr, stream, "default_partition", expected, 2, true)
			default:
				require.NoError(t, appendErr)
				require.True(t, res.CreatedNewStream)
				require.Equal(t, store.Version(1), res.NextExpectedVersion)
			}
			requireConsistent(t, pool, stream, "default_partition")
		}
	}
}

// Unchecked writers racing on one (new) stream all succeed, at contiguous
// positions, and exactly one of them created the stream.
func TestAppendConcurrentAny(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	const writers, batch = 16, 3
	start := make(chan struct{})
	results := make([]store.AppendResult, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			results[w], errs[w] = s.AppendToStream(t.Context(), "any", events("E", batch), store.AppendOptions{})
		})
	}
	close(start)
	wg.Wait()
	created := 0
	ends := map[store.Version]bool{}
	for w := range writers {
		require.NoError(t, errs[w])
		if results[w].CreatedNewStream {
			created++
		}
		require.Zero(t, results[w].NextExpectedVersion%batch, "batches interleaved: %+v", results[w])
		ends[results[w].NextExpectedVersion] = true
	}
	require.Equal(t, 1, created)
	require.Len(t, ends, writers)
	require.Equal(t, store.Version(writers*batch), requireConsistent(t, pool, "any", "default_partition"))
}

// poolSessionsIdle reports whether every other session of the pool's
// database is idle and belongs to a connection the pool still holds.
func poolSessionsIdle(t *testing.T, pool *pgxpool.Pool) bool {
	t.Helper()
	held := map[uint32]bool{}
	for _, c := range pool.AcquireAllIdle(t.Context()) {
		held[c.Conn().PgConn().PID()] = true
		c.Release()
	}
	rows, err := pool.Query(t.Context(), `SELECT pid, state FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`)
	require.NoError(t, err)
	type session struct {
		PID   uint32
		State *string
	}
	sessions, err := pgx.CollectRows(rows, pgx.RowToStructByPos[session])
	require.NoError(t, err)
	for _, s := range sessions {
		if !held[s.PID] || s.State == nil || *s.State != "idle" {
			return false
		}
	}
	return true
}

// Cancelling an append's context at a random moment leaves all of its
// events or none: the stream's version always equals its number of
// messages, at contiguous positions, in whole batches.
func TestAppendCancelledMidway(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	const batch = 2000
	big := events("Big", batch)
	for i := range big {
		big[i].Metadata = store.Metadata{"pad": fmt.Sprintf("%0100d", i)}
	}

	// Calibrate: how long one uncancelled append takes here.
	began := time.Now()
	_, err := s.AppendToStream(t.Context(), "calibrate", big, store.AppendOptions{})
	require.NoError(t, err)
	took := time.Since(began)

	const stream = store.StreamID("cancelled")
	var want store.Version
	outcomes := map[string]int{}
	for i := range 30 {
		ctx, cancel := context.WithCancel(t.Context())
		timer := time.AfterFunc(time.Duration(rand.Int64N(int64(took)*3/2+1)), cancel)
		res, err := s.AppendToStream(ctx, stream, big, store.AppendOptions{})
		timer.Stop()
		cancel()
		// pgx stops waiting when the context ends, but the server runs
		// the statement to its end (and may commit it), even when pgx has
		// closed the connection: what was sent is still in the socket,
		// and a backend that has not read it yet shows as idle. Check once
		// every session of this database is an idle connection of the
		// pool: a closed connection's backend exits only after it has
		// run what it was sent.
		waitFor(t, "the cancelled append to finish on the server", func() bool {
			return poolSessionsIdle(t, pool)
		})
		got := requireConsistent(t, pool, stream, "default_partition")
		switch {
		case err == nil:
			outcomes["done"]++
			want += batch
			require.Equal(t, want, res.NextExpectedVersion)
		case got == want+batch: // cancelled, but the server committed: ambiguous, but whole
			outcomes["committed-then-cancelled"]++
			want += batch
		default:
			outcomes["cancelled"]++
			require.ErrorIs(t, err, context.Canceled, "iteration %d", i)
		}
		require.Equal(t, want, got, "iteration %d: a partial append is visible (err %v)", i, err)
	}
	t.Logf("outcomes: %v (one append takes %v)", outcomes, took)
	require.Positive(t, outcomes["cancelled"], "no append was cancelled midway: the test did not exercise cancellation")
}
