// Package listener shares one LISTEN connection per pool among every
// projection and consumer of a process.
//
// The first Subscribe for a pool opens a connection of its own (outside
// the pool, like a projection's lease connection) and listens on the
// store's notification channel with github.com/jackc/pgxlisten; every
// notification is handed to each subscriber of that pool. The last
// unsubscribe stops the listener and waits for its goroutine.
//
// When the connection is lost, the listener reconnects after
// ReconnectDelay; notifications sent meanwhile are lost, so after every
// (re)connection each subscriber is called with a nil notification and
// should read as if notified. Subscribers poll as a fallback anyway.
package listener

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgxlisten"

	"github.com/troupehq/troupe/store/postgres"
)

// ReconnectDelay is how long the listener waits before connecting again
// after its connection failed.
const ReconnectDelay = time.Second

// Func receives a notification of the store's channel, or nil after the
// listener (re)connected (notifications may have been missed). It runs on
// the listener's goroutine and must not block.
type Func func(n *pgconn.Notification)

var (
	mu     sync.Mutex
	shared = map[*pgxpool.Pool]*listener{}
)

type listener struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.RWMutex
	subs map[*subscription]struct{}
}

type subscription struct{ fn Func }

// Subscribe calls fn for every notification the store sends on pool's
// database, starting the pool's listener if fn is its first subscriber.
// The returned function unsubscribes; when fn was the last subscriber it
// stops the listener and waits for it. It is safe to call more than once.
// logger receives the listener's connection errors when fn starts it.
func Subscribe(pool *pgxpool.Pool, logger *slog.Logger, fn Func) (unsubscribe func()) {
	mu.Lock()
	l := shared[pool]
	if l == nil {
		l = start(pool, logger)
		shared[pool] = l
	}
	s := &subscription{fn: fn}
	l.mu.Lock()
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	mu.Unlock()
	return sync.OnceFunc(func() {
		mu.Lock()
		l.mu.Lock()
		delete(l.subs, s)
		last := len(l.subs) == 0
		l.mu.Unlock()
		if last && shared[pool] == l {
			delete(shared, pool)
		}
		mu.Unlock()
		if last {
			l.cancel()
			<-l.done
		}
	})
}

func start(pool *pgxpool.Pool, logger *slog.Logger) *listener {
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{cancel: cancel, done: make(chan struct{}), subs: map[*subscription]struct{}{}}
	pl := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() != nil {
				return // stopping
			}
			logger.LogAttrs(ctx, slog.LevelWarn, "projection_listener_failed",
				slog.String("channel", postgres.NotifyChannel),
				slog.Duration("retry_in", ReconnectDelay), slog.String("error", err.Error()))
		},
		ReconnectDelay: ReconnectDelay,
	}
	pl.Handle(postgres.NotifyChannel, (*dispatch)(l))
	go func() {
		defer close(l.done)
		_ = pl.Listen(ctx) // returns ctx's error once stopped
	}()
	return l
}

// dispatch hands notifications to the listener's subscribers.
type dispatch listener

func (d *dispatch) fanOut(n *pgconn.Notification) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for s := range d.subs {
		s.fn(n)
	}
}

func (d *dispatch) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	d.fanOut(n)
	return nil
}

// HandleBacklog runs once the listener listens, after every (re)connection.
func (d *dispatch) HandleBacklog(context.Context, string, *pgx.Conn) error {
	d.fanOut(nil)
	return nil
}
