package otelwire_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/oteltest"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/telemetry"
)

var (
	errConflict = errors.New("version conflict")
	errRejected = errors.New("rejected")
)

var cart42 = otelwire.Stream{Kind: "cart", Tenant: "acme", ID: "cart-42"}

// runCommand plays what the actor host does for one command that activates
// its stream, conflicts once, retries and succeeds; it returns the metadata
// of the events of each attempt.
func runCommand(t *testing.T, tel *otelwire.Telemetry, ctx context.Context) (attempts [][]map[string]any) {
	t.Helper()
	ctx = telemetry.WithCorrelationID(ctx, "corr-1")
	ctx = telemetry.WithCausationID(ctx, "cmd-1")
	ctx, cs := tel.StartCommand(ctx, cart42, "AddItem")

	actx, act := tel.StartActivation(ctx, cart42)
	require.True(t, trace.SpanContextFromContext(actx).IsValid())
	act.End(actx, otelwire.Activation{Replayed: 7, SnapshotUsed: true, SnapshotVersion: 5, Version: 12}, nil)

	for attempt := 0; ; attempt++ {
		md := []map[string]any{
			telemetry.InjectMetadata(ctx, nil),
			telemetry.InjectMetadata(ctx, map[string]any{"user": "u1"}),
		}
		attempts = append(attempts, md)
		actx, as := tel.StartAppend(ctx, otelwire.Append{Stream: cart42, Events: 2, ExpectedVersion: fmt.Sprint(12 + attempt)})
		if attempt == 0 {
			as.End(actx, otelwire.OutcomeConflict, 0, fmt.Errorf("appending: %w", errConflict))
			cs.Retry(ctx)
			continue
		}
		as.End(actx, otelwire.OutcomeOK, 15, nil)
		break
	}
	cs.End(ctx, otelwire.OutcomeOK, 2, nil)
	return attempts
}

func TestCommandSpanHasActivationAndAppendChildrenWithDocumentedAttributes(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runCommand(t, r.tel, context.Background())

	cmd := r.One(t, "cart.AddItem")
	act := r.One(t, "activate cart")
	var appends []string
	for _, s := range r.Spans.GetSpans() {
		if s.Name == "append cart" {
			appends = append(appends, s.SpanContext.SpanID().String())
			assert.Equal(t, cmd.SpanContext.SpanID(), s.Parent.SpanID(), "append is a child of the command")
			assert.Equal(t, cmd.SpanContext.TraceID(), s.SpanContext.TraceID())
		}
	}
	require.Len(t, appends, 2, "one append per attempt")
	assert.Equal(t, cmd.SpanContext.SpanID(), act.Parent.SpanID(), "activation is a child of the command")
	assert.False(t, cmd.Parent.IsValid(), "command span is a root here")

	a := oteltest.Attrs(cmd.Attributes)
	assert.Equal(t, "cart", a[otelwire.AttrKind].AsString())
	assert.Equal(t, "acme", a[otelwire.AttrTenant].AsString())
	assert.Equal(t, "cart-42", a[otelwire.AttrStreamID].AsString())
	assert.Equal(t, "AddItem", a[otelwire.AttrCommandType].AsString())
	assert.Equal(t, "ok", a[otelwire.AttrOutcome].AsString())
	assert.Equal(t, int64(1), a[otelwire.AttrRetries].AsInt64())
	assert.Equal(t, int64(2), a[otelwire.AttrEvents].AsInt64())
	assert.Equal(t, "corr-1", a[otelwire.AttrCorrelationID].AsString())
	assert.Equal(t, "cmd-1", a[otelwire.AttrCausationID].AsString())
	assert.Equal(t, codes.Unset, cmd.Status.Code)
	require.Len(t, cmd.Events, 1)
	assert.Equal(t, "retry", cmd.Events[0].Name)

	a = oteltest.Attrs(act.Attributes)
	assert.Equal(t, int64(7), a[otelwire.AttrEventsReplayed].AsInt64())
	assert.True(t, a[otelwire.AttrSnapshotUsed].AsBool())
	assert.Equal(t, int64(5), a[otelwire.AttrSnapshotVersion].AsInt64())
	assert.Equal(t, int64(12), a[otelwire.AttrVersion].AsInt64())
	assert.Equal(t, "cart-42", a[otelwire.AttrStreamID].AsString())

	var conflicted, succeeded int
	for _, s := range r.Spans.GetSpans() {
		if s.Name != "append cart" {
			continue
		}
		a := oteltest.Attrs(s.Attributes)
		assert.Equal(t, int64(2), a[otelwire.AttrEvents].AsInt64())
		assert.Equal(t, "cart-42", a[otelwire.AttrStreamID].AsString())
		switch a[otelwire.AttrOutcome].AsString() {
		case "conflict":
			conflicted++
			assert.Equal(t, codes.Error, s.Status.Code)
			assert.Equal(t, "12", a[otelwire.AttrExpectedVersion].AsString())
			_, hasVersion := a[otelwire.AttrVersion]
			assert.False(t, hasVersion)
		case "ok":
			succeeded++
			assert.Equal(t, int64(15), a[otelwire.AttrVersion].AsInt64())
			assert.Equal(t, "13", a[otelwire.AttrExpectedVersion].AsString())
		}
	}
	assert.Equal(t, 1, conflicted)
	assert.Equal(t, 1, succeeded)
}

