package actor

import (
	"reflect"

	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
)

// traced is a message that carries the span context of the command that
// sent it; an activation started by it becomes a child of that span.
type traced interface {
	spanContext() trace.SpanContext
}

func (m *commandMsg[C, E, S]) spanContext() trace.SpanContext { return m.sc }

// streamOf names a stream for telemetry.
func streamOf(k key) otelwire.Stream {
	return otelwire.Stream{Kind: k.kind, Tenant: k.tenant, ID: string(k.stream)}
}

// commandTypeName is the default Kind.CommandName: the Go type name of
// the command's dynamic type (without package or pointer).
func commandTypeName(cmd any) string {
	t := reflect.TypeOf(cmd)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return ""
	}
	return t.Name()
}

// outcome classifies a command's or append's error for telemetry.
func outcomeOf(err error) otelwire.Outcome {
	return otelwire.OutcomeFor(err, store.ErrVersionConflict, decider.ErrRejected)
}
