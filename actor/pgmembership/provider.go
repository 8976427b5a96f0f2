package pgmembership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/troupehq/troupe/store/postgres"
)

// ErrInvalidConfig matches every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("invalid pgmembership config")

// Defaults of Config.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultTTL               = 5 * time.Second
)

// Config configures a Provider. The zero value (or a nil *Config) means
// the defaults.
type Config struct {
	// HeartbeatInterval is how often a member refreshes its row and reads
	// the others'. Default DefaultHeartbeatInterval (1s).
	HeartbeatInterval time.Duration
	// TTL is how old a member's last heartbeat may be before the others
	// drop it from the topology and delete its row; it bounds how long a
	// dead member keeps its streams (see the package documentation). At
	// least twice HeartbeatInterval. Default DefaultTTL (5s).
	TTL time.Duration
	// Timeout bounds one database round trip (a heartbeat, the start's
	// insert, the leave's delete). Default twice HeartbeatInterval, at most
	// TTL.
	Timeout time.Duration
	// Logger receives membership changes (INFO), heartbeat failures
	// (WARN) and this member's removal by the others (ERROR). Default
	// slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.HeartbeatInterval < 0:
		return c, invalid("pgmembership.Config.HeartbeatInterval is %v, must not be negative", c.HeartbeatInterval)
	case c.TTL < 0:
		return c, invalid("pgmembership.Config.TTL is %v, must not be negative", c.TTL)
	case c.Timeout < 0:
		return c, invalid("pgmembership.Config.Timeout is %v, must not be negative", c.Timeout)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.TTL == 0 {
		c.TTL = max(DefaultTTL, 2*c.HeartbeatInterval)
	}
	if c.TTL < 2*c.HeartbeatInterval {
		return c, invalid("pgmembership.Config.TTL is %v, must be at least twice pgmembership.Config.HeartbeatInterval (%v)",
			c.TTL, c.HeartbeatInterval)
	}
	if c.Timeout == 0 {
		c.Timeout = min(2*c.HeartbeatInterval, c.TTL)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TTL < time.Millisecond {
		return c, invalid("pgmembership.Config.TTL is %v, must be at least 1ms", c.TTL)
	}
	return c, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Provider is a cluster.ClusterProvider keeping the membership in
// PostgreSQL. One Provider serves one member (or client) once: StartMember
// or StartClient, then Shutdown.
type Provider struct {
	db  postgres.DB
	cfg Config

	mu      sync.Mutex
	started bool
	stopped bool
	loop    *loop
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ cluster.ClusterProvider = (*Provider)(nil)

// New returns a provider over db (a *pgxpool.Pool in practice: heartbeats
// run on their own goroutine) whose database has schema migration 8
// (postgres.Migrate). cfg nil means the defaults; an invalid field is an
// error naming it that matches ErrInvalidConfig.
func New(db postgres.DB, cfg *Config) (*Provider, error) {
	if postgres.IsNil(db) {
		return nil, errors.New("pgmembership: db is nil")
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Provider{db: db, cfg: c}, nil
}

// StartMember registers c's member (its actor system id, host, port and
// kinds) under c's cluster name and publishes the cluster's topology to
// c.MemberList, then keeps heartbeating (and publishing) until Shutdown. When the database
// cannot be reached it logs that and keeps trying in the background; an
// error the database answers (a missing table, a refused permission) is
// returned.
func (p *Provider) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("pgmembership: start member: the actor system's address: %w", err)
	}
	if port <= 0 {
		return fmt.Errorf("pgmembership: start member: the actor system has no network address (%q): start remoting first", c.ActorSystem.Address())
	}
	kinds := c.GetClusterKinds()
	slices.Sort(kinds)
	self := &cluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: kinds}
	return p.start(c.Config.Name, self, c.MemberList.UpdateClusterTopology)
}

// StartClient watches c's cluster and publishes its topology to
// c.MemberList, without a row of its own.
func (p *Provider) StartClient(c *cluster.Cluster) error {
	return p.start(c.Config.Name, nil, c.MemberList.UpdateClusterTopology)
}

// start is what StartMember and StartClient share: self is nil for a
// client; publish receives the topology after every successful heartbeat.
func (p *Provider) start(name string, self *cluster.Member, publish func(cluster.Members)) error {
	if name == "" {
		return errors.New("pgmembership: start: the cluster has no name")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.stopped {
		return errors.New("pgmembership: start: the provider was already started or shut down; use one provider per member")
	}
	l := &loop{db: p.db, cfg: p.cfg, cluster: name, self: self, publish: publish,
		logger: p.cfg.Logger.With(slog.String("cluster", name))}
	if self != nil {
		l.logger = l.logger.With(slog.String("member", self.Id))
	}
	// The first heartbeat runs here, so a member knows the cluster when
	// its start returns.
	if err := l.tick(context.Background()); err != nil && isAnswered(err) {
		return fmt.Errorf("pgmembership: start %s: %w", l.what(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.started, p.loop, p.cancel, p.done = true, l, cancel, make(chan struct{})
	go p.run(ctx, l)
	return nil
}

// run heartbeats every interval until ctx is cancelled (which also
// abandons a heartbeat in flight).
func (p *Provider) run(ctx context.Context, l *loop) {
	defer close(p.done)
	t := time.NewTicker(p.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = l.tick(ctx)
		}
	}
}

// Shutdown stops the heartbeats, waits for the goroutine, and deletes the
// member's row (graceful or not: a member that shuts down is gone, and
// the others drop it at their next heartbeat instead of after TTL). A
// second call does nothing.
func (p *Provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started || p.stopped {
		p.stopped = true
		return nil
	}
	p.stopped = true
	p.cancel()
	<-p.done
	return p.loop.leave(graceful)
}
