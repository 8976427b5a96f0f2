package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// OTLP exporters are set up only when the standard variables ask for them.
func TestObservabilityFromEnvironment(t *testing.T) {
	ctx := testCtx(t)
	var errOut syncBuffer
	o, err := setupObservability(ctx, env(nil), false, &errOut)
	require.NoError(t, err)
	require.Nil(t, o.tracerProvider)
	require.Nil(t, o.meterProvider)
	require.Contains(t, o.describe(), "not exported")
	require.NoError(t, o.close(ctx))

	o, err = setupObservability(ctx, env(nil), true, &errOut)
	require.NoError(t, err)
	require.NotNil(t, o.spans, "the demo records spans in memory")
	require.NotNil(t, o.tracerProvider)
	require.NoError(t, o.close(ctx))

	// The exporters read their settings from the process environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	o, err = setupObservability(ctx, os.Getenv, false, &errOut)
	require.NoError(t, err)
	require.NotNil(t, o.tracerProvider)
	require.NotNil(t, o.meterProvider)
	require.Equal(t, "traces and metrics exported over OTLP/gRPC", o.describe())
	require.Contains(t, errOut.String(), "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf: this example exports OTLP over gRPC only")
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = o.close(sctx) // nothing listens there: the final export fails, but close returns
	require.NoError(t, sctx.Err(), "close did not return in time")

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:1")
	o, err = setupObservability(ctx, os.Getenv, false, &errOut)
	require.NoError(t, err)
	require.Nil(t, o.tracerProvider)
	require.Equal(t, "metrics exported over OTLP/gRPC", o.describe())
	_ = o.close(sctx)
}
