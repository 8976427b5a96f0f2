package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by the handler of NewLogHandler.
const (
	LogTraceID       = "trace_id"
	LogSpanID        = "span_id"
	LogCorrelationID = "correlation_id"
)

// NewLogHandler wraps h so that every record logged with a context carrying
// a valid span context gets "trace_id" and "span_id" (lower-case hex), and
// one carrying a correlation id gets "correlation_id". Records without them
// pass through unchanged. Like any attribute added in Handle, they land
// inside groups opened with WithGroup.
func NewLogHandler(h slog.Handler) slog.Handler {
	if lh, ok := h.(*logHandler); ok {
		return lh
	}
	return &logHandler{next: h}
}

type logHandler struct{ next slog.Handler }

func (l *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.next.Enabled(ctx, level)
}

func (l *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return l.next.Handle(ctx, r)
	}
	sc := trace.SpanContextFromContext(ctx)
	corr := CorrelationID(ctx)
	if !sc.IsValid() && corr == "" {
		return l.next.Handle(ctx, r)
	}
	r = r.Clone()
	if sc.IsValid() {
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()))
	}
	if corr != "" {
		r.AddAttrs(slog.String(LogCorrelationID, corr))
	}
	return l.next.Handle(ctx, r)
}

func (l *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{next: l.next.WithAttrs(attrs)}
}

func (l *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{next: l.next.WithGroup(name)}
}
