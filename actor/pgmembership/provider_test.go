package pgmembership

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgserver"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The timings of the tests: short enough to expire members quickly, long
// enough that a loaded machine does not miss a TTL by accident.
var fast = Config{HeartbeatInterval: 100 * time.Millisecond, TTL: time.Second}

// logBuffer collects a provider's logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// member is a provider driven through its seam (start with a publish
// function) instead of a protoactor cluster, with every topology it
// published.
type member struct {
	id   string
	p    *Provider
	logs *logBuffer

	mu        sync.Mutex
	published [][]string // member ids of each topology published, when it differed from the one before
	calls     int        // topologies published, changed or not
}

func (m *member) record(ms cluster.Members) {
	ids := make([]string, len(ms))
	for i, x := range ms {
		ids[i] = x.Id
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if len(m.published) == 0 || !slices.Equal(ids, m.published[len(m.published)-1]) {
		m.published = append(m.published, ids)
	}
}

func (m *member) publishCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// current is the last topology published (nil before the first).
func (m *member) current() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.published) == 0 {
		return nil
	}
	return m.published[len(m.published)-1]
}

func (m *member) history() [][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.published)
}

// publishCallsOf sums publishCalls over ms.
func publishCallsOf(ms ...*member) int {
	n := 0
	for _, m := range ms {
		n += m.publishCalls()
	}
	return n
}

// sees waits until m's topology is exactly ids.
func (m *member) sees(t *testing.T, within time.Duration, ids ...string) {
	t.Helper()
	slices.Sort(ids)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, ids, m.current())
	}, within, 10*time.Millisecond, "topology of %s", m.id)
}

// kill stops m's heartbeats without leaving, as kill -9 of its process
// does.
func (m *member) kill() {
	m.p.mu.Lock()
	defer m.p.mu.Unlock()
	m.p.cancel()
	<-m.p.done
	m.p.stopped = true
}

func newDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(t.Context(), pool))
	return pool
}

// startMember starts a member of cluster "shop" at 127.0.0.1:port, shut
// down (gracefully) when the test ends.
func startMember(t *testing.T, db postgres.DB, cfg Config, id string, port int) *member {
	t.Helper()
	m := &member{id: id, logs: &logBuffer{}}
	cfg.Logger = slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(db, &cfg)
	require.NoError(t, err)
	m.p = p
	self := &cluster.Member{Id: id, Host: "127.0.0.1", Port: int32(port), Kinds: []string{"stream", "topic"}}
	require.NoError(t, p.start("shop", self, m.record))
	t.Cleanup(func() { assert.NoError(t, p.Shutdown(true)) })
	return m
}

func startClient(t *testing.T, db postgres.DB, cfg Config) *member {
	t.Helper()
	m := &member{id: "client", logs: &logBuffer{}}
	cfg.Logger = slog.New(slog.NewTextHandler(m.logs, nil))
	p, err := New(db, &cfg)
	require.NoError(t, err)
	m.p = p
	require.NoError(t, p.start("shop", nil, m.record))
	t.Cleanup(func() { assert.NoError(t, p.Shutdown(true)) })
	return m
}

type tableRow struct {
	ID, Host  string
	Port      int32
	Kinds     []string
	Joined    time.Time
	Heartbeat time.Time
}

