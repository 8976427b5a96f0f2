// Package otelwire records Troupe's spans and metrics: the command,
// activation and append spans of the actor host, the batch spans of the
// projections, and their instruments. It is the wiring behind the public
// telemetry package: actor and projection build a [Telemetry] from the
// providers in their configs.
//
// It uses the OpenTelemetry API only. Nil providers fall back to the
// OpenTelemetry globals. With no-op providers every helper skips attribute
// work (spans are not recording, instruments are not enabled).
//
// docs/telemetry.md lists every span, attribute and metric (a test checks
// it names every Attr* and Metric* constant of this package).
//
// # Guarantees
//
//   - Stream ids ([AttrStreamID]) and tenants ([AttrTenant]) are span
//     attributes only, never metric attributes; metric attributes are the
//     aggregate kind, command type, projection name, event type, outcome
//     and passivation reason, all from bounded sets.
//   - Every method is safe for concurrent use, and safe on a nil
//     *Telemetry and nil span handles, where it records nothing.
//
// # Failures
//
// [New] fails only when the meter provider refuses an instrument. Nothing
// else returns an error: telemetry never makes the operation it observes
// fail.
package otelwire
