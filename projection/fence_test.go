package projection_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// gate is a batch handler that blocks its first batch until released,
// then fails it with fail (when set), and reports whether each of its
// batches committed.
type gate struct {
	once     sync.Once
	reached  chan struct{}
	release  chan struct{}
	fail     error
	finished chan bool
}

func newGate(fail error) *gate {
	return &gate{reached: make(chan struct{}), release: make(chan struct{}), fail: fail, finished: make(chan bool, 100)}
}

func (g *gate) HandleBatch(ctx context.Context, _ pgx.Tx, _ []store.Event) error {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.reached)
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.fail
}

func (g *gate) FinishBatch(_ pgx.Tx, committed bool) { g.finished <- committed }

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func loadStatus(t *testing.T, db postgres.DB, name string) projection.Status {
	t.Helper()
	st, err := projection.LoadStatus(projtest.Ctx(t), db, name, "")
	require.NoError(t, err)
	return st
}

// TestProjectionLostLeaseWritesNothing: a runner whose lease connection is
// terminated while it is mid-batch (or while it fails on an event under
// FailStop) and whose projection another runner has taken over commits
// neither its batch nor its checkpoint nor its status afterwards, even
// before the new owner's first commit: the status stays the new owner's
// and every event is applied once, by the new owner.
func TestProjectionLostLeaseWritesNothing(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"mid-batch", "failing"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			pool, es := projtest.NewDB(t)
			projtest.CreateAppliedTable(t, pool)
			poolB := projtest.SecondPool(t, pool)
			pos := projtest.SeedCarts(t, es, "", 2, 1) // 4 events

			cfgA := projtest.FastConfig("fenced")
			var gateA *gate
			if how == "failing" {
				// A fails on its first batch (one event) and stops.
				cfgA.BatchSize = 1
				cfgA.Retry.MaxAttempts = 1
				gateA = newGate(errors.New("poison"))
			} else {
				gateA = newGate(nil)
			}
			cfgA.BatchHandlers = []projection.BatchHandler{gateA, projtest.CountBatch{Owner: "A"}}
			a := projtest.NewProjection(t, pool, cfgA)
			gateB := newGate(nil)
			cfgB := projtest.FastConfig("fenced")
			cfgB.BatchHandlers = []projection.BatchHandler{gateB, projtest.CountBatch{Owner: "B"}}
			b := projtest.NewProjection(t, poolB, cfgB)

			ctxA, cancelA := context.WithCancel(projtest.Ctx(t))
			defer cancelA()
			doneA := make(chan error, 1)
			go func() { doneA <- a.Run(ctxA) }()
			waitClosed(t, gateA.reached, "A mid-batch")
			ownerA := loadStatus(t, pool, "fenced").Owner
			require.NotEmpty(t, ownerA)
			projtest.Start(t, b)
			projtest.Eventually(t, 30*time.Second, "B to stand by", func() bool { return projtest.LocalState(t, b) == projection.StateStandby })

			// A's lease connection dies: B takes over and claims the
			// projection, and is mid-batch itself, having committed
			// nothing yet.
			holder := leaseHolder(t, pool, a)
			require.NotZero(t, holder)
			_, err := pool.Exec(projtest.Ctx(t), `SELECT pg_terminate_backend($1)`, holder)
			require.NoError(t, err)
			waitClosed(t, gateB.reached, "B mid-batch")
			claimed := loadStatus(t, pool, "fenced")
			require.NotEqual(t, ownerA, claimed.Owner)
			require.Equal(t, projection.StateRunning, claimed.State)
			require.Equal(t, store.Position{}, projtest.LoadCheckpoint(t, pool, "fenced", projection.AllPartitions))

			// A's batch goes on: it must not commit.
			close(gateA.release)
			select {
			case committed := <-gateA.finished:
				require.False(t, committed, "A committed a batch after losing its lease")
			case <-time.After(30 * time.Second):
				t.Fatal("timed out waiting for A's batch to end")
			}
			if how == "failing" {
				// A stops at the event it failed on, without recording
				// the failure: the projection is B's.
				select {
				case err := <-doneA:
					require.ErrorIs(t, err, projection.ErrHandlerFailed)
				case <-time.After(30 * time.Second):
					t.Fatal("timed out waiting for A to stop")
				}
			} else {
				projtest.Eventually(t, 30*time.Second, "A to stand by", func() bool { return projtest.LocalState(t, a) == projection.StateStandby })
			}
			st := loadStatus(t, pool, "fenced")
			require.Equal(t, claimed.Owner, st.Owner)
			require.Equal(t, projection.StateRunning, st.State)
			require.Equal(t, claimed.Updated, st.Updated)
			require.Empty(t, st.Error)
			require.Equal(t, store.Position{}, projtest.LoadCheckpoint(t, pool, "fenced", projection.AllPartitions))

			close(gateB.release)
			projtest.WaitFor(t, b, pos)
			cancelA()
			if how == "mid-batch" {
				require.NoError(t, <-doneA)
			}
			st = loadStatus(t, pool, "fenced")
			require.Equal(t, claimed.Owner, st.Owner)
			require.Equal(t, projection.StateRunning, st.State)
			require.Equal(t, map[string]int{"B": 4}, owners(t, pool))
			projtest.RequireAppliedOnce(t, pool, es, "")
		})
	}
}