func tableRows(t *testing.T, db postgres.DB) map[string]tableRow {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT member_id, host, port, kinds, joined_at, heartbeat_at
		FROM cluster_members WHERE cluster = 'shop'`)
	require.NoError(t, err)
	list, err := pgx.CollectRows(rows, pgx.RowToStructByPos[tableRow])
	require.NoError(t, err)
	out := map[string]tableRow{}
	for _, r := range list {
		out[r.ID] = r
	}
	return out
}

// Three members starting one after the other each know the cluster when
// their start returns (the first heartbeat runs in it), and all end up
// with the same topology; their rows carry address and kinds, and the
// heartbeats move heartbeat_at on the database clock while joined_at
// stays.
func TestClusterMembersJoinAndHeartbeat(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a := startMember(t, db, fast, "a", 7001)
	require.Equal(t, []string{"a"}, a.current(), "a member's start publishes the topology")
	b := startMember(t, db, fast, "b", 7002)
	require.Equal(t, []string{"a", "b"}, b.current())
	c := startMember(t, db, fast, "c", 7003)
	require.Equal(t, []string{"a", "b", "c"}, c.current())
	for _, m := range []*member{a, b, c} {
		m.sees(t, 5*time.Second, "a", "b", "c")
	}

	before := tableRows(t, db)
	require.Len(t, before, 3)
	require.Equal(t, tableRow{ID: "b", Host: "127.0.0.1", Port: 7002, Kinds: []string{"stream", "topic"},
		Joined: before["b"].Joined, Heartbeat: before["b"].Heartbeat}, before["b"])
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		after := tableRows(t, db)
		for id, r := range before {
			assert.Equal(c, r.Joined, after[id].Joined, id)
			assert.True(c, after[id].Heartbeat.After(r.Heartbeat), "heartbeat of %s did not move", id)
		}
	}, 5*time.Second, 50*time.Millisecond)

	// Each change was published once: a's topologies only grew, one
	// different from the next.
	h := a.history()
	require.Equal(t, []string{"a"}, h[0])
	for i := 1; i < len(h); i++ {
		require.Greater(t, len(h[i]), len(h[i-1]), "%v", h)
	}
	require.Contains(t, a.logs.String(), "member joined")
}

// A member that stops heartbeating without leaving (its process killed)
// is dropped by the others within TTL and a few heartbeats, and its row is
// deleted; the survivors agree on the new topology.
func TestClusterKilledMemberExpires(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a := startMember(t, db, fast, "a", 7001)
	b := startMember(t, db, fast, "b", 7002)
	c := startMember(t, db, fast, "c", 7003)
	for _, m := range []*member{a, b, c} {
		m.sees(t, 5*time.Second, "a", "b", "c")
	}

	killed := time.Now()
	c.kill()
	// The age of c's last heartbeat now, on the database clock (the same
	// machine's clock as the test's).
	var micros float64
	require.NoError(t, db.QueryRow(t.Context(), `SELECT extract(epoch FROM clock_timestamp() - heartbeat_at) * 1e6
		FROM cluster_members WHERE member_id = 'c'`).Scan(&micros))
	age := time.Duration(micros)*time.Microsecond - time.Since(killed)
	a.sees(t, 10*time.Second, "a", "b")
	b.sees(t, 10*time.Second, "a", "b")
	took := time.Since(killed)
	t.Logf("survivors dropped the killed member %v after the kill, %v after its last heartbeat (TTL %v, heartbeat %v)",
		took, took+age, fast.TTL, fast.HeartbeatInterval)
	// Expiry counts from the last heartbeat (at the kill it was age old);
	// the survivors see it at their next heartbeat; three more intervals
	// are slack for a busy machine.
	require.Less(t, took+age, fast.TTL+4*fast.HeartbeatInterval+fast.Timeout)
	require.GreaterOrEqual(t, took+age, fast.TTL-20*time.Millisecond, "dropped before its heartbeat was TTL old")
	require.NotContains(t, tableRows(t, db), "c")
	require.Contains(t, a.logs.String()+b.logs.String(), "removed member")
	require.Contains(t, a.logs.String()+b.logs.String(), "heartbeat older than the TTL")
}

// A member that shuts down deletes its row: the others drop it at their
// next heartbeat, well before the TTL.
func TestClusterGracefulLeaveDeletesRow(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a := startMember(t, db, fast, "a", 7001)
	b := startMember(t, db, fast, "b", 7002)
	a.sees(t, 5*time.Second, "a", "b")

	left := time.Now()
	// Shutdown may be called from several goroutines (protoactor calls it
	// twice): one deletes the row, all return once the heartbeats stopped.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { assert.NoError(t, b.p.Shutdown(true)) })
	}
	wg.Wait()
	require.NotContains(t, tableRows(t, db), "b")
	a.sees(t, fast.TTL/2, "a")
	t.Logf("the member that left was dropped %v after its Shutdown", time.Since(left))
	require.NoError(t, b.p.Shutdown(true), "a second Shutdown does nothing")
	require.Len(t, tableRows(t, db), 1)
}

// A client reads the topology and writes nothing: no row, and it deletes
// no expired row.
func TestClusterClientOnlyWatches(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	cl := startClient(t, db, fast)
	require.Equal(t, []string{}, cl.current(), "an empty cluster")
	a := startMember(t, db, fast, "a", 7001)
	cl.sees(t, 5*time.Second, "a")
	require.Len(t, tableRows(t, db), 1)

	a.kill()
	// Only members delete rows: the client drops nobody it knew, and the
	// row stays.
	time.Sleep(fast.TTL + 5*fast.HeartbeatInterval)
	require.Contains(t, tableRows(t, db), "a")
	require.Equal(t, []string{"a"}, cl.current())
	// A member deletes it; the client then drops it.
	startMember(t, db, fast, "b", 7002)
	cl.sees(t, 5*time.Second, "b")
}

// A process started again at the address of a member that was killed is a
// new member (new id); its start deletes the row of the old one, so nobody
// routes to the dead id until the TTL runs out.
func TestClusterRestartedMemberReplacesOldRow(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a := startMember(t, db, fast, "a", 7001)
	old := startMember(t, db, fast, "b-1", 7002)
	a.sees(t, 5*time.Second, "a", "b-1")
	old.kill()

	restarted := startMember(t, db, fast, "b-2", 7002)
	require.Equal(t, []string{"a", "b-2"}, restarted.current())
	a.sees(t, fast.TTL/2, "a", "b-2")
	require.NotContains(t, tableRows(t, db), "b-1")
	require.Contains(t, restarted.logs.String(), "a new process holds its address")
}

// A member whose row the others deleted (its heartbeats failed for longer
// than the TTL while theirs did not) does not insert itself again: it logs
// that it was removed.
func TestClusterMemberRemovedByOthersStaysOut(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a := startMember(t, db, fast, "a", 7001)
	a.sees(t, 5*time.Second, "a")
	_, err := db.Exec(t.Context(), `DELETE FROM cluster_members WHERE member_id = 'a'`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(a.logs.String(), "restart the process") },
		5*time.Second, 10*time.Millisecond)
	time.Sleep(3 * fast.HeartbeatInterval)
	require.Empty(t, tableRows(t, db))
	require.Equal(t, []string{"a"}, a.current(), "it still counts itself")
}

func TestClusterConfigErrors(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{HeartbeatInterval: -1}, "pgmembership.Config.HeartbeatInterval"},
		{Config{TTL: -time.Second}, "pgmembership.Config.TTL"},
		{Config{Timeout: -time.Second}, "pgmembership.Config.Timeout"},
		{Config{HeartbeatInterval: time.Second, TTL: 1500 * time.Millisecond}, "pgmembership.Config.TTL"},
	} {
		_, err := New(db, &c.cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, c.want)
		require.ErrorContains(t, err, c.want)
	}
	_, err := New(nil, nil)
	require.ErrorContains(t, err, "db is nil")
	_, err = New((*pgxpool.Pool)(nil), nil)
	require.ErrorContains(t, err, "db is nil")

	p, err := New(db, nil)
	require.NoError(t, err)
	require.Equal(t, Config{HeartbeatInterval: time.Second, TTL: 5 * time.Second, Timeout: 2 * time.Second, Logger: slog.Default()}, p.cfg)
	p, err = New(db, &Config{HeartbeatInterval: 5 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, p.cfg.TTL, "the default TTL is at least two heartbeats")

	// Starting without a cluster name, twice, or on a database without the
	// table are errors; the last names the table.
	self := &cluster.Member{Id: "a", Host: "127.0.0.1", Port: 7001}
	require.ErrorContains(t, p.start("", self, func(cluster.Members) {}), "no name")
	unmigrated, err := New(pgtest.NewPool(t), &Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.ErrorContains(t, unmigrated.start("shop", self, func(cluster.Members) {}), "cluster_members")
	require.NoError(t, unmigrated.Shutdown(true))

	m := startMember(t, db, fast, "b", 7002)
	require.ErrorContains(t, m.p.start("shop", self, m.record), "already started")
	stopped, err := New(db, nil)
	require.NoError(t, err)
	require.NoError(t, stopped.Shutdown(true))
	require.ErrorContains(t, stopped.start("shop", self, m.record), "shut down")
}

// adminExec runs sql on the server's admin database.
func adminExec(t *testing.T, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pgtest.AdminConnString(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(t.Context(), sql)
	require.NoError(t, err)
}

// While the database is slow (the table locked) and then down (its
// connections refused and cut) for longer than the TTL, every member keeps
// its last topology: heartbeats fail and are logged, nothing is published.
// When the database answers again the heartbeats recover, and nobody is
// expired although every row is older than the TTL then: a member keeps
// the members it knew for one TTL after recovering.
func TestClusterDatabaseUnavailableKeepsTopology(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDatabase(t)
	cfg, err := pgxpool.ParseConfig(connString + " connect_timeout=1")
	if strings.Contains(connString, "://") {
		cfg, err = pgxpool.ParseConfig(connString + "&connect_timeout=1")
	}
	require.NoError(t, err)
	dbName := cfg.ConnConfig.Database
	db, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, postgres.Migrate(t.Context(), db))

	a := startMember(t, db, fast, "a", 7001)
	b := startMember(t, db, fast, "b", 7002)
	c := startMember(t, db, fast, "c", 7003)
	for _, m := range []*member{a, b, c} {
		m.sees(t, 5*time.Second, "a", "b", "c")
	}
	published := len(a.history()) + len(b.history()) + len(c.history())
	require.Eventually(t, func() bool { return a.publishCalls() > 5 }, 5*time.Second, 10*time.Millisecond,
		"a member publishes after every heartbeat")

	// Slow: an open transaction holds the table; heartbeats time out.
	locker, err := pgx.Connect(t.Context(), connString)
	require.NoError(t, err)
	defer locker.Close(context.Background())
	tx, err := locker.Begin(t.Context())
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), `LOCK TABLE cluster_members IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	time.Sleep(fast.Timeout + fast.HeartbeatInterval) // the heartbeats in flight end
	calls := publishCallsOf(a, b, c)
	time.Sleep(2 * fast.TTL)
	require.Equal(t, calls, publishCallsOf(a, b, c), "a topology was published while the database was slow")
	require.NoError(t, tx.Rollback(t.Context()))
	recovered := func(times int) {
		for _, m := range []*member{a, b, c} {
			require.Contains(t, m.logs.String(), "heartbeat failed", m.id)
			require.Eventually(t, func() bool { return strings.Count(m.logs.String(), "heartbeats recovered") >= times },
				10*time.Second, 20*time.Millisecond, m.id)
		}
	}
	recovered(1)

	// Down: the database refuses connections and the open ones are cut.
	adminExec(t, `ALTER DATABASE `+pgx.Identifier{dbName}.Sanitize()+` WITH ALLOW_CONNECTIONS false`)
	adminExec(t, fmt.Sprintf(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'`, dbName))
	time.Sleep(fast.Timeout + fast.HeartbeatInterval)
	calls = publishCallsOf(a, b, c)
	time.Sleep(2 * fast.TTL)
	require.Equal(t, calls, publishCallsOf(a, b, c), "a topology was published while the database was down")
	adminExec(t, `ALTER DATABASE `+pgx.Identifier{dbName}.Sanitize()+` WITH ALLOW_CONNECTIONS true`)

	recovered(2)
	// Past the grace of one TTL, with every member heartbeating again.
	time.Sleep(fast.TTL + 3*fast.HeartbeatInterval)
	require.Len(t, tableRows(t, db), 3)
	require.Equal(t, published, len(a.history())+len(b.history())+len(c.history()), "the topology changed during or after the outage")
	for _, m := range []*member{a, b, c} {
		require.Equal(t, []string{"a", "b", "c"}, m.current())
	}

	// Expiry works again afterwards.
	c.kill()
	a.sees(t, 10*time.Second, "a", "b")
}

// PostgreSQL restarted (sessions cut, the server down for a moment) under
// three members: each keeps its topology, its heartbeats recover on new
// connections, and nobody is expired.
func TestClusterSurvivesDatabaseRestart(t *testing.T) {
	t.Parallel()
	srv, err := pgserver.Start(t.Context(), pgserver.Options{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Stop()) })
	cfg, err := pgxpool.ParseConfig(srv.ConnString() + "&connect_timeout=1")
	require.NoError(t, err)
	db, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	require.NoError(t, postgres.Migrate(t.Context(), db))

	ms := []*member{startMember(t, db, fast, "a", 7001), startMember(t, db, fast, "b", 7002), startMember(t, db, fast, "c", 7003)}
	for _, m := range ms {
		m.sees(t, 5*time.Second, "a", "b", "c")
	}
	for range 2 {
		require.NoError(t, srv.Restart(t.Context()))
		time.Sleep(fast.TTL)
	}
	// Heartbeats fail while the server is down (a pool's idle connections
	// die with it) and then recover. A member whose heartbeat only waited
	// for a connection while the server was down, and got one once it was
	// back, sees no failure; at least one member does.
	failed := 0
	for _, m := range ms {
		if !strings.Contains(m.logs.String(), "heartbeat failed") {
			continue
		}
		failed++
		require.Eventually(t, func() bool { return strings.Contains(m.logs.String(), "heartbeats recovered") },
			10*time.Second, 20*time.Millisecond, "%s failed and did not recover", m.id)
	}
	require.Positive(t, failed, "no member's heartbeat failed while the server was down: the restarts were not seen")
	time.Sleep(fast.TTL + 3*fast.HeartbeatInterval)
	require.Len(t, tableRows(t, db), 3)
	for _, m := range ms {
		require.Equal(t, []string{"a", "b", "c"}, m.current(), m.id)
		h := m.history()
		for i := 1; i < len(h); i++ {
			require.Greater(t, len(h[i]), len(h[i-1]), "%s published a smaller topology: %v", m.id, h)
		}
	}
}
