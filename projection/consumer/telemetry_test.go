package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/consumer"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/retry"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// Consumers name their spans "consumer <name>"; an event dead-lettered
// after its handler failed is counted by projection and event type and
// noted on a batch span of its own.
func TestConsumerSpansAndDeadLetters(t *testing.T) {
	t.Parallel()
	r := projtest.NewTelRig(t)
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	c, err := consumer.New(pool, &consumer.Config{Name: "mailer", Store: es, TracerProvider: r.TP, MeterProvider: r.MP, Logger: projtest.QuietLogger,
		OnFailure: projection.FailSkip, Retry: retry.Policy{MaxAttempts: 1, InitialDelay: time.Millisecond}})
	require.NoError(t, err)
	c.Subscribe(projtest.TypeAdded, func(context.Context, pgx.Tx, store.Event) error { return errors.New("smtp down") })
	cmd, md := r.Command("command")
	last := projtest.AppendCart(t, es, "tenant-1", "c1", projtest.WithMeta(md, projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))...)
	require.NoError(t, c.Start(ctx))
	require.NoError(t, c.WaitFor(ctx, last.LastPosition()))
	projtest.Stop(t, c)

	spans := r.Named("consumer mailer")
	require.NotEmpty(t, spans)
	var deadLettered int
	for _, s := range spans {
		assert.Equal(t, cmd.TraceID(), s.SpanContext.TraceID(), "every batch continues the command's trace")
		for _, ev := range s.Events {
			if ev.Name == "dead_lettered" {
				deadLettered++
				assert.Contains(t, ev.Attributes, otelwire.AttrEventType.String(projtest.TypeAdded))
			}
		}
	}
	assert.Equal(t, 1, deadLettered)
	assert.Empty(t, r.Named("projection mailer"))

	m := r.Metrics(t)
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricProjectionDeadLettered],
		otelwire.AttrProjection.String("mailer"), otelwire.AttrEventType.String(projtest.TypeAdded)))
	assert.Equal(t, int64(1), oteltest.SumInt(t, m[otelwire.MetricProjectionEvents], otelwire.AttrProjection.String("mailer")),
		"the opening was applied, the failing event was not")
	projtest.RequireBoundedAttributes(t, m)
}
