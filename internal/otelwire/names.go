package otelwire

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/troupehq/troupe/telemetry"
)

// Attribute keys set on Troupe's spans and metrics. docs/telemetry.md says
// which span or instrument carries which key.
const (
	// AttrKind is the aggregate kind (stream type), e.g. "cart".
	AttrKind = attribute.Key("troupe.kind")
	// AttrTenant is the tenant (partition) of a stream or a batch. Spans
	// only.
	AttrTenant = attribute.Key("troupe.tenant")
	// AttrStreamID is the stream id. Spans only: never a metric attribute.
	AttrStreamID = attribute.Key("troupe.stream_id")
	// AttrCommandType is the command's type name.
	AttrCommandType = attribute.Key("troupe.command.type")
	// AttrOutcome is how an operation ended: one of the Outcome values.
	AttrOutcome = attribute.Key("troupe.outcome")
	// AttrRetries is the number of times a command was decided again after
	// a version conflict.
	AttrRetries = attribute.Key("troupe.command.retries")
	// AttrRejection is the message of a domain rule a command broke.
	AttrRejection = attribute.Key("troupe.command.rejection")
	// AttrEvents is the number of events a command produced, an append
	// wrote or a batch held.
	AttrEvents = attribute.Key("troupe.events")
	// AttrExpectedVersion is the expected version an append checked.
	AttrExpectedVersion = attribute.Key("troupe.expected_version")
	// AttrVersion is the stream version after an append or activation.
	AttrVersion = attribute.Key("troupe.version")
	// AttrEventsReplayed is the number of events replayed by an activation.
	AttrEventsReplayed = attribute.Key("troupe.events_replayed")
	// AttrSnapshotUsed reports whether an activation started from a
	// snapshot.
	AttrSnapshotUsed = attribute.Key("troupe.snapshot_used")
	// AttrSnapshotVersion is the version of the snapshot an activation used.
	AttrSnapshotVersion = attribute.Key("troupe.snapshot_version")
	// AttrReason is why a stream actor was passivated.
	AttrReason = attribute.Key("troupe.reason")
	// AttrProjection is the name of a projection or consumer.
	AttrProjection = attribute.Key("troupe.projection")
	// AttrEventType is an event's type name.
	AttrEventType = attribute.Key("troupe.event_type")
	// AttrFirstPosition and AttrLastPosition are the global positions of the
	// first and last event of a batch.
	AttrFirstPosition = attribute.Key("troupe.global_position.first")
	AttrLastPosition  = attribute.Key("troupe.global_position.last")
	// AttrLinkedCommands is the number of distinct command spans a batch
	// applied events of.
	AttrLinkedCommands = attribute.Key("troupe.batch.commands")
	// AttrProcessed is the number of events a batch applied.
	AttrProcessed = attribute.Key("troupe.batch.processed")
	// AttrCorrelationID and AttrCausationID are the ids carried in the
	// context (see WithCorrelationID, WithCausationID).
	AttrCorrelationID = attribute.Key("troupe.correlation_id")
	AttrCausationID   = attribute.Key("troupe.causation_id")
)

// Metric instrument names. docs/telemetry.md lists their units and
// attributes.
const (
	MetricCommandDuration         = "troupe.command.duration"
	MetricCommandConflicts        = "troupe.command.conflicts"
	MetricCommandRetries          = "troupe.command.retries"
	MetricAppendDuration          = "troupe.append.duration"
	MetricAppendBatchSize         = "troupe.append.batch_size"
	MetricActorsLive              = "troupe.actor.live"
	MetricActorActivations        = "troupe.actor.activations"
	MetricActorPassivations       = "troupe.actor.passivations"
	MetricActorReplayedEvents     = "troupe.actor.replayed_events"
	MetricProjectionBatchDuration = "troupe.projection.batch.duration"
	MetricProjectionEvents        = "troupe.projection.events"
	MetricProjectionDeadLettered  = "troupe.projection.dead_lettered"
	MetricProjectionLagEvents     = "troupe.projection.lag.events"
	MetricProjectionLagTime       = "troupe.projection.lag.time"
)

// Outcome is how a command, append, activation or batch ended. It is the
// value of [AttrOutcome]; the set is closed so metrics stay low-cardinality.
type Outcome string

// Outcomes.
const (
	// OutcomeOK: the operation succeeded.
	OutcomeOK Outcome = "ok"
	// OutcomeRejected: the command broke a domain rule (decide returned a
	// rejection). Nothing was written; the span is not marked as an error.
	OutcomeRejected Outcome = "rejected"
	// OutcomeConflict: an append failed its expected-version check (for a
	// command: retries were exhausted).
	OutcomeConflict Outcome = "conflict"
	// OutcomeCanceled: the context was canceled or its deadline passed.
	OutcomeCanceled Outcome = "canceled"
	// OutcomeError: any other failure.
	OutcomeError Outcome = "error"
)

// OutcomeFor classifies err: nil is OutcomeOK; an error matching conflict
// (e.g. store.ErrVersionConflict) is OutcomeConflict; one matching rejected
// (e.g. decider.ErrRejected) is OutcomeRejected; context cancellation is
// OutcomeCanceled; anything else is OutcomeError. A nil sentinel matches
// nothing.
func OutcomeFor(err, conflict, rejected error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case conflict != nil && errors.Is(err, conflict):
		return OutcomeConflict
	case rejected != nil && errors.Is(err, rejected):
		return OutcomeRejected
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return OutcomeCanceled
	default:
		return OutcomeError
	}
}

// Passivation reasons (values of [AttrReason]).
const (
	ReasonIdle    = "idle"    // idle for longer than the host's timeout
	ReasonEvicted = "evicted" // dropped from the LRU of live actors
	ReasonStopped = "stopped" // the host was stopped
	ReasonFailed  = "failed"  // stopped after an ambiguous failure, reloads on next use
)

var nooptracer = noop.NewTracerProvider().Tracer(telemetry.ScopeName)
