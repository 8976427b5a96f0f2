package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/store"
)

var concurrencyTests = []test{
	{"ExactVersionWriters", testConcurrentExact},
	{"RaceToCreate", testRaceToCreate},
	{"UncheckedWriters", testConcurrentAny},
	{"ReadAllWhileAppending", testReadAllWhileAppending},
}

// errList collects errors from goroutines for the test goroutine to report.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errList) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Empty(t, l.errs)
}

// conflictDetail checks err is a version conflict on stream and returns it.
func conflictDetail(err error, stream store.StreamID, partition string, expected store.ExpectedVersion) (*store.VersionConflictError, error) {
	var vc *store.VersionConflictError
	if !errors.Is(err, store.ErrVersionConflict) || !errors.As(err, &vc) {
		return nil, fmt.Errorf("want a version conflict, got %w", err)
	}
	if vc.Stream != stream || vc.Partition != partition || vc.Expected != expected {
		return nil, fmt.Errorf("conflict details wrong: %+v (want stream %q, partition %q, expected %s)", vc, stream, partition, expected)
	}
	return vc, nil
}

// testConcurrentExact runs 32 writers that each read the stream's version
// and append one event at a time with that exact version, retrying on
// conflict, until each has written its share.
func testConcurrentExact(t *testing.T, s store.EventStore) {
	const writers, each = 32, 3
	const stream, partition = store.StreamID("contended"), "tenant-c"
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var (
		wg        sync.WaitGroup
		errs      errList
		mu        sync.Mutex
		conflicts int
	)
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for written := 0; written < each; {
				if ctx.Err() != nil {
					errs.add(fmt.Errorf("writer %d: gave up after %d events: %w", w, written, ctx.Err()))
					return
				}
				res, err := s.ReadStream(ctx, stream, store.ReadOptions{Partition: partition, MaxCount: 1})
				if err != nil {
					errs.add(fmt.Errorf("writer %d: read: %w", w, err))
					return
				}
				v := res.CurrentVersion
				e := ev("Written", fmt.Sprintf(`{"w":%d,"i":%d}`, w, written))
				e.MessageID = fmt.Sprintf("w%d-%d", w, written)
				r, err := s.AppendToStream(ctx, stream, []store.EventData{e},
					store.AppendOptions{Partition: partition, ExpectedVersion: store.Exact(v)})
				if err == nil {
					if r.NextExpectedVersion != v+1 {
						errs.add(fmt.Errorf("writer %d: appended at version %d, want %d", w, r.NextExpectedVersion, v+1))
						return
					}
					written++
					continue
				}
				vc, cerr := conflictDetail(err, stream, partition, store.Exact(v))
				if cerr != nil {
					errs.add(fmt.Errorf("writer %d: %w", w, cerr))
					return
				}
				if !vc.ActualExists || vc.Actual <= v {
					errs.add(fmt.Errorf("writer %d: conflict at expected %d reports actual %d (exists %v)", w, v, vc.Actual, vc.ActualExists))
					return
				}
				mu.Lock()
				conflicts++
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	errs.check(t)
	t.Logf("%d conflicts", conflicts)

	got := requireVersion(t, s, stream, partition, true, writers*each)
	seen := map[string]bool{}
	for _, e := range got.Events {
		require.False(t, seen[e.MessageID], "event %s written twice", e.MessageID)
		seen[e.MessageID] = true
	}
	for w := range writers {
		for i := range each {
			require.True(t, seen[fmt.Sprintf("w%d-%d", w, i)], "event w%d-%d missing", w, i)
		}
	}
}

// testRaceToCreate has writers race to create one new stream, with
// NoStream and with Exact(0): exactly one wins, the others get the typed
// conflict.
func testRaceToCreate(t *testing.T, s store.EventStore) {
	const writers, rounds = 8, 5
	for _, expected := range []store.ExpectedVersion{store.NoStream, store.Exact(0)} {
		for round := range rounds {
			stream := store.StreamID(fmt.Sprintf("race-%s-%d", expected, round))
			var (
				wg     sync.WaitGroup
				errs   errList
				mu     sync.Mutex
				winner = -1
				wins   int
			)
			start := make(chan struct{})
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					batch := withIDs(fmt.Sprintf("%s-w%d", stream, w), evs("Created", 2))
					_, err := s.AppendToStream(t.Context(), stream, batch, store.AppendOptions{ExpectedVersion: expected})
					if err == nil {
						mu.Lock()
						wins++
						winner = w
						mu.Unlock()
						return
					}
					vc, cerr := conflictDetail(err, stream, "default_partition", expected)
					if cerr != nil {
						errs.add(fmt.Errorf("writer %d: %w", w, cerr))
						return
					}
					if !vc.ActualExists || vc.Actual != 2 {
						errs.add(fmt.Errorf("writer %d: conflict reports actual %d (exists %v), want 2 (exists)", w, vc.Actual, vc.ActualExists))
					}
				}()
			}
			close(start)
			wg.Wait()
			errs.check(t)
			require.Equal(t, 1, wins, "%s: exactly one writer creates the stream", stream)
			got := requireVersion(t, s, stream, "", true, 2)
			require.Equal(t, fmt.Sprintf("%s-w%d-1", stream, winner), got.Events[0].MessageID)
		}
	}
}

