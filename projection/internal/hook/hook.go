// Package hook lets projection's sub-packages reach into a
// *projection.Projection without widening its public API.
package hook

// MarkConsumer marks a *projection.Projection (passed as p) as the engine
// of a consumer: its batch spans are named "consumer <name>". Package
// projection sets it in its init, which runs before any importer's code.
var MarkConsumer func(p any)
