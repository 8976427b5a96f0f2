package actor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

// batchStore is a memory store whose appends take a while, so appends
// gather while one is in flight; it records the size of every batch and
// can fail a batch as a whole.
type batchStore struct {
	*memory.Store
	delay time.Duration

	mu       sync.Mutex
	sizes    []int // parts of every AppendBatch call
	lone     int   // AppendToStream calls
	failNext error // the next AppendBatch fails with it, writing nothing
	dropNext bool  // the next AppendBatch answers with one outcome too few
	inflight atomic.Int64
	peak     atomic.Int64
}

func (s *batchStore) enter() func() {
	n := s.inflight.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(s.delay)
	return func() { s.inflight.Add(-1) }
}

func (s *batchStore) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	defer s.enter()()
	s.mu.Lock()
	s.lone++
	s.mu.Unlock()
	return s.Store.AppendToStream(ctx, stream, events, opts)
}

func (s *batchStore) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	defer s.enter()()
	s.mu.Lock()
	s.sizes = append(s.sizes, len(appends))
	fail, drop := s.failNext, s.dropNext
	s.failNext, s.dropNext = nil, false
	s.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	out, err := s.Store.AppendBatch(ctx, appends)
	if drop && len(out) > 0 {
		out = out[:len(out)-1]
	}
	return out, err
}

func (s *batchStore) stats() (sizes []int, lone int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...), s.lone
}

// Must show: 64 senders on 64 streams share store calls. Every command is
// answered, every stream's events are in its senders' order at contiguous
// positions, no batch is larger than MaxAppendBatch, and no more batches
// are in flight than AppendBatchesInFlight.
func TestCrossStreamGroupCommit(t *testing.T) {
	t.Parallel()
	st := &batchStore{Store: memory.New(), delay: 2 * time.Millisecond}
	h, agg := startHost(t, st, actor.Config{MaxAppendBatch: 16, AppendBatchesInFlight: 2})
	const senders, perSender = 64, 25
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, senders*perSender)
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				// By = i+1 records the order the sender sent in.
				if _, err := agg.Send(ctx, counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", s), By: i + 1}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("command failed: %v", err)
	}
	for s := range senders {
		events := readAll(t, st.Store, "t", fmt.Sprintf("s-%d", s))
		require.Len(t, events, perSender)
		for i, e := range events {
			require.Equal(t, store.Version(i+1), e.StreamPosition)
			require.JSONEq(t, fmt.Sprintf(`{"by":%d}`, i+1), string(e.Data), "stream s-%d keeps its sender's order", s)
		}
	}
	sizes, lone := st.stats()
	stats := h.Stats()
	parts := lone
	maxSize := 0
	for _, n := range sizes {
		parts += n
		maxSize = max(maxSize, n)
	}
	require.Equal(t, senders*perSender, parts, "every append went to the store exactly once")
	assert.LessOrEqual(t, maxSize, 16, "no batch over MaxAppendBatch")
	assert.LessOrEqual(t, st.peak.Load(), int64(2), "no more than AppendBatchesInFlight store calls at once")
	assert.Equal(t, int64(len(sizes)+lone), stats.AppendCalls)
	assert.Less(t, stats.AppendCalls, int64(senders*perSender/4),
		"appends of different streams shared store calls (%d calls for %d appends; batch sizes %v)", stats.AppendCalls, parts, sizes)
}

