package consumer

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/cfgerr"
	"github.com/troupehq/troupe/projection/internal/hook"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
)

// Defaults of Config, the seed consumer's.
const (
	DefaultName         = "default-consumer"
	DefaultBatchSize    = 100
	DefaultPollInterval = time.Second
)

// Config configures a Consumer.
type Config struct {
	// Name identifies the consumer's checkpoint, lease and status.
	// Defaults to DefaultName.
	Name string
	// Store is read with ReadAll. Defaults to a store/postgres store on
	// the pool given to New.
	Store store.EventStore
	// Partition limits the consumer to one partition. Defaults to every
	// partition.
	Partition string
	// Handlers are subscribed per event type before any Subscribe call,
	// e.g. typed handlers from projection.NewRegistry. Defaults to none.
	Handlers projection.Registry
	// BatchSize is the most events per batch (and transaction). Defaults
	// to DefaultBatchSize.
	BatchSize int
	// PollInterval is how often the log is read when no notification
	// arrives. Defaults to DefaultPollInterval.
	PollInterval time.Duration
	// DisableNotify turns LISTEN/NOTIFY wake-ups off. Defaults to false.
	DisableNotify bool
	// LeaseRetryInterval: see projection.Config. Defaults to
	// projection.DefaultLeaseRetryInterval.
	LeaseRetryInterval time.Duration
	// Retry is the retry policy for failing events. Each zero field
	// defaults to the field of projection.DefaultRetry.
	Retry retry.Policy
	// OnFailure is what happens once an event's retries are used up:
	// projection.FailStop (the default) stops the consumer at the event,
	// projection.FailSkip records it in projection_dead_letters and goes on.
	OnFailure projection.FailureAction
	// Logger receives diagnostics. Defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider creates the tracer of the "consumer <Name>" span of
	// each batch (see docs/telemetry.md). Defaults to
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the projection instruments, recorded under
	// Name (see docs/telemetry.md). Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Consumer is the seed's event store consumer, made reliable: handlers
// subscribe to an event type or to every event, and the consumer feeds them
// the global log from a checkpoint persisted in subscriptions. It runs on
// the continuous projection's engine, so it reads the log gap-free, runs
// one batch at a time (never two polls at once), commits the checkpoint in
// the batch's transaction (handlers get it), does not pass a failing
// handler unless OnFailure says skip (then it records the event), wakes on
// NOTIFY, and Stop waits for the batch in flight. Each event carries its
// partition.
type Consumer struct {
	p   *projection.Projection
	cfg Config // defaults filled in

	mu     sync.RWMutex
	byType map[string][]projection.Handler
	all    []projection.Handler
}

// New checks cfg and returns a Consumer on pool with no subscriptions. A
// nil cfg means every default. Like a projection, a consumer needs a pool:
// it holds a lease connection of its own and shares the pool's listener.
// Configuration errors name the projection.Config field the consumer's
// field is passed to.
func New(pool *pgxpool.Pool, cfg *Config) (*Consumer, error) {
	if pool == nil {
		return nil, cfgerr.Errorf("consumer.New: pool is nil (a consumer needs a *pgxpool.Pool: it holds a lease connection of its own)")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	cfg = &c
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cons := &Consumer{cfg: *cfg, byType: map[string][]projection.Handler{}}
	for typ, hs := range projection.MergeRegistries(cfg.Handlers) {
		for i, h := range hs {
			if h == nil {
				return nil, cfgerr.Errorf("consumer.Config.Handlers[%q][%d] is nil", typ, i)
			}
		}
		cons.byType[typ] = hs
	}
	p, err := projection.New(pool, &projection.Config{
		Name:               cfg.Name,
		Store:              cfg.Store,
		Partition:          cfg.Partition,
		BatchHandlers:      []projection.BatchHandler{dispatch{cons}},
		BatchSize:          cfg.BatchSize,
		PollInterval:       cfg.PollInterval,
		DisableNotify:      cfg.DisableNotify,
		LeaseRetryInterval: cfg.LeaseRetryInterval,
		Retry:              cfg.Retry,
		OnFailure:          cfg.OnFailure,
		Logger:             cfg.Logger,
		TracerProvider:     cfg.TracerProvider,
		MeterProvider:      cfg.MeterProvider,
	})
	if err != nil {
		return nil, err
	}
	hook.MarkConsumer(p)
	cons.p = p
	return cons, nil
}

// Subscribe adds h for events of eventType. Handlers run in subscription
// order, before the handlers subscribed to every event. A subscription made
// while the consumer runs applies from its next batch.
func (c *Consumer) Subscribe(eventType string, h projection.Handler) {
	if h == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Copy on write: a batch in flight keeps iterating the old map.
	m := maps.Clone(c.byType)
	m[eventType] = append(slices.Clip(m[eventType]), h)
	c.byType = m
}

// SubscribeToAll adds h for every event.
func (c *Consumer) SubscribeToAll(h projection.Handler) {
	if h == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = append(slices.Clip(c.all), h)
}

// Start starts consuming; see projection.Projection.Start.
func (c *Consumer) Start(ctx context.Context) error { return c.p.Start(ctx) }

// Stop stops consuming after the batch in flight; see projection.Projection.Stop.
func (c *Consumer) Stop(ctx context.Context) error { return c.p.Stop(ctx) }

// Run consumes until ctx is cancelled; see projection.Projection.Run.
func (c *Consumer) Run(ctx context.Context) error { return c.p.Run(ctx) }

// Status returns the consumer's status; see projection.Projection.Status.
func (c *Consumer) Status(ctx context.Context) (projection.Status, error) { return c.p.Status(ctx) }

// WaitFor waits until the consumer has handled every event up to pos; see
// Projection.WaitFor.
func (c *Consumer) WaitFor(ctx context.Context, pos store.Position) error {
	return c.p.WaitFor(ctx, pos)
}

// Err returns the failure the consumer stopped at, or nil.
func (c *Consumer) Err() error { return c.p.Err() }

// Projection returns the engine the consumer runs on.
func (c *Consumer) Projection() *projection.Projection { return c.p }

// dispatch runs the consumer's subscriptions for a batch.
type dispatch struct{ c *Consumer }

func (d dispatch) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	d.c.mu.RLock()
	byType, all := d.c.byType, d.c.all
	d.c.mu.RUnlock()
	for _, e := range events {
		for _, h := range byType[e.Type] {
			if err := h(ctx, tx, e); err != nil {
				return err
			}
		}
		for _, h := range all {
			if err := h(ctx, tx, e); err != nil {
				return err
			}
		}
	}
	return nil
}
