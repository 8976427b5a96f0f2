package otelwire

import (
	"errors"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/telemetry"
)

// Config configures a [Telemetry]. The zero value (or a nil *Config) uses the
// OpenTelemetry globals, which are no-ops until the application installs an
// SDK.
type Config struct {
	// TracerProvider creates Troupe's tracer. Defaults to
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates Troupe's instruments. Defaults to
	// otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// Propagator carries trace context in actor message headers between
	// processes ([Telemetry.InjectHeaders], [Telemetry.ExtractHeaders]).
	// Event metadata always uses W3C Trace Context whatever this is set to.
	// Defaults to otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
}

func (c Config) withDefaults() Config {
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.Propagator == nil {
		c.Propagator = otel.GetTextMapPropagator()
	}
	return c
}

// Telemetry holds Troupe's tracer, propagator and metric instruments. It is
// safe for concurrent use. Build one with [New] and share it; all methods
// are also safe on a nil *Telemetry, where they record nothing.
type Telemetry struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	meter      metric.Meter

	commandDuration   metric.Float64Histogram
	commandConflicts  metric.Int64Counter
	commandRetries    metric.Int64Counter
	appendDuration    metric.Float64Histogram
	appendBatchSize   metric.Int64Histogram
	actorsLive        metric.Int64UpDownCounter
	actorActivations  metric.Int64Counter
	actorPassivations metric.Int64Counter
	actorReplayed     metric.Int64Histogram
	batchDuration     metric.Float64Histogram
	eventsProjected   metric.Int64Counter
	deadLettered      metric.Int64Counter
	lagEvents         metric.Int64ObservableGauge
	lagTime           metric.Float64ObservableGauge

	// attrs caches measurement options by their (bounded) attribute values
	// so recording a measurement does not build an attribute set each time.
	attrs sync.Map // attrKey → metric.MeasurementOption
}

// Bucket boundaries of the histograms.
var (
	// DurationBuckets are the boundaries, in seconds, of every duration
	// histogram: 0.5 ms to 10 s.
	DurationBuckets = []float64{
		0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075,
		0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10,
	}
	// BatchSizeBuckets are the boundaries of the append batch size
	// histogram, in events.
	BatchSizeBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}
	// ReplayBuckets are the boundaries of the events-replayed histogram.
	ReplayBuckets = []float64{0, 1, 10, 50, 100, 500, 1000, 5000, 10000, 50000}
)

// New returns a Telemetry using cfg (nil uses the OpenTelemetry globals). It
// creates every instrument once; an error means the meter provider refused
// one.
func New(cfg *Config) (*Telemetry, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	c = c.withDefaults()
	t := &Telemetry{
		tracer:     c.TracerProvider.Tracer(telemetry.ScopeName),
		propagator: c.Propagator,
		meter:      c.MeterProvider.Meter(telemetry.ScopeName),
	}
	if err := t.createInstruments(); err != nil {
		return nil, fmt.Errorf("telemetry: creating instruments: %w", err)
	}
	return t, nil
}

