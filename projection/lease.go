package projection

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/projection/internal/listener"
)

// healthTimeout bounds the liveness check of the lease connection.
const healthTimeout = 10 * time.Second

const (
	tryLockSQL = `SELECT pg_try_advisory_lock(hashtextextended($1, 0)), pg_backend_pid()`
	unlockSQL  = `SELECT pg_advisory_unlock(hashtextextended($1, 0))`
)

// lease owns the projection's dedicated connection: it holds the session
// advisory lock that makes one runner active per projection and ticks the
// poll interval. The store's notifications arrive through the pool's
// shared listener (package listener), not on this connection. PostgreSQL
// frees the lock when the connection ends, so a runner whose process dies
// hands the projection over to a standby.
type lease struct {
	p    *Projection
	held atomic.Bool
	// gen counts acquisitions, so the worker notices a lost-and-regained
	// lease between two of its looks.
	gen atomic.Uint64
	// wake is signalled (without blocking) on a notification, a poll tick
	// and every lease change.
	wake chan struct{}
	// probeNow asks the session to check its connection at once.
	probeNow chan struct{}
	// notified is the highest global position a relevant notification
	// named: while the worker has not read it, an empty read means the
	// event is held back by an older transaction still in flight, and the
	// worker reads again soon instead of waiting for the next poll.
	notified atomic.Int64
}

func newLease(p *Projection) *lease {
	return &lease{p: p, wake: make(chan struct{}, 1), probeNow: make(chan struct{}, 1)}
}

// probe asks the lease to check its connection now rather than at the
// next poll tick (a write found the lease gone).
func (l *lease) probe() {
	select {
	case l.probeNow <- struct{}{}:
	default:
	}
}

func (l *lease) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// run connects and takes the lock, again and again, until ctx is done,
// with the projection subscribed to the pool's listener unless
// DisableNotify. The connection (and with it the lock) is closed, and the
// subscription ended, before it returns.
func (l *lease) run(ctx context.Context) {
	p := l.p
	if !p.cfg.DisableNotify {
		unsubscribe := listener.Subscribe(p.pool, p.cfg.Logger, l.notify)
		defer unsubscribe()
	}
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, p.pool.Config().ConnConfig.Copy())
		if err == nil {
			err = l.session(ctx, conn)
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
			if l.held.Load() && ctx.Err() != nil {
				// Stopping: release the lock before returning, so a
				// standby (and the status) sees it free at once rather than
				// when the server notices the connection closed.
				_, _ = conn.Exec(cctx, unlockSQL, p.lockKey)
			}
			p.leasePID.Store(0)
			if l.held.Swap(false) {
				l.signal()
			}
			_ = conn.Close(cctx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_lease_connection_failed",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope),
			slog.Duration("retry_in", p.cfg.LeaseRetryInterval), slog.String("error", errString(err)))
		if sleep(ctx, nil, p.cfg.LeaseRetryInterval) != nil {
			return
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// session tries the lock until it gets it, then wakes the worker every
// poll interval and checks the connection is alive, until it fails or ctx
// is done.
func (l *lease) session(ctx context.Context, conn *pgx.Conn) error {
	p := l.p
	for {
		var ok bool
		var pid uint32
		if err := conn.QueryRow(ctx, tryLockSQL, p.lockKey).Scan(&ok, &pid); err != nil {
			return err
		}
		if ok {
			p.leasePID.Store(pid)
			break
		}
		if err := sleep(ctx, nil, p.cfg.LeaseRetryInterval); err != nil {
			return err
		}
	}
	l.gen.Add(1)
	l.held.Store(true)
	l.signal()
	for {
		t := time.NewTimer(p.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-l.probeNow:
			t.Stop()
		}
		// Poll tick: wake the worker and check the connection is alive
		// (a silently dropped connection would otherwise keep a lock the
		// server has already released).
		l.signal()
		hctx, hcancel := context.WithTimeout(ctx, healthTimeout)
		_, err := conn.Exec(hctx, "SELECT 1")
		hcancel()
		if err != nil {
			return err
		}
	}
}

// notify receives the pool listener's notifications (nil after it
// reconnected) and wakes the worker for the relevant ones.
func (l *lease) notify(n *pgconn.Notification) {
	if l.relevant(n) {
		l.signal()
	}
}

// relevant reports whether a notification may concern the projection: any
// for a projection of every partition, else those naming its partition (or
// that can't be read).
func (l *lease) relevant(n *pgconn.Notification) bool {
	if n == nil {
		return true
	}
	var payload struct {
		Partition      string `json:"partition"`
		GlobalPosition int64  `json:"globalPosition"`
	}
	if err := json.Unmarshal([]byte(n.Payload), &payload); err != nil {
		return true
	}
	if l.p.scope != AllPartitions && payload.Partition != "" && payload.Partition != l.p.scope {
		return false
	}
	l.p.lag.noteHead(payload.GlobalPosition, time.Now())
	for {
		cur := l.notified.Load()
		if payload.GlobalPosition <= cur || l.notified.CompareAndSwap(cur, payload.GlobalPosition) {
			return true
		}
	}
}
