// Package telemetry is what an application configures or calls to follow
// Troupe's OpenTelemetry traces: the instrumentation scope, a slog handler
// that puts trace ids in logs, the correlation and causation ids carried in
// a context, and the trace context saved in event metadata.
//
// The spans and metrics themselves are recorded by the actor host and the
// projections, with the providers given in their configs (actor.Config,
// projection.Config, …: TracerProvider and MeterProvider, defaulting to the
// OpenTelemetry globals, which record nothing until the application
// installs an SDK). docs/telemetry.md lists every span, attribute and
// metric, and how to trace pgx with github.com/exaring/otelpgx.
//
// # Trace context in event metadata
//
// The actor host calls [InjectMetadata] with the command span's context for
// every event a command writes: the W3C trace context ("traceparent",
// "tracestate") and the correlation and causation ids are saved in the
// event, so they outlive conflict retries, passivation and process
// restarts. A projection's batch span is a child of (or links to) the
// command spans found there with [SpanContextFromMetadata];
// [ExtractMetadata] continues an event's trace and conversation from a
// consumer of your own.
//
// # Guarantees
//
//   - Event metadata always uses W3C Trace Context, whatever propagator the
//     process configures, because other processes read it later.
//   - Every function is safe for concurrent use.
//   - Nothing here returns an error: malformed trace context in metadata is
//     ignored (no parent, no link).
package telemetry

// ScopeName is the instrumentation scope of every tracer and meter Troupe
// creates.
const ScopeName = "github.com/troupehq/troupe"