func (t *Telemetry) createInstruments() error {
	m := t.meter
	var err, e error
	keep := func() { err = errors.Join(err, e) }

	t.commandDuration, e = m.Float64Histogram(MetricCommandDuration,
		metric.WithDescription("Time from sending a command to its reply."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(DurationBuckets...))
	keep()
	t.commandConflicts, e = m.Int64Counter(MetricCommandConflicts,
		metric.WithDescription("Appends that failed their expected-version check."),
		metric.WithUnit("{conflict}"))
	keep()
	t.commandRetries, e = m.Int64Counter(MetricCommandRetries,
		metric.WithDescription("Commands decided again after a version conflict."),
		metric.WithUnit("{retry}"))
	keep()
	t.appendDuration, e = m.Float64Histogram(MetricAppendDuration,
		metric.WithDescription("Time taken by one append to the event store."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(DurationBuckets...))
	keep()
	t.appendBatchSize, e = m.Int64Histogram(MetricAppendBatchSize,
		metric.WithDescription("Events written by one append."),
		metric.WithUnit("{event}"), metric.WithExplicitBucketBoundaries(BatchSizeBuckets...))
	keep()
	t.actorsLive, e = m.Int64UpDownCounter(MetricActorsLive,
		metric.WithDescription("Stream actors currently active."),
		metric.WithUnit("{actor}"))
	keep()
	t.actorActivations, e = m.Int64Counter(MetricActorActivations,
		metric.WithDescription("Stream actor activations (state loaded from the store)."),
		metric.WithUnit("{activation}"))
	keep()
	t.actorPassivations, e = m.Int64Counter(MetricActorPassivations,
		metric.WithDescription("Stream actors stopped and dropped from memory."),
		metric.WithUnit("{passivation}"))
	keep()
	t.actorReplayed, e = m.Int64Histogram(MetricActorReplayedEvents,
		metric.WithDescription("Events replayed to rebuild state on one activation."),
		metric.WithUnit("{event}"), metric.WithExplicitBucketBoundaries(ReplayBuckets...))
	keep()
	t.batchDuration, e = m.Float64Histogram(MetricProjectionBatchDuration,
		metric.WithDescription("Time taken to apply and checkpoint one batch of events."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(DurationBuckets...))
	keep()
	t.eventsProjected, e = m.Int64Counter(MetricProjectionEvents,
		metric.WithDescription("Events applied by projections and consumers."),
		metric.WithUnit("{event}"))
	keep()
	t.deadLettered, e = m.Int64Counter(MetricProjectionDeadLettered,
		metric.WithDescription("Events skipped after a handler failure and recorded as dead letters."),
		metric.WithUnit("{event}"))
	keep()
	t.lagEvents, e = m.Int64ObservableGauge(MetricProjectionLagEvents,
		metric.WithDescription("Events in the log a projection has not applied yet."),
		metric.WithUnit("{event}"))
	keep()
	t.lagTime, e = m.Float64ObservableGauge(MetricProjectionLagTime,
		metric.WithDescription("Age of the oldest event a projection has not applied yet."),
		metric.WithUnit("s"))
	keep()
	return err
}

// Tracer returns Troupe's tracer, for spans an application wants in the
// same instrumentation scope.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return nooptracer
	}
	return t.tracer
}

// attrKey identifies a cached attribute set: which instrument family it is
// for (k) and up to three attribute values.
type attrKey struct {
	k       uint8
	a, b, c string
}

const (
	keyKind uint8 = iota
	keyKindOutcome
	keyCommand
	keyKindReason
	keyKindSnapshot
	keyProjection
	keyProjectionOutcome
	keyProjectionEventType
)

// opt returns the measurement option for key, building its attribute set
// once.
func (t *Telemetry) opt(key attrKey) metric.MeasurementOption {
	if v, ok := t.attrs.Load(key); ok {
		return v.(metric.MeasurementOption)
	}
	var kv []attribute.KeyValue
	switch key.k {
	case keyKind:
		kv = []attribute.KeyValue{AttrKind.String(key.a)}
	case keyKindOutcome:
		kv = []attribute.KeyValue{AttrKind.String(key.a), AttrOutcome.String(key.b)}
	case keyCommand:
		kv = []attribute.KeyValue{AttrKind.String(key.a), AttrCommandType.String(key.b), AttrOutcome.String(key.c)}
	case keyKindReason:
		kv = []attribute.KeyValue{AttrKind.String(key.a), AttrReason.String(key.b)}
	case keyKindSnapshot:
		kv = []attribute.KeyValue{AttrKind.String(key.a), AttrSnapshotUsed.Bool(key.b == "true")}
	case keyProjection:
		kv = []attribute.KeyValue{AttrProjection.String(key.a)}
	case keyProjectionOutcome:
		kv = []attribute.KeyValue{AttrProjection.String(key.a), AttrOutcome.String(key.b)}
	case keyProjectionEventType:
		kv = []attribute.KeyValue{AttrProjection.String(key.a), AttrEventType.String(key.b)}
	}
	o := metric.WithAttributeSet(attribute.NewSet(kv...))
	v, _ := t.attrs.LoadOrStore(key, o)
	return v.(metric.MeasurementOption)
}