// A lone sender's append goes out at once, on its own: nothing waits for a
// batch to fill.
func TestLoneAppendGoesAlone(t *testing.T) {
	t.Parallel()
	st := &batchStore{Store: memory.New()}
	h, agg := startHost(t, st, actor.Config{})
	for i := range 20 {
		_, err := agg.Send(context.Background(), counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", i%3)})
		require.NoError(t, err)
	}
	sizes, lone := st.stats()
	assert.Empty(t, sizes, "no AppendBatch call for appends that never overlap")
	assert.Equal(t, 20, lone)
	assert.Equal(t, int64(20), h.Stats().AppendCalls)
}

// MaxAppendBatchBytes caps a batch: with room for about one append's
// events, every append goes alone.
func TestAppendBatchBytesCap(t *testing.T) {
	t.Parallel()
	st := &batchStore{Store: memory.New(), delay: time.Millisecond}
	_, agg := startHost(t, st, actor.Config{MaxAppendBatchBytes: 1})
	sendMany(t, agg, 16, 10)
	sizes, _ := st.stats()
	assert.Empty(t, sizes, "every batch held a single append")
}

// MaxAppendBatch 1 turns cross-stream batching off.
func TestAppendBatchOff(t *testing.T) {
	t.Parallel()
	st := &batchStore{Store: memory.New(), delay: time.Millisecond}
	_, agg := startHost(t, st, actor.Config{MaxAppendBatch: 1})
	sendMany(t, agg, 16, 10)
	sizes, lone := st.stats()
	assert.Empty(t, sizes)
	assert.Equal(t, 160, lone)
}

// A batch that fails as a whole gives each of its commands the error:
// store.ErrUnavailable as it is (nothing was written), any other error as
// actor.ErrOutcomeUnknown; the streams keep serving afterwards.
func TestAppendBatchFailsAsAWhole(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"unavailable", fmt.Errorf("no connection: %w", store.ErrUnavailable), store.ErrUnavailable},
		{"unknown", errors.New("connection reset by peer"), actor.ErrOutcomeUnknown},
		{"outcome missing", nil, actor.ErrOutcomeUnknown}, // a store answering with too few outcomes
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := &batchStore{Store: memory.New(), delay: 150 * time.Millisecond}
			_, agg := startHost(t, st, actor.Config{AppendBatchesInFlight: 1})
			ctx := context.Background()
			// The first append goes alone and holds the only slot while
			// the next three gather into one batch, which fails. (Its
			// 150 ms leave the three time to gather on a loaded machine;
			// 20 ms did not always.)
			var wg sync.WaitGroup
			results := make([]error, 4)
			wg.Add(1)
			go func() { defer wg.Done(); _, results[0] = agg.Send(ctx, counterCmd{Tenant: "t", Stream: "s-0"}) }()
			require.Eventually(t, func() bool { return st.inflight.Load() == 1 }, time.Minute, time.Millisecond)
			st.mu.Lock()
			st.failNext, st.dropNext = tc.err, tc.err == nil
			st.mu.Unlock()
			for i := 1; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, results[i] = agg.Send(ctx, counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", i)})
				}()
			}
			wg.Wait()
			require.NoError(t, results[0])
			sizes, _ := st.stats()
			require.NotEmpty(t, sizes, "the three appends were batched")
			failed := 0
			for i := 1; i < 4; i++ {
				if results[i] != nil {
					failed++
					assert.ErrorIs(t, results[i], tc.want)
				}
			}
			assert.Equal(t, sizes[0], failed, "every command of the failed batch got the error")
			for i := 1; i < 4; i++ {
				res, err := agg.Send(ctx, counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", i)})
				require.NoError(t, err, "the stream serves again")
				require.Equal(t, store.Version(len(readAll(t, st.Store, "t", fmt.Sprintf("s-%d", i)))), res.Version)
			}
		})
	}
}

// sendMany sends perStream increments to each of streams streams from one
// goroutine per stream and fails the test on any error.
func sendMany(t *testing.T, agg *counterAgg, streams, perStream int) {
	t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perStream {
				if _, err := agg.Send(context.Background(), counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", s)}); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.Zero(t, failed.Load())
}

// Must show, on PostgreSQL: two hosts on two pools send to the same 32
// streams from 64 goroutines, so batches mix clean streams with streams the
// other host just wrote (conflicts, retried alone). Every command is
// answered exactly once: each stream holds exactly the increments sent to
// it at contiguous positions, and the hosts shared store calls.
func TestCrossStreamGroupCommitOnPostgres(t *testing.T) {
	t.Parallel()
	stores := pgStores(t, 2)
	h1, a1 := startHost(t, stores[0], actor.Config{Retry: retryMany})
	h2, a2 := startHost(t, stores[1], actor.Config{Retry: retryMany})
	const streams, senders, perSender = 32, 64, 15
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for s := range senders {
		agg := a1 // senders s and s+32 share stream s%32, one on each host
		if s >= streams {
			agg = a2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perSender {
				if _, err := agg.Send(ctx, counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", s%streams)}); err != nil {
					failed.Add(1)
					t.Errorf("send: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	require.Zero(t, failed.Load())
	total := 0
	for s := range streams {
		events := readAll(t, stores[0], "t", fmt.Sprintf("s-%d", s))
		require.Len(t, events, senders/streams*perSender, "stream s-%d holds every increment sent to it once", s)
		for i, e := range events {
			require.Equal(t, store.Version(i+1), e.StreamPosition)
		}
		total += len(events)
	}
	calls := h1.Stats().AppendCalls + h2.Stats().AppendCalls
	t.Logf("%d commands in %d store calls (%d conflicts)", total, calls, h1.Stats().Conflicts+h2.Stats().Conflicts)
	assert.Less(t, calls, int64(total), "streams shared store calls")
}

// retryMany lets commands on streams two hosts fight over retry until
// they get through.
var retryMany = retry.Policy{MaxAttempts: 100, InitialDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}
