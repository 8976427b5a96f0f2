package service

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/actor"
)

// ErrInvalidConfig matches every Config New rejects; the message names the
// field.
var ErrInvalidConfig = errors.New("cart service: invalid config")

// Defaults of Config.
const (
	DefaultMaxBodyBytes    = 64 << 10
	DefaultWaitTimeout     = 5 * time.Second
	DefaultMaxWaitTimeout  = 30 * time.Second
	DefaultCommandTimeout  = 10 * time.Second
	DefaultRequestTimeout  = 10 * time.Second
	DefaultProjectionName  = "carts"
	DefaultProjectionPoll  = time.Second
	DefaultReadModelTable  = "carts"
	defaultProjectionBatch = 500
)

// Config configures a Service. The zero value runs everything in memory.
type Config struct {
	// Pool is the PostgreSQL database holding the events, the tenants
	// registry and the carts read model; it must have been migrated with
	// postgres.Migrate (New creates the carts table itself). Set its
	// ConnConfig.Tracer to an otelpgx.NewTracer() to see the SQL in traces.
	// Defaults to nil: the service then runs on store/memory with an
	// in-process tenant registry and read model, and nothing survives the
	// process.
	Pool *pgxpool.Pool
	// Logger receives the service's logs (and the host's and projection's).
	// Defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider makes the HTTP, command, append and projection spans.
	// Defaults to otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider records the host's and projection's metrics. Defaults
	// to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// MaxBodyBytes caps a request body; a larger one is answered 413.
	// Defaults to DefaultMaxBodyBytes (64 KiB).
	MaxBodyBytes int64
	// WaitTimeout is how long a read with ?waitFor waits for the read model
	// when the request names no ?timeout. Defaults to DefaultWaitTimeout.
	WaitTimeout time.Duration
	// MaxWaitTimeout caps ?timeout. Defaults to DefaultMaxWaitTimeout.
	MaxWaitTimeout time.Duration
	// CommandTimeout bounds the handling of one command. Defaults to
	// DefaultCommandTimeout.
	CommandTimeout time.Duration
	// RequestTimeout bounds every HTTP request as a whole: the tenant
	// look-up, the command or the read-model read, and a ?waitFor wait
	// (a ?timeout beyond it is cut to it). A request still unanswered at
	// the deadline gets 503 with Retry-After, as does one the database
	// cannot serve (unreachable, restarting, its pool exhausted). Defaults
	// to DefaultRequestTimeout (10 s).
	RequestTimeout time.Duration
	// ProjectionName names the carts projection's checkpoint and lease.
	// Defaults to DefaultProjectionName ("carts").
	ProjectionName string
	// ProjectionPollInterval is how often the projection reads the log
	// when no notification wakes it (PostgreSQL only). Defaults to
	// DefaultProjectionPoll.
	ProjectionPollInterval time.Duration
	// Cluster, when set, makes the service's actor host a member of a
	// cluster (actor.Config.Cluster): each cart's stream actor runs on the
	// member that owns the cart, and a request to any member reaches it.
	// It needs Pool (every member shares the database). The host then runs
	// the carts projection as an actor placed by its name: one member runs
	// it, a survivor takes it over when that member dies, and its lease
	// keeps a single writer whatever happens. Answers
	// then carry the header X-Troupe-Member (the member that served the
	// request) and cart writes X-Troupe-Owner (the member that owns the
	// cart), and GET /api/cluster lists the members. Defaults to nil: one
	// process, as without a cluster.
	Cluster *actor.ClusterConfig
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.MaxBodyBytes == 0 {
		out.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if out.WaitTimeout == 0 {
		out.WaitTimeout = DefaultWaitTimeout
	}
	if out.MaxWaitTimeout == 0 {
		out.MaxWaitTimeout = DefaultMaxWaitTimeout
	}
	if out.CommandTimeout == 0 {
		out.CommandTimeout = DefaultCommandTimeout
	}
	if out.RequestTimeout == 0 {
		out.RequestTimeout = DefaultRequestTimeout
	}
	if out.ProjectionName == "" {
		out.ProjectionName = DefaultProjectionName
	}
	if out.ProjectionPollInterval == 0 {
		out.ProjectionPollInterval = DefaultProjectionPoll
	}
	return out
}

func (c *Config) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.MaxBodyBytes < 0:
		return bad("MaxBodyBytes", "is negative (%d)", c.MaxBodyBytes)
	case c.WaitTimeout < 0:
		return bad("WaitTimeout", "is negative (%s)", c.WaitTimeout)
	case c.MaxWaitTimeout < 0:
		return bad("MaxWaitTimeout", "is negative (%s)", c.MaxWaitTimeout)
	case c.MaxWaitTimeout > 0 && c.WaitTimeout > c.MaxWaitTimeout:
		return bad("WaitTimeout", "(%s) is longer than MaxWaitTimeout (%s)", c.WaitTimeout, c.MaxWaitTimeout)
	case c.CommandTimeout < 0:
		return bad("CommandTimeout", "is negative (%s)", c.CommandTimeout)
	case c.RequestTimeout < 0:
		return bad("RequestTimeout", "is negative (%s)", c.RequestTimeout)
	case c.ProjectionPollInterval < 0:
		return bad("ProjectionPollInterval", "is negative (%s)", c.ProjectionPollInterval)
	case c.Cluster != nil && c.Pool == nil:
		return bad("Cluster", "needs Pool: the members of a cluster share one PostgreSQL (the in-memory store lives in one process)")
	}
	return nil
}
