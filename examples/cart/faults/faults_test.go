//go:build faults

// Package faults is the fault suite of the cart example: the built cart
// binary against a throwaway PostgreSQL, under load from bounded HTTP
// clients on 127.0.0.1, through four faults (the binary killed with
// SIGKILL, PostgreSQL restarted, PostgreSQL frozen with SIGSTOP, the
// messages table locked). After each it checks that every acknowledged
// write is in the log, that the log holds no duplicate, that the carts
// read model equals a fold of the log, and that no request took longer
// than the request deadline plus two seconds.
//
// The files carry the "faults" build tag, so go test ./... does not build
// them; run the suite with make test-faults.
package faults

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// requestTimeout is the cart binary's -request-timeout (its default).
const requestTimeout = 10 * time.Second

// allowedDuration is the longest a request may take.
const allowedDuration = requestTimeout + 2*time.Second

// Phases of a scenario.
const (
	warmUp       = 3 * time.Second  // load before the fault
	coolDown     = 5 * time.Second  // load after the fault, at least
	stallLength  = 20 * time.Second // how long a freeze or a lock lasts
	minAcksAfter = 20               // acknowledged writes after the fault, to show recovery
	recoveryWait = time.Minute      // bound on reaching minAcksAfter
	catchUpWait  = time.Minute      // bound on the read model catching up
)

const tenant = "faults"

// scenario is one fault: inject runs it while the load runs and returns
// once it is over (the system may still be recovering).
type scenario struct {
	name   string
	inject func(t *testing.T, r *run)
}

// run is what a scenario acts on.
type run struct {
	cluster *cluster
	bin     string
	addr    string
	logPath string
	cart    *cartProc
	pool    *pgxpool.Pool // the suite's own, for the lock and the checks
}

func TestFaults(t *testing.T) {
	bin := buildCart(t, t.TempDir())
	for _, sc := range []scenario{
		{"kill -9 of the cart binary", func(t *testing.T, r *run) {
			r.cart.kill(t)
			r.cart = startCart(t, r.bin, r.addr, r.cluster.connString(), r.logPath)
		}},
		{"PostgreSQL restart", func(t *testing.T, r *run) {
			r.cluster.restart(t)
		}},
		{"PostgreSQL frozen 20s", func(t *testing.T, r *run) {
			pids := r.cluster.freeze(t)
			t.Logf("froze postmaster %d and %d children", pids[0], len(pids)-1)
			time.Sleep(stallLength) // the fault itself: the cluster stays stopped this long
			r.cluster.thaw()
		}},
		{"ACCESS EXCLUSIVE lock on messages for 20s", func(t *testing.T, r *run) {
			ctx, cancel := context.WithTimeout(context.Background(), stallLength+time.Minute)
			defer cancel()
			conn, err := r.pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release()
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			began := time.Now()
			_, err = tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{"messages"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE")
			require.NoError(t, err)
			t.Logf("took the lock in %s", time.Since(began).Round(time.Millisecond))
			time.Sleep(stallLength) // the fault itself: the lock is held this long
			require.NoError(t, tx.Rollback(ctx))
		}},
	} {
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			runScenario(t, bin, sc)
		})
	}
}

func runScenario(t *testing.T, bin string, sc scenario) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startCluster(t)
	r := &run{cluster: c, bin: bin, addr: freeAddr(t), logPath: t.TempDir() + "/cart.log"}
	r.cart = startCart(t, bin, r.addr, c.connString(), r.logPath)
	pool, err := pgxpool.New(ctx, c.connString())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	r.pool = pool

	base := "http://" + r.addr
	resp, err := http.Post(base+"/api/tenants", "application/json", strings.NewReader(`{"tenantId":"`+tenant+`","name":"Fault suite"}`))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	l := newLoad(base, tenant, allowedDuration)
	l.start()
	stopped := false
	defer func() {
		if !stopped {
			l.stop()
		}
	}()
	time.Sleep(warmUp) // load before the fault
	before := l.ackCount()
	require.Positive(t, before, "no write was acknowledged before the fault")

	began := time.Now()
	sc.inject(t, r)
	t.Logf("fault over after %s", time.Since(began).Round(time.Millisecond))

	// The service recovers: writes are acknowledged again. The load goes
	// on for coolDown at least.
	after := l.ackCount()
	faultOver := time.Now()
	deadline := faultOver.Add(recoveryWait)
	for (l.ackCount() < after+minAcksAfter || time.Since(faultOver) < coolDown) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	recovered := l.ackCount() - after
	l.stop()
	stopped = true

	lost, err := lostAcks(ctx, pool, tenant, l.acks)
	require.NoError(t, err)
	t.Log(l.figures(sc.name, len(lost)))
	require.GreaterOrEqual(t, recovered, minAcksAfter, "the service did not recover within %s:\n%s", recoveryWait, r.cart.logTail())
	require.Empty(t, lost, "acknowledged writes missing from the log")
	dups, err := duplicates(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, dups, "the log holds duplicates")
	require.Empty(t, l.slow, "requests took longer than the deadline (%s) + 2s", requestTimeout)

	// The read model catches up with the log and then equals its fold.
	var diff []string
	deadline = time.Now().Add(catchUpWait)
	for {
		diff, err = readModelDiff(ctx, pool, tenant)
		require.NoError(t, err)
		if len(diff) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(diff) > 10 {
		diff = append(diff[:10], "…")
	}
	require.Empty(t, diff, "the carts read model is not a fold of the log")
}