func TestCommandMetrics(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runCommand(t, r.tel, context.Background())
	ctx := context.Background()
	_, cs := r.tel.StartCommand(ctx, cart42, "Checkout")
	cs.End(ctx, otelwire.OutcomeRejected, 0, errRejected)

	kind := otelwire.AttrKind.String("cart")
	n, sum := histCount[float64](t, r.metric(t, otelwire.MetricCommandDuration),
		setOf(kind, otelwire.AttrCommandType.String("AddItem"), otelwire.AttrOutcome.String("ok")))
	assert.Equal(t, uint64(1), n)
	assert.Greater(t, sum, 0.0)
	n, _ = histCount[float64](t, r.metric(t, otelwire.MetricCommandDuration),
		setOf(kind, otelwire.AttrCommandType.String("Checkout"), otelwire.AttrOutcome.String("rejected")))
	assert.Equal(t, uint64(1), n)

	hist := r.metric(t, otelwire.MetricCommandDuration).Data.(metricdata.Histogram[float64])
	assert.Equal(t, otelwire.DurationBuckets, hist.DataPoints[0].Bounds)
	assert.Equal(t, 0.0005, hist.DataPoints[0].Bounds[0], "first bucket is half a millisecond")
	assert.Equal(t, "s", r.metric(t, otelwire.MetricCommandDuration).Unit)

	assert.Equal(t, int64(1), sumPoint(t, r.metric(t, otelwire.MetricCommandConflicts), setOf(kind)))
	assert.Equal(t, int64(1), sumPoint(t, r.metric(t, otelwire.MetricCommandRetries), setOf(kind)))
	n, isum := histCount[int64](t, r.metric(t, otelwire.MetricAppendBatchSize), setOf(kind))
	assert.Equal(t, uint64(2), n)
	assert.Equal(t, int64(4), isum)
	n, _ = histCount[float64](t, r.metric(t, otelwire.MetricAppendDuration), setOf(kind, otelwire.AttrOutcome.String("conflict")))
	assert.Equal(t, uint64(1), n)
	n, _ = histCount[float64](t, r.metric(t, otelwire.MetricAppendDuration), setOf(kind, otelwire.AttrOutcome.String("ok")))
	assert.Equal(t, uint64(1), n)

	rejected := r.One(t, "cart.Checkout")
	assert.Equal(t, codes.Unset, rejected.Status.Code, "a rejection is not an error of the system")
	assert.Equal(t, "rejected", oteltest.Attrs(rejected.Attributes)[otelwire.AttrRejection].AsString())
}

func TestStreamIDsAndTenantsAreNeverMetricAttributes(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	runCommand(t, r.tel, context.Background())
	ctx := context.Background()
	r.tel.Passivated(ctx, "cart", otelwire.ReasonIdle)
	_, b := r.tel.StartProjectionBatch(ctx, otelwire.Batch{Name: "carts", Tenant: "acme", Size: 1})
	b.End(ctx, 1, nil)
	r.tel.DeadLettered(ctx, "carts", "CartCreated", errors.New("boom"))
	reg, err := r.tel.ObserveProjectionLag(func(_ context.Context, observe func(otelwire.ProjectionLag)) {
		observe(otelwire.ProjectionLag{Projection: "carts", Events: 3})
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, reg.Unregister()) })

	all := allMetricAttrs(t, r.Collect(t))
	require.NotEmpty(t, all)
	for _, kv := range all {
		assert.NotEqual(t, otelwire.AttrStreamID, kv.Key)
		assert.NotEqual(t, otelwire.AttrTenant, kv.Key)
		assert.NotEqual(t, "cart-42", kv.Value.Emit(), "stream id leaked under %s", kv.Key)
		assert.NotEqual(t, "acme", kv.Value.Emit(), "tenant leaked under %s", kv.Key)
	}
}