// testConcurrentAny has writers append without a version check to one
// stream. Each append either commits both its events next to each other
// or (if the backend reports the race) fails with the typed conflict.
func testConcurrentAny(t *testing.T, s store.EventStore) {
	const writers, each = 8, 4
	var (
		wg      sync.WaitGroup
		errs    errList
		mu      sync.Mutex
		results = map[string]store.AppendResult{}
	)
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				prefix := fmt.Sprintf("any-w%d-%d", w, i)
				r, err := s.AppendToStream(t.Context(), "unchecked", withIDs(prefix, evs("E", 2)), store.AppendOptions{})
				if err != nil {
					if _, cerr := conflictDetail(err, "unchecked", "default_partition", store.Any); cerr != nil {
						errs.add(fmt.Errorf("writer %d: %w", w, cerr))
						return
					}
					continue
				}
				mu.Lock()
				results[prefix] = r
				mu.Unlock()
			}
		}()
	}
	close(start)
	wg.Wait()
	errs.check(t)
	require.NotEmpty(t, results)

	got := requireVersion(t, s, "unchecked", "", true, store.Version(2*len(results)))
	for prefix, r := range results {
		require.Equal(t, prefix+"-1", got.Events[r.NextExpectedVersion-2].MessageID)
		require.Equal(t, prefix+"-2", got.Events[r.NextExpectedVersion-1].MessageID)
		require.Equal(t, r.LastGlobalPosition, got.Events[r.NextExpectedVersion-1].GlobalPosition)
	}
}

// testReadAllWhileAppending follows the global log from checkpoints while
// writers append: the reader ends up with every event exactly once.
func testReadAllWhileAppending(t *testing.T, s store.EventStore) {
	const writers, each = 4, 15
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	var (
		wg   sync.WaitGroup
		errs errList
	)
	defer func() {
		cancel()
		wg.Wait() // writers are gone even when the reader fails early
	}()
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				e := ev("E", `{}`)
				e.MessageID = fmt.Sprintf("follow-w%d-%d", w, i)
				stream := store.StreamID(fmt.Sprintf("follow-%d-%d", w, i%3))
				if _, err := s.AppendToStream(ctx, stream, []store.EventData{e}, store.AppendOptions{}); err != nil {
					errs.add(fmt.Errorf("writer %d: %w", w, err))
					return
				}
			}
		}()
	}
	close(start)
	writersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(writersDone)
	}()

	seen := map[string]bool{}
	next := store.Position{}
	var log []store.Event // the whole log, once the writers are done
	for len(seen) < writers*each {
		require.NoError(t, ctx.Err(), "reader saw %d of %d events", len(seen), writers*each)
		if log == nil {
			select {
			case <-writersDone:
				errs.check(t)
				log = logOf(t, s, writers*each)
			default:
			}
		}
		// An event of the log at or before the follower's checkpoint that it
		// was not given is skipped for good. (An empty page proves nothing:
		// the visibility guard may hold back events for a while.)
		for _, e := range log {
			if !next.Less(e.Position()) {
				require.True(t, seen[e.MessageID], "%s skipped: the reader's checkpoint %+v is past it", e, next)
			}
		}
		res, err := s.ReadAll(ctx, store.ReadAllOptions{After: next, Limit: 7})
		require.NoError(t, err)
		for _, e := range res.Events {
			require.True(t, next.Less(e.Position()), "%s is not after the checkpoint", e)
			require.False(t, seen[e.MessageID], "%s delivered twice", e.MessageID)
			seen[e.MessageID] = true
			next = e.Position()
		}
		require.Equal(t, next, res.Next)
	}
	wg.Wait()
	errs.check(t)
	res, err := s.ReadAll(ctx, store.ReadAllOptions{After: next})
	require.NoError(t, err)
	require.Empty(t, res.Events, "nothing beyond the events written")
}
