package actor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// projEnv is a migrated database with a counter_totals read model, a
// started writer host sending counter commands, and the pool projections
// run on (its connections are named projectionApp, so a test can kill
// them).
type projEnv struct {
	connString string
	writer     *counterAgg
	pool       *pgxpool.Pool // the projections' pool
	admin      *pgxpool.Pool // the writer's and the test's pool
}

const projectionApp = "troupe-projection-actor-test"

func newProjEnv(t *testing.T) *projEnv {
	t.Helper()
	ctx := context.Background()
	env := &projEnv{connString: pgtest.NewDatabase(t)}
	env.admin = openPool(t, env.connString, "")
	require.NoError(t, postgres.Migrate(ctx, env.admin))
	_, err := env.admin.Exec(ctx, `CREATE TABLE counter_totals (stream text PRIMARY KEY, total int NOT NULL)`)
	require.NoError(t, err)
	env.pool = openPool(t, env.connString, projectionApp)
	st, err := postgres.New(env.admin, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	_, env.writer = startHost(t, st, actor.Config{})
	return env
}

func openPool(t *testing.T, connString, app string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(connString)
	require.NoError(t, err)
	cfg.MaxConns = 8
	if app != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = app
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// totalsHandler adds each increment to its stream's row; it fails while
// fail is set, and blocks on the first event while block is non-nil
// (closing entered, then waiting for block to close).
type totalsHandler struct {
	fail    atomic.Bool
	entered chan struct{}
	block   chan struct{}
	once    sync.Once
}

func (h *totalsHandler) handle(ctx context.Context, tx pgx.Tx, e store.Event) error {
	if h.fail.Load() {
		return errors.New("read model refused the write")
	}
	if h.block != nil {
		var err error
		h.once.Do(func() {
			close(h.entered)
			select {
			case <-h.block:
			case <-ctx.Done():
				err = ctx.Err()
			}
		})
		if err != nil {
			return err
		}
	}
	var d Incremented
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO counter_totals (stream, total) VALUES ($1, $2)
		ON CONFLICT (stream) DO UPDATE SET total = counter_totals.total + EXCLUDED.total`, string(e.StreamID), d.By)
	return err
}

func (env *projEnv) projection(t *testing.T, name string, h *totalsHandler) *projection.Projection {
	t.Helper()
	p, err := projection.New(env.pool, &projection.Config{
		Name:               name,
		Handlers:           projection.Registry{"Incremented": {h.handle}},
		PollInterval:       50 * time.Millisecond,
		LeaseRetryInterval: 50 * time.Millisecond,
		Retry:              retry.Policy{MaxAttempts: 1, InitialDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond},
		Logger:             quietLogger(),
	})
	require.NoError(t, err)
	return p
}

// newProjectionHost is a host that runs projections only; Stop runs at
// cleanup (before the pools close) unless the test stopped it.
func newProjectionHost(t *testing.T, env *projEnv) *actor.Host {
	t.Helper()
	h := newBareProjectionHost(t, env)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, h.Stop(ctx))
	})
	return h
}

// newBareProjectionHost is newProjectionHost for a test that stops the
// host itself.
func newBareProjectionHost(t *testing.T, env *projEnv) *actor.Host {
	t.Helper()
	st, err := postgres.New(env.pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	h, err := actor.New(st, &actor.Config{Logger: quietLogger()})
	require.NoError(t, err)
	return h
}

// send sends n increments of by to each of streams and returns the
// expected totals and the position a projection must reach.
func (env *projEnv) send(t *testing.T, streams, n, by int, want map[string]int) store.Position {
	t.Helper()
	var last store.Position
	for i := range n {
		for s := range streams {
			id := fmt.Sprintf("s-%d", s)
			res, err := env.writer.Send(context.Background(), counterCmd{Stream: id, By: by + i})
			require.NoError(t, err)
			want[id] += by + i
			if last.Less(res.Position) {
				last = res.Position
			}
		}
	}
	return last
}

func (env *projEnv) totals(t *testing.T) map[string]int {
	t.Helper()
	rows, err := env.admin.Query(context.Background(), `SELECT stream, total FROM counter_totals`)
	require.NoError(t, err)
	got := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		require.NoError(t, rows.Scan(&s, &n))
		got[s] = n
	}
	require.NoError(t, rows.Err())
	return got
}

// waitCaughtUp asks the projection actor for its status until its
// checkpoint has reached pos.
func waitCaughtUp(t *testing.T, h *actor.Host, name string, pos store.Position) actor.ProjectionStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := h.ProjectionStatus(context.Background(), name)
		switch {
		case err != nil:
			// The runner's status read may meet a connection killed by
			// the test; the actor's own part must still be there.
			require.Equal(t, name, st.Name, "the actor answered: %v", err)
		case !st.Projection.Checkpoint.Less(pos):
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection %s did not reach %v: status %+v, error %v", name, pos, st, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// The actor catches a read model up, follows new events, answers status
// as a message, and Stop waits for its runner: once Stop has returned the
// runner has released the lease and recorded itself stopped.
func TestProjectionActorCatchesUpAndStopsWithHost(t *testing.T) {
	t.Parallel()
	env := newProjEnv(t)
	want := map[string]int{}
	pos := env.send(t, 20, 5, 1, want)

	h := newProjectionHost(t, env)
	p := env.projection(t, "totals", &totalsHandler{})
	require.NoError(t, h.RunProjection("totals", p, nil))
	st, err := h.ProjectionStatus(context.Background(), "totals")
	require.NoError(t, err)
	require.Equal(t, actor.ProjectionIdle, st.State, "registered on a host not started yet")
	require.Zero(t, st.Runs)

	require.NoError(t, h.Start(context.Background()))
	st = waitCaughtUp(t, h, "totals", pos)
	require.Equal(t, want, env.totals(t))
	require.Equal(t, actor.ProjectionRunning, st.State)
	require.Equal(t, "totals", st.Name)
	require.EqualValues(t, 1, st.Runs)
	require.Zero(t, st.Failures)
	require.NoError(t, st.LastError)
	require.Equal(t, projection.StateRunning, st.Projection.Local)
	require.True(t, st.Projection.Active)

	// It follows: events written now reach the read model.
	pos = env.send(t, 20, 2, 10, want)
	waitCaughtUp(t, h, "totals", pos)
	require.Equal(t, want, env.totals(t))

	require.NoError(t, h.Stop(context.Background()))
	stored, err := projection.LoadStatus(context.Background(), env.admin, "totals", "")
	require.NoError(t, err)
	require.Equal(t, projection.StateStopped, stored.State, "the runner recorded its stop before Host.Stop returned")
	require.False(t, stored.Active, "the lease is released")
	require.Equal(t, pos, stored.Checkpoint)

	_, err = h.ProjectionStatus(context.Background(), "totals")
	require.ErrorIs(t, err, actor.ErrStopped)
	require.ErrorIs(t, h.RunProjection("other", env.projection(t, "other", &totalsHandler{}), nil), actor.ErrStopped)
}

// A projection whose handler fails stops at the event (FailStop); the
// actor restarts it with backoff, answering status meanwhile to many
// concurrent askers, and once the handler works again the read model
// catches up, every event applied once.
func TestProjectionActorRestartsAfterFailingHandler(t *testing.T) {
	t.Parallel()
	env := newProjEnv(t)
	h := newProjectionHost(t, env)
	th := &totalsHandler{}
	th.fail.Store(true)
	p := env.projection(t, "totals", th)
	opts := &actor.ProjectionOptions{Restart: retry.Policy{InitialDelay: 10 * time.Millisecond, MaxDelay: 40 * time.Millisecond}}
	require.NoError(t, h.RunProjection("totals", p, opts))
	require.NoError(t, h.Start(context.Background()))
	want := map[string]int{}
	pos := env.send(t, 5, 3, 1, want)

	var (
		wg        sync.WaitGroup
		stop      = make(chan struct{})
		restarted atomic.Bool
		askErr    = make(chan error, 16)
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, err := h.ProjectionStatus(context.Background(), "totals")
				if err != nil {
					askErr <- err
					return
				}
				if st.State == actor.ProjectionRestarting {
					if !errors.Is(st.LastError, projection.ErrHandlerFailed) || st.RestartAt.IsZero() || st.Failures == 0 {
						askErr <- fmt.Errorf("restarting without its failure: %+v", st)
						return
					}
					if st.Runs >= 3 {
						restarted.Store(true)
					}
				}
			}
		}()
	}
	eventually(t, "the actor to restart the failing projection twice", restarted.Load)
	close(stop)
	waitGroup(t, &wg, time.Minute, "the status askers")
	close(askErr)
	for err := range askErr {
		require.NoError(t, err)
	}
	require.Empty(t, env.totals(t), "nothing was applied while the handler failed")

	th.fail.Store(false)
	st := waitCaughtUp(t, h, "totals", pos)
	require.Equal(t, want, env.totals(t), "every event applied once")
	require.Equal(t, actor.ProjectionRunning, st.State)
	require.GreaterOrEqual(t, st.Runs, int64(3))
	require.ErrorIs(t, st.LastError, projection.ErrHandlerFailed, "the status keeps the last failure")
}

// With Restart.MaxAttempts the actor gives up after that many failed runs
// in a row, and says so.
func TestProjectionActorGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	env := newProjEnv(t)
	env.send(t, 1, 1, 1, map[string]int{})
	h := newProjectionHost(t, env)
	th := &totalsHandler{}
	th.fail.Store(true)
	opts := &actor.ProjectionOptions{Restart: retry.Policy{MaxAttempts: 2, InitialDelay: 5 * time.Millisecond, MaxDelay: 10 * time.Millisecond}}
	require.NoError(t, h.RunProjection("totals", env.projection(t, "totals", th), opts))
	require.NoError(t, h.Start(context.Background()))
	var st actor.ProjectionStatus
	eventually(t, "the actor to give up", func() bool {
		var err error
		st, err = h.ProjectionStatus(context.Background(), "totals")
		require.NoError(t, err)
		return st.State == actor.ProjectionFailed
	})
	require.EqualValues(t, 2, st.Runs)
	require.Equal(t, 2, st.Failures)
	require.ErrorIs(t, st.LastError, projection.ErrHandlerFailed)
	require.Equal(t, projection.StateFailed, st.Projection.State, "the stored status names the failure")
	// Many backoff periods later it has not run again.
	time.Sleep(100 * time.Millisecond)
	st, err := h.ProjectionStatus(context.Background(), "totals")
	require.NoError(t, err)
	require.Equal(t, actor.ProjectionFailed, st.State)
	require.EqualValues(t, 2, st.Runs)
}

// Killing every connection of the projection's pool (its lease, its
// listener, its pooled connections) with pg_terminate_backend: the
// projection takes its lease again and the read model catches up with the
// events written after the kill.
func TestProjectionActorSurvivesKilledConnections(t *testing.T) {
	t.Parallel()
	env := newProjEnv(t)
	h := newProjectionHost(t, env)
	require.NoError(t, h.RunProjection("totals", env.projection(t, "totals", &totalsHandler{}), nil))
	require.NoError(t, h.Start(context.Background()))
	want := map[string]int{}
	waitCaughtUp(t, h, "totals", env.send(t, 5, 2, 1, want))
	lease := leaseBackend(t, env)

	for round := range 3 {
		var killed int
		require.NoError(t, env.admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1`, projectionApp).Scan(&killed))
		require.Positive(t, killed, "round %d", round)
		pos := env.send(t, 5, 2, 1, want)
		st := waitCaughtUp(t, h, "totals", pos)
		require.Equal(t, want, env.totals(t), "round %d", round)
		require.Equal(t, actor.ProjectionRunning, st.State)
		next := leaseBackend(t, env)
		require.NotEqual(t, lease, next, "the lease was taken again on a new connection")
		lease = next
	}
}

