package projection

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

	"github.com/troupehq/troupe/store"
)

// Defaults of ConsumerConfig, the seed consumer's.
const (
	DefaultConsumerName         = "default-consumer"
	DefaultConsumerBatchSize    = 100
	DefaultConsumerPollInterval = time.Second
)

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	// Name identifies the consumer's checkpoint, lease and status.
	// Defaults to DefaultConsumerName.
	Name string
	// Pool is the database holding the log and the checkpoint. Required.
	Pool *pgxpool.Pool
	// Store is read with ReadAll. Defaults to a store/postgres store on
	// Pool.
	Store store.EventStore
	// Partition limits the consumer to one partition. Defaults to every
	// partition.
	Partition string
	// BatchSize is the most events per batch (and transaction). Defaults
	// to DefaultConsumerBatchSize.
	BatchSize int
	// PollInterval is how often the log is read when no notification
	// arrives. Defaults to DefaultConsumerPollInterval.
	PollInterval time.Duration
	// DisableNotify turns LISTEN/NOTIFY wake-ups off. Defaults to false.
	DisableNotify bool
	// LeaseRetryInterval: see Config. Defaults to DefaultLeaseRetryInterval.
	LeaseRetryInterval time.Duration
	// Retry is the retry policy for failing events.
	Retry RetryPolicy
	// OnFailure is what happens once an event's retries are used up:
	// FailStop (the default) stops the consumer at the event, FailSkip
	// records it in projection_dead_letters and goes on.
	OnFailure FailureAction
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
	p *Projection

	mu     sync.RWMutex
	byType map[string][]Handler
	all    []Handler
}

// NewConsumer checks cfg and returns a Consumer with no subscriptions.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultConsumerName
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultConsumerBatchSize
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultConsumerPollInterval
	}
	c := &Consumer{byType: map[string][]Handler{}}
	p, err := New(Config{
		Name:               cfg.Name,
		Pool:               cfg.Pool,
		Store:              cfg.Store,
		Partition:          cfg.Partition,
		BatchHandlers:      []BatchHandler{consumerDispatch{c}},
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
	p.consumer = true
	c.p = p
	return c, nil
}

// Subscribe adds h for events of eventType. Handlers run in subscription
// order, before the handlers subscribed to every event. A subscription made
// while the consumer runs applies from its next batch.
func (c *Consumer) Subscribe(eventType string, h Handler) {
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
func (c *Consumer) SubscribeToAll(h Handler) {
	if h == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = append(slices.Clip(c.all), h)
}

// Start starts consuming; see Projection.Start.
func (c *Consumer) Start(ctx context.Context) error { return c.p.Start(ctx) }

// Stop stops consuming after the batch in flight; see Projection.Stop.
func (c *Consumer) Stop(ctx context.Context) error { return c.p.Stop(ctx) }

// Run consumes until ctx is cancelled; see Projection.Run.
func (c *Consumer) Run(ctx context.Context) error { return c.p.Run(ctx) }

// Status returns the consumer's status; see Projection.Status.
func (c *Consumer) Status(ctx context.Context) (Status, error) { return c.p.Status(ctx) }

// WaitFor waits until the consumer has handled every event up to pos; see
// Projection.WaitFor.
func (c *Consumer) WaitFor(ctx context.Context, pos store.Position) error {
	return c.p.WaitFor(ctx, pos)
}

// Err returns the failure the consumer stopped at, or nil.
func (c *Consumer) Err() error { return c.p.Err() }

// Projection returns the engine the consumer runs on.
func (c *Consumer) Projection() *Projection { return c.p }

// consumerDispatch runs the consumer's subscriptions for a batch.
type consumerDispatch struct{ c *Consumer }

func (d consumerDispatch) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
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
