package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Metadata keys written and read by this package: the strings of
// store.MetaTraceParent, store.MetaTraceState, store.MetaCorrelationID,
// store.MetaCausationID and store.MetaMessageID.
const (
	metaTraceParent   = "traceparent"
	metaTraceState    = "tracestate"
	metaCorrelationID = "correlationId"
	metaCausationID   = "causationId"
	metaMessageID     = "messageId"
)

type ctxKey int

const (
	correlationKey ctxKey = iota
	causationKey
)

// WithCorrelationID returns a copy of ctx carrying id as the correlation id:
// the id shared by every message of one conversation (a request and all
// commands and events that follow from it). An empty id leaves ctx as is.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, correlationKey, id)
}

// CorrelationID returns the correlation id carried by ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey).(string)
	return id
}

// WithCausationID returns a copy of ctx carrying id as the causation id: the
// id of the message (command or event) that caused what is done with ctx.
// An empty id leaves ctx as is.
func WithCausationID(ctx context.Context, id string) context.Context {
	if id == "" {
		return ctx
	}
	return context.WithValue(ctx, causationKey, id)
}

// CausationID returns the causation id carried by ctx, or "".
func CausationID(ctx context.Context) string {
	id, _ := ctx.Value(causationKey).(string)
	return id
}

// traceContext is the W3C Trace Context format; event metadata always uses
// it, whatever propagator the process uses elsewhere, because the metadata
// outlives the process and is read by others.
var traceContext propagation.TraceContext

// metadataCarrier adapts event metadata to propagation.TextMapCarrier. Only
// string values are trace context.
type metadataCarrier map[string]any

func (c metadataCarrier) Get(key string) string {
	s, _ := c[key].(string)
	return s
}

func (c metadataCarrier) Set(key, value string) { c[key] = value }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k, v := range c {
		if _, ok := v.(string); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// InjectMetadata saves the trace context and the correlation and causation
// ids of ctx in an event's metadata and returns the metadata (a new map when
// md is nil and there is something to save).
//
// The span context of ctx (call it with the command span's context) is
// written as W3C "traceparent" and, when not empty, "tracestate"; a stale
// "tracestate" is removed. Without a valid span context the trace keys are
// left alone. "correlationId" and "causationId" are written from ctx only
// when md has no non-empty value under them: ids the caller put in the
// metadata win.
func InjectMetadata(ctx context.Context, md map[string]any) map[string]any {
	sc := trace.SpanContextFromContext(ctx)
	corr, caus := CorrelationID(ctx), CausationID(ctx)
	if !sc.IsValid() && corr == "" && caus == "" {
		return md
	}
	if md == nil {
		md = make(map[string]any, 4)
	}
	if sc.IsValid() {
		delete(md, metaTraceState)
		traceContext.Inject(ctx, metadataCarrier(md))
	}
	if corr != "" && metadataCarrier(md).Get(metaCorrelationID) == "" {
		md[metaCorrelationID] = corr
	}
	if caus != "" && metadataCarrier(md).Get(metaCausationID) == "" {
		md[metaCausationID] = caus
	}
	return md
}

// SpanContextFromMetadata returns the span context saved in an event's
// metadata by InjectMetadata (marked remote), and whether there was a valid
// one.
func SpanContextFromMetadata(md map[string]any) (trace.SpanContext, bool) {
	if metadataCarrier(md).Get(metaTraceParent) == "" {
		return trace.SpanContext{}, false
	}
	sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), metadataCarrier(md)))
	return sc, sc.IsValid()
}

// ExtractMetadata returns a copy of ctx set up to handle what follows from
// an event with metadata md (a consumer sending a command in reaction to it,
// say):
//   - its parent span is the span saved in md (the command that wrote the
//     event), so new spans continue that trace; a span already in ctx is
//     replaced as parent. Without saved trace context ctx's span is kept;
//   - its correlation id is md's "correlationId", or the event's
//     "messageId" when md has none (the event starts the conversation);
//   - its causation id is the event's "messageId" (the event causes what
//     follows), or md's "causationId" when md has no message id.
//
// Ids absent from md leave those of ctx unchanged.
func ExtractMetadata(ctx context.Context, md map[string]any) context.Context {
	c := metadataCarrier(md)
	ctx = traceContext.Extract(ctx, c)
	msg := c.Get(metaMessageID)
	corr := c.Get(metaCorrelationID)
	if corr == "" {
		corr = msg
	}
	ctx = WithCorrelationID(ctx, corr)
	caus := msg
	if caus == "" {
		caus = c.Get(metaCausationID)
	}
	return WithCausationID(ctx, caus)
}