// leaseBackend is the pid of the backend holding the projection's lease.
func leaseBackend(t *testing.T, env *projEnv) int {
	t.Helper()
	var pid int
	eventually(t, "a runner to hold the lease", func() bool {
		err := env.admin.QueryRow(context.Background(), `SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() AND a.application_name = $1`, projectionApp).Scan(&pid)
		if errors.Is(err, pgx.ErrNoRows) {
			return false
		}
		require.NoError(t, err)
		return true
	})
	return pid
}

// Registration: names are checked, a duplicate is refused, a projection
// (here a consumer) registered on a running host starts at once, and an
// unknown name is an error.
func TestProjectionActorRegistration(t *testing.T) {
	t.Parallel()
	env := newProjEnv(t)
	h := newProjectionHost(t, env)
	p := env.projection(t, "totals", &totalsHandler{})
	require.ErrorIs(t, h.RunProjection("", p, nil), actor.ErrInvalidConfig)
	require.ErrorIs(t, h.RunProjection("x", nil, nil), actor.ErrInvalidConfig)
	err := h.RunProjection("x", p, &actor.ProjectionOptions{Restart: retry.Policy{InitialDelay: time.Second, MaxDelay: time.Millisecond}})
	require.ErrorIs(t, err, actor.ErrInvalidConfig)
	require.ErrorContains(t, err, "actor.ProjectionOptions.Restart.MaxDelay")
	require.NoError(t, h.RunProjection("totals", p, nil))
	err = h.RunProjection("totals", env.projection(t, "totals", &totalsHandler{}), nil)
	require.ErrorIs(t, err, actor.ErrProjectionExists)
	require.ErrorContains(t, err, `"totals"`)
	_, err = h.ProjectionStatus(context.Background(), "nope")
	require.ErrorIs(t, err, actor.ErrUnknownProjection)

	require.NoError(t, h.Start(context.Background()))
	want := map[string]int{}
	pos := env.send(t, 3, 2, 1, want)
	waitCaughtUp(t, h, "totals", pos)

	var seen atomic.Int64
	c, err := consumer.New(env.pool, &consumer.Config{Name: "audit", PollInterval: 50 * time.Millisecond, LeaseRetryInterval: 50 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	c.SubscribeToAll(func(context.Context, pgx.Tx, store.Event) error { seen.Add(1); return nil })
	require.NoError(t, h.RunProjection("audit", c, nil))
	require.Equal(t, []string{"audit", "totals"}, h.Projections())
	waitCaughtUp(t, h, "audit", pos)
	require.EqualValues(t, 6, seen.Load())
}

// Stop lets the batch in flight finish: a handler blocked in a batch
// holds Stop up, and once released its batch commits.
func TestProjectionActorStopWaitsForBatchInFlight(t *testing.T) {
	t.Parallel()
	env := newProjEnv(t)
	want := map[string]int{}
	pos := env.send(t, 4, 1, 1, want)
	h := newProjectionHost(t, env)
	th := &totalsHandler{entered: make(chan struct{}), block: make(chan struct{})}
	require.NoError(t, h.RunProjection("totals", env.projection(t, "totals", th), nil))
	require.NoError(t, h.Start(context.Background()))
	<-th.entered

	stopped := make(chan error, 1)
	go func() { stopped <- h.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a batch was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(th.block)
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Stop did not return after the batch finished")
	}
	stored, err := projection.LoadStatus(context.Background(), env.admin, "totals", "")
	require.NoError(t, err)
	require.Equal(t, pos, stored.Checkpoint, "the batch in flight committed")
	require.Equal(t, want, env.totals(t))
}

// A Stop whose context ends while a batch is in flight abandons the batch
// (rolled back, nothing applied), still waits for the runner, and says so.
func TestProjectionActorStopGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	env := newProjEnv(t)
	env.send(t, 4, 1, 1, map[string]int{})
	h := newBareProjectionHost(t, env)
	th := &totalsHandler{entered: make(chan struct{}), block: make(chan struct{})}
	require.NoError(t, h.RunProjection("totals", env.projection(t, "totals", th), nil))
	require.NoError(t, h.Start(context.Background()))
	<-th.entered

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, h.Stop(ctx), context.DeadlineExceeded)
	stored, err := projection.LoadStatus(context.Background(), env.admin, "totals", "")
	require.NoError(t, err)
	require.Zero(t, stored.Checkpoint, "the abandoned batch was rolled back")
	require.Empty(t, env.totals(t))
	// The lease connection was closed; the server frees its lock when it
	// notices.
	eventually(t, "the lease to be free", func() bool {
		stored, err := projection.LoadStatus(context.Background(), env.admin, "totals", "")
		require.NoError(t, err)
		return !stored.Active
	})
}
