// Package telemetry is Troupe's OpenTelemetry instrumentation: one trace
// from a command to the read-model write, the metrics of the actor host and
// the projections, trace ids in logs and client spans for pgx.
//
// It uses the OpenTelemetry API only. Providers are passed in [Config]; nil
// ones fall back to the OpenTelemetry globals, which record nothing until
// the application installs an SDK. With no-op providers every helper skips
// attribute work (spans are not recording, instruments are not enabled).
//
// # The trace of a command
//
// The actor host calls [Telemetry.StartCommand] where a command is sent,
// [Telemetry.StartActivation] when a stream actor loads its state, and
// [Telemetry.StartAppend] around the append; the pgx spans of
// [PgxTracer] hang off the append. [InjectMetadata], called with the
// command span's context, saves the W3C trace context ("traceparent",
// "tracestate") and the correlation and causation ids in each event's
// metadata, so they outlive conflict retries, passivation and process
// restarts. A projection calls [Telemetry.StartProjectionBatch] with the
// batch's metadata: the batch span is a child of the command span when all
// its events come from one command, and links to every distinct command
// span otherwise. [ExtractMetadata] continues an event's trace and
// conversation from a consumer.
//
// docs/telemetry.md lists every span, attribute and metric.
//
// # Guarantees
//
//   - Stream ids ([AttrStreamID]) and tenants ([AttrTenant]) are span
//     attributes only, never metric attributes; metric attributes are the
//     aggregate kind, command type, projection name, event type, outcome
//     and passivation reason, all from bounded sets.
//   - Event metadata always uses W3C Trace Context, whatever propagator the
//     process configures, because other processes read it later.
//   - Every method is safe for concurrent use, and safe on a nil
//     *Telemetry and nil span handles, where it records nothing.
//
// # Failures
//
// [New] fails only when the meter provider refuses an instrument. Nothing
// else returns an error: telemetry never makes the operation it observes
// fail. Malformed trace context in metadata is ignored (no parent, no link).
package telemetry
