package service

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/telemetry"
)

// tracedBatch wraps the carts snapshot projection in a "projection carts"
// span per batch (telemetry.StartProjectionBatch): a child of the command
// span that wrote the batch's events, found in their metadata, so one trace
// runs from the HTTP request through the command and its append to the
// read-model write. The read-model statements run under that span.
type tracedBatch struct {
	inner *projection.SnapshotProjection[cart.State]
	tel   *telemetry.Telemetry
	name  string
}

func batchOf(name, tenant string, events []store.Event) telemetry.Batch {
	b := telemetry.Batch{Name: name, Tenant: tenant, Size: len(events),
		Metadata: func(i int) map[string]any { return events[i].Metadata }}
	if len(events) > 0 {
		b.FirstPosition = int64(events[0].GlobalPosition)
		b.LastPosition = int64(events[len(events)-1].GlobalPosition)
	}
	return b
}

// HandleBatch implements projection.BatchHandler.
func (t *tracedBatch) HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error {
	ctx, span := t.tel.StartProjectionBatch(ctx, batchOf(t.name, "", events))
	err := t.inner.HandleBatch(ctx, tx, events)
	processed := len(events)
	if err != nil {
		processed = 0
	}
	span.End(ctx, processed, err)
	return err
}

// FinishBatch implements projection.BatchFinisher.
func (t *tracedBatch) FinishBatch(tx pgx.Tx, committed bool) { t.inner.FinishBatch(tx, committed) }

// ResetReadModel implements projection.Resetter.
func (t *tracedBatch) ResetReadModel(ctx context.Context, tx pgx.Tx, partition string) error {
	return t.inner.ResetReadModel(ctx, tx, partition)
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// traced wraps h in a server span named after its route, continuing the
// caller's W3C trace context when the request carries one.
func traced(tracer trace.Tracer, route string, h http.HandlerFunc) http.HandlerFunc {
	prop := propagation.TraceContext{}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route)))
		defer span.End()
		rec := &statusRecorder{ResponseWriter: w}
		h(rec, r.WithContext(ctx))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", rec.status))
		if rec.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(rec.status))
		}
	}
}
