package projection

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/projection/internal/batchtel"
	"github.com/troupehq/troupe/store"
)

// startBatch starts the span of a batch the projection (or consumer)
// applies: "projection <name>" or "consumer <name>".
func (p *Projection) startBatch(ctx context.Context, events []store.Event) (context.Context, *otelwire.BatchSpan) {
	b := batchtel.Of(p.cfg.Name, p.cfg.Partition, events)
	if p.consumer {
		return p.tel.StartConsumerBatch(ctx, b)
	}
	return p.tel.StartProjectionBatch(ctx, b)
}

// detachSpan returns ctx without its span: a projection's batches are not
// children of whatever span was current when it was started. A batch of
// one command's events becomes a child of that command's span; others are
// roots linked to their commands.
func detachSpan(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return trace.ContextWithSpanContext(ctx, trace.SpanContext{})
}

// lagTracker keeps what a runner knows about how far it is behind the
// log, so the lag gauges can be read without I/O. Positions are global
// positions of the projection's scope.
type lagTracker struct {
	mu sync.Mutex
	// active: the runner holds the lease and reports lag.
	active bool
	// head is the highest global position known to be in the log: read
	// from it, named by a notification, or read as the head of the log
	// when the lease was taken.
	head int64
	// applied is the checkpoint's global position.
	applied int64
	// oldest is the creation time of the oldest event not yet applied when
	// it has been read, or an estimate (when the runner learned of it, or
	// the creation time of the last event applied); zero when caught up.
	oldest time.Time
}

// start records the runner as active at checkpoint cp; head is the head of
// the log when known (headOK), with its creation time.
func (l *lagTracker) start(cp int64, head int64, headCreated time.Time, headOK bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active, l.applied = true, cp
	l.oldest = time.Time{}
	l.head = max(l.head, cp)
	if headOK && head > l.head {
		l.head = head
	}
	if l.head > l.applied {
		// The oldest unapplied event is no younger than the head; the first
		// read replaces this with its creation time.
		l.oldest = headCreated
		if l.oldest.IsZero() {
			l.oldest = time.Now()
		}
	}
}

// stop records that the runner no longer applies events (lease lost, or
// stopped): another runner reports the lag then.
func (l *lagTracker) stop() {
	l.mu.Lock()
	l.active = false
	l.mu.Unlock()
}

// noteHead records that the log holds an event at pos, learned at seenAt
// (a notification).
func (l *lagTracker) noteHead(pos int64, seenAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pos <= l.head {
		return
	}
	l.head = pos
	if l.head > l.applied && l.oldest.IsZero() {
		l.oldest = seenAt
	}
}

// noteRead records a batch read after the checkpoint: its first event is
// the oldest one not applied.
func (l *lagTracker) noteRead(events []store.Event) {
	if len(events) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range events {
		l.head = max(l.head, int64(e.GlobalPosition))
	}
	if c := events[0].Created; !c.IsZero() {
		l.oldest = c
	} else if l.oldest.IsZero() {
		l.oldest = time.Now()
	}
}

// noteApplied records the checkpoint moving to the event at pos, created
// at created (zero when unknown, as after a reset).
func (l *lagTracker) noteApplied(pos int64, created time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applied = pos
	switch {
	case l.applied >= l.head:
		l.oldest = time.Time{}
	case !created.IsZero():
		// The next event was created about when or after this one: an
		// upper bound until it is read.
		l.oldest = created
	case l.oldest.IsZero():
		l.oldest = time.Now()
	}
}

// lag returns the lag at now, and false when the runner is not active.
func (l *lagTracker) lag(now time.Time) (events int64, behind time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return 0, 0, false
	}
	events = max(l.head-l.applied, 0)
	if events > 0 && !l.oldest.IsZero() {
		behind = max(now.Sub(l.oldest), 0)
	}
	return events, behind, true
}

// observeLag registers the projection's lag gauges for as long as it runs;
// the returned function unregisters them. Telemetry never stops a
// projection: a refused registration is logged.
func (p *Projection) observeLag(ctx context.Context) func() {
	reg, err := p.tel.ObserveProjectionLag(func(_ context.Context, observe func(otelwire.ProjectionLag)) {
		if events, behind, ok := p.lag.lag(time.Now()); ok {
			observe(otelwire.ProjectionLag{Projection: p.cfg.Name, Events: events, Behind: behind})
		}
	})
	if err != nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_lag_metric_failed",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope), slog.String("error", err.Error()))
		return func() {}
	}
	return func() {
		if err := reg.Unregister(); err != nil {
			p.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection_lag_metric_unregister_failed",
				slog.String("projection", p.cfg.Name), slog.String("partition", p.scope), slog.String("error", err.Error()))
		}
	}
}

// startLag starts reporting lag from checkpoint cp when the runner takes
// the lease, with the head of the log read once (one indexed row).
func (p *Projection) startLag(ctx context.Context, cp store.Position) {
	var partArg *string
	if p.cfg.Partition != "" {
		partArg = &p.cfg.Partition
	}
	var (
		txid    uint64
		gp      int64
		created time.Time
	)
	err := p.pool.QueryRow(ctx, lastEventSQL, partArg).Scan(&txid, &gp, &created)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) && ctx.Err() == nil {
		p.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "projection_lag_head_unknown",
			slog.String("projection", p.cfg.Name), slog.String("partition", p.scope), slog.String("error", err.Error()))
	}
	p.lag.start(int64(cp.GlobalPosition), gp, created, err == nil)
}