func TestActorMetricsCountActivationsPassivationsAndLiveActors(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	for i, snap := range []bool{false, true, false} {
		s := otelwire.Stream{Kind: "cart", Tenant: "acme", ID: fmt.Sprint("cart-", i)}
		actx, a := r.tel.StartActivation(ctx, s)
		a.End(actx, otelwire.Activation{Replayed: 10 * (i + 1), SnapshotUsed: snap}, nil)
	}
	_, failed := r.tel.StartActivation(ctx, cart42)
	failed.End(ctx, otelwire.Activation{}, errors.New("connection refused"))
	r.tel.Passivated(ctx, "cart", otelwire.ReasonIdle)

	kind := otelwire.AttrKind.String("cart")
	assert.Equal(t, int64(2), sumPoint(t, r.metric(t, otelwire.MetricActorsLive), setOf(kind)),
		"3 activated, 1 passivated; the failed activation is not live")
	assert.Equal(t, int64(3), sumPoint(t, r.metric(t, otelwire.MetricActorActivations), setOf(kind, otelwire.AttrOutcome.String("ok"))))
	assert.Equal(t, int64(1), sumPoint(t, r.metric(t, otelwire.MetricActorActivations), setOf(kind, otelwire.AttrOutcome.String("error"))))
	assert.Equal(t, int64(1), sumPoint(t, r.metric(t, otelwire.MetricActorPassivations), setOf(kind, otelwire.AttrReason.String("idle"))))
	n, sum := histCount[int64](t, r.metric(t, otelwire.MetricActorReplayedEvents), setOf(kind, otelwire.AttrSnapshotUsed.Bool(false)))
	assert.Equal(t, uint64(2), n)
	assert.Equal(t, int64(10+30), sum)
	n, sum = histCount[int64](t, r.metric(t, otelwire.MetricActorReplayedEvents), setOf(kind, otelwire.AttrSnapshotUsed.Bool(true)))
	assert.Equal(t, uint64(1), n)
	assert.Equal(t, int64(20), sum)

	for _, s := range r.Spans.GetSpans() {
		if oteltest.Attrs(s.Attributes)[otelwire.AttrStreamID].AsString() == "cart-42" {
			assert.Equal(t, codes.Error, s.Status.Code)
			assert.Equal(t, "error", oteltest.Attrs(s.Attributes)[otelwire.AttrOutcome].AsString())
		}
	}
}

func TestTraceContextInEventMetadataSurvivesRetryAndStorage(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	attempts := runCommand(t, r.tel, context.Background())
	cmd := r.One(t, "cart.AddItem")

	require.Len(t, attempts, 2)
	for _, events := range attempts {
		for _, md := range events {
			// What the store persists is JSON; a restarted process reads it back.
			raw, err := json.Marshal(md)
			require.NoError(t, err)
			var stored map[string]any
			require.NoError(t, json.Unmarshal(raw, &stored))

			sc, ok := telemetry.SpanContextFromMetadata(stored)
			require.True(t, ok)
			assert.Equal(t, cmd.SpanContext.TraceID(), sc.TraceID())
			assert.Equal(t, cmd.SpanContext.SpanID(), sc.SpanID(), "events point at the command span, also after a retry")
			assert.True(t, sc.IsRemote())
			assert.True(t, sc.IsSampled())
			assert.Equal(t, "corr-1", stored["correlationId"])
			assert.Equal(t, "cmd-1", stored["causationId"])
		}
	}
	assert.Equal(t, "u1", attempts[1][1]["user"], "caller metadata is kept")
}

func TestNilTelemetryAndHandlesAreNoOps(t *testing.T) {
	t.Parallel()
	var tel *otelwire.Telemetry
	ctx := context.Background()
	cctx, cs := tel.StartCommand(ctx, cart42, "AddItem")
	assert.Equal(t, ctx, cctx)
	cs.Retry(ctx)
	cs.End(ctx, otelwire.OutcomeOK, 1, nil)
	_, as := tel.StartAppend(ctx, otelwire.Append{Stream: cart42, Events: 1})
	as.End(ctx, otelwire.OutcomeOK, 1, nil)
	_, ac := tel.StartActivation(ctx, cart42)
	ac.End(ctx, otelwire.Activation{}, nil)
	tel.Passivated(ctx, "cart", otelwire.ReasonIdle)
	_, b := tel.StartProjectionBatch(ctx, otelwire.Batch{Name: "carts", Size: 1})
	b.End(ctx, 1, nil)
	tel.DeadLettered(ctx, "carts", "X", nil)
	reg, err := tel.ObserveProjectionLag(func(context.Context, func(otelwire.ProjectionLag)) {})
	require.NoError(t, err)
	require.NoError(t, reg.Unregister())
	assert.NotNil(t, tel.Tracer())
	h := tel.InjectHeaders(ctx, nil)
	assert.NotNil(t, h)
	assert.Equal(t, ctx, tel.ExtractHeaders(ctx, h))
}

