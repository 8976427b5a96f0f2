package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/telemetry"
)

func spanContext(t *testing.T, state string) trace.SpanContext {
	t.Helper()
	tid, err := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	require.NoError(t, err)
	sid, err := trace.SpanIDFromHex("00f067aa0ba902b7")
	require.NoError(t, err)
	ts, err := trace.ParseTraceState(state)
	require.NoError(t, err)
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts})
}

func TestInjectMetadataWritesW3CTraceContextAndIds(t *testing.T) {
	t.Parallel()
	ctx := trace.ContextWithSpanContext(context.Background(), spanContext(t, "vendor=abc"))
	ctx = telemetry.WithCorrelationID(ctx, "corr")
	ctx = telemetry.WithCausationID(ctx, "cause")

	md := telemetry.InjectMetadata(ctx, nil)
	assert.Equal(t, map[string]any{
		"traceparent":   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":    "vendor=abc",
		"correlationId": "corr",
		"causationId":   "cause",
	}, md)

	// caller-supplied ids win; a stale tracestate goes; other keys stay
	ctx2 := trace.ContextWithSpanContext(telemetry.WithCorrelationID(context.Background(), "corr"), spanContext(t, ""))
	md = telemetry.InjectMetadata(ctx2, map[string]any{
		"correlationId": "mine", "tracestate": "old=1", "causationId": "", "x": 1.0,
	})
	assert.Equal(t, map[string]any{
		"traceparent":   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"correlationId": "mine",
		"causationId":   "",
		"x":             1.0,
	}, md)

	// ids alone, no span
	md = telemetry.InjectMetadata(telemetry.WithCausationID(context.Background(), "c"), nil)
	assert.Equal(t, map[string]any{"causationId": "c"}, md)

	// nothing to write: the map is returned untouched
	kept := map[string]any{"traceparent": "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"}
	assert.Equal(t, kept, telemetry.InjectMetadata(context.Background(), kept))
}

func TestSpanContextFromMetadata(t *testing.T) {
	t.Parallel()
	want := spanContext(t, "vendor=abc")
	md := telemetry.InjectMetadata(trace.ContextWithSpanContext(context.Background(), want), nil)
	raw, err := json.Marshal(md)
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(raw, &back))

	sc, ok := telemetry.SpanContextFromMetadata(back)
	require.True(t, ok)
	assert.True(t, sc.Equal(want.WithRemote(true)))
	assert.Equal(t, "vendor=abc", sc.TraceState().String())

	for name, md := range map[string]map[string]any{
		"nil":         nil,
		"missing":     {"correlationId": "x"},
		"not string":  {"traceparent": 42.0},
		"malformed":   {"traceparent": "00-zz-yy-01"},
		"zero ids":    {"traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
		"bad version": {"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	} {
		_, ok := telemetry.SpanContextFromMetadata(md)
		assert.False(t, ok, name)
	}
}

func TestExtractMetadataContinuesTheEventsTraceAndConversation(t *testing.T) {
	t.Parallel()
	sc := spanContext(t, "")
	md := telemetry.InjectMetadata(trace.ContextWithSpanContext(context.Background(), sc), nil)
	md["messageId"] = "evt-1"
	md["correlationId"] = "corr"
	md["causationId"] = "cmd-1"

	ctx := telemetry.ExtractMetadata(context.Background(), md)
	got := trace.SpanContextFromContext(ctx)
	assert.Equal(t, sc.TraceID(), got.TraceID())
	assert.Equal(t, sc.SpanID(), got.SpanID())
	assert.True(t, got.IsRemote())
	assert.Equal(t, "corr", telemetry.CorrelationID(ctx))
	assert.Equal(t, "evt-1", telemetry.CausationID(ctx), "the event causes what follows")

	// an event without a correlation id starts the conversation
	ctx = telemetry.ExtractMetadata(context.Background(), map[string]any{"messageId": "evt-2"})
	assert.Equal(t, "evt-2", telemetry.CorrelationID(ctx))
	assert.Equal(t, "evt-2", telemetry.CausationID(ctx))
	assert.False(t, trace.SpanContextFromContext(ctx).IsValid())

	// without ids in md, those of ctx stay
	base := telemetry.WithCausationID(telemetry.WithCorrelationID(context.Background(), "c0"), "k0")
	ctx = telemetry.ExtractMetadata(base, nil)
	assert.Equal(t, "c0", telemetry.CorrelationID(ctx))
	assert.Equal(t, "k0", telemetry.CausationID(ctx))

	// no message id: the stored causation id is kept
	ctx = telemetry.ExtractMetadata(context.Background(), map[string]any{"causationId": "k1"})
	assert.Equal(t, "k1", telemetry.CausationID(ctx))
}

func TestCorrelationHelpers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	assert.Empty(t, telemetry.CorrelationID(ctx))
	assert.Empty(t, telemetry.CausationID(ctx))
	assert.Equal(t, ctx, telemetry.WithCorrelationID(ctx, ""))
	assert.Equal(t, ctx, telemetry.WithCausationID(ctx, ""))
	ctx = telemetry.WithCausationID(telemetry.WithCorrelationID(ctx, "a"), "b")
	assert.Equal(t, "a", telemetry.CorrelationID(ctx))
	assert.Equal(t, "b", telemetry.CausationID(ctx))
}

func TestLogHandlerAddsTraceAndSpanIds(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	read := func() map[string]any {
		t.Helper()
		var rec map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
		buf.Reset()
		return rec
	}

	sc := spanContext(t, "")
	ctx := telemetry.WithCorrelationID(trace.ContextWithSpanContext(context.Background(), sc), "corr")
	log.InfoContext(ctx, "command_handled", "stream_id", "cart-1")
	rec := read()
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", rec["trace_id"])
	assert.Equal(t, "00f067aa0ba902b7", rec["span_id"])
	assert.Equal(t, "corr", rec["correlation_id"])
	assert.Equal(t, "cart-1", rec["stream_id"])
	assert.Equal(t, "test", rec["component"])

	log.InfoContext(context.Background(), "no_span")
	rec = read()
	assert.NotContains(t, rec, "trace_id")
	assert.NotContains(t, rec, "span_id")
	assert.NotContains(t, rec, "correlation_id")

	grouped := log.WithGroup("g")
	grouped.InfoContext(ctx, "in_group", "k", "v")
	rec = read()
	g, ok := rec["g"].(map[string]any)
	require.True(t, ok)
	assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", g["trace_id"])

	// the level filter of the wrapped handler applies
	quiet := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	quiet.InfoContext(ctx, "dropped")
	assert.Zero(t, buf.Len())
	assert.False(t, quiet.Handler().Enabled(ctx, slog.LevelInfo))

	// wrapping twice adds the ids once
	twice := telemetry.NewLogHandler(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil)))
	slog.New(twice).InfoContext(ctx, "once")
	assert.Equal(t, 1, bytes.Count(buf.Bytes(), []byte(`"trace_id"`)))
}
