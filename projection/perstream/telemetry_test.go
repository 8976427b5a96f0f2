package perstream_test

import (
	"testing"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/perstream"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The per-stream runner traces each batch it projects.
func TestRunnerBatchSpan(t *testing.T) {
	t.Parallel()
	r := projtest.NewTelRig(t)
	pool, es := projtest.NewDB(t)
	projtest.CreateAppliedTable(t, pool)
	ctx := projtest.Ctx(t)
	cmd, md := r.Command("command")
	projtest.AppendCart(t, es, "tenant-1", "c1", projtest.WithMeta(md, projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))...)
	run, err := perstream.New(pool, &perstream.Config{Store: es, TracerProvider: r.TP, MeterProvider: r.MP,
		Registry: projection.Registry{projtest.TypeOpened: {projtest.CountHandler("r")}}})
	require.NoError(t, err)
	res, err := run.ProjectEvents(ctx, "per-stream", "c1", perstream.ProjectOptions{Partition: "tenant-1"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Processed)
	_, err = run.ProjectEvents(ctx, "per-stream", "c1", perstream.ProjectOptions{Partition: "tenant-1"})
	require.NoError(t, err)

	spans := r.Named("projection per-stream")
	require.Len(t, spans, 1, "a call with nothing to project has no span")
	assert.Equal(t, cmd.SpanID(), spans[0].Parent.SpanID())
	a := oteltest.Attrs(spans[0].Attributes)
	assert.Equal(t, "tenant-1", a[otelwire.AttrTenant].AsString())
	assert.Equal(t, int64(1), a[otelwire.AttrProcessed].AsInt64())
	assert.Equal(t, int64(1), oteltest.SumInt(t, r.Metrics(t)[otelwire.MetricProjectionEvents], otelwire.AttrProjection.String("per-stream")))
}