func TestDefaultsUseTheGlobalNoopProviders(t *testing.T) {
	t.Parallel()
	tel, err := otelwire.New(nil)
	require.NoError(t, err)
	ctx, cs := tel.StartCommand(context.Background(), cart42, "AddItem")
	assert.False(t, trace.SpanFromContext(ctx).IsRecording())
	assert.Nil(t, telemetry.InjectMetadata(ctx, nil), "no span context, no ids: nothing to save")
	cs.End(ctx, otelwire.OutcomeOK, 1, nil)
}

func TestEndIsIdempotent(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	_, cs := r.tel.StartCommand(ctx, cart42, "AddItem")
	cs.End(ctx, otelwire.OutcomeOK, 1, nil)
	cs.End(ctx, otelwire.OutcomeError, 1, errors.New("late"))
	cs.Retry(ctx)
	n, _ := histCount[float64](t, r.metric(t, otelwire.MetricCommandDuration),
		setOf(otelwire.AttrKind.String("cart"), otelwire.AttrCommandType.String("AddItem"), otelwire.AttrOutcome.String("ok")))
	assert.Equal(t, uint64(1), n)
	assert.Equal(t, "ok", oteltest.Attrs(r.One(t, "cart.AddItem").Attributes)[otelwire.AttrOutcome].AsString())
}

func TestCommandSpanNameFallsBackWithoutCommandType(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	_, cs := r.tel.StartCommand(ctx, cart42, "")
	cs.End(ctx, otelwire.OutcomeOK, 0, nil)
	r.One(t, "troupe.command")
}

func TestAppendLinksBatchedCommands(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx := context.Background()
	ctx1, c1 := r.tel.StartCommand(ctx, cart42, "AddItem")
	ctx2, c2 := r.tel.StartCommand(ctx, cart42, "RemoveItem")
	actx, as := r.tel.StartAppend(ctx1, otelwire.Append{Stream: cart42, Events: 2,
		Links: []trace.SpanContext{trace.SpanContextFromContext(ctx2)}})
	as.End(actx, otelwire.OutcomeOK, 2, nil)
	c1.End(ctx1, otelwire.OutcomeOK, 1, nil)
	c2.End(ctx2, otelwire.OutcomeOK, 1, nil)

	app := r.One(t, "append cart")
	assert.Equal(t, r.One(t, "cart.AddItem").SpanContext.SpanID(), app.Parent.SpanID())
	require.Len(t, app.Links, 1)
	assert.Equal(t, r.One(t, "cart.RemoveItem").SpanContext.SpanID(), app.Links[0].SpanContext.SpanID())
}

func TestOutcomeFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want otelwire.Outcome
	}{
		{nil, otelwire.OutcomeOK},
		{fmt.Errorf("append: %w", errConflict), otelwire.OutcomeConflict},
		{fmt.Errorf("decide: %w", errRejected), otelwire.OutcomeRejected},
		{fmt.Errorf("wait: %w", context.Canceled), otelwire.OutcomeCanceled},
		{context.DeadlineExceeded, otelwire.OutcomeCanceled},
		{errors.New("disk on fire"), otelwire.OutcomeError},
	} {
		assert.Equal(t, tc.want, otelwire.OutcomeFor(tc.err, errConflict, errRejected), "%v", tc.err)
	}
	assert.Equal(t, otelwire.OutcomeError, otelwire.OutcomeFor(errConflict, nil, nil), "nil sentinels match nothing")
}

func TestCommandSpanIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ctx, cs := r.tel.StartCommand(context.Background(), cart42, "AddItem")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); cs.Retry(ctx) }()
		go func() { defer wg.Done(); cs.End(ctx, otelwire.OutcomeCanceled, 0, context.Canceled) }()
	}
	wg.Wait()
	n, _ := histCount[float64](t, r.metric(t, otelwire.MetricCommandDuration),
		setOf(otelwire.AttrKind.String("cart"), otelwire.AttrCommandType.String("AddItem"), otelwire.AttrOutcome.String("canceled")))
	assert.Equal(t, uint64(1), n, "only the first End counts")
	assert.Equal(t, codes.Error, r.One(t, "cart.AddItem").Status.Code)
}
