package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// shownAttributes are the span attributes the trace tree prints.
var shownAttributes = []attribute.Key{"http.response.status_code", "troupe.tenant", "troupe.stream_id",
	"troupe.outcome", "troupe.events", "troupe.version", "troupe.expected_version", "troupe.global_position.last",
	"pgx.rows_affected", "db.operation.batch.size"}

// renderTrace prints the spans of trace id as an indented tree, children in
// start order, each with its duration and a few attributes.
func renderTrace(w io.Writer, spans tracetest.SpanStubs, id trace.TraceID) {
	var mine []tracetest.SpanStub
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			mine = append(mine, s)
			ids[s.SpanContext.SpanID()] = true
		}
	}
	slices.SortStableFunc(mine, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	children := map[trace.SpanID][]tracetest.SpanStub{}
	var roots []tracetest.SpanStub
	for _, s := range mine {
		if p := s.Parent.SpanID(); s.Parent.IsValid() && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var walk func(s tracetest.SpanStub, prefix, branch string)
	walk = func(s tracetest.SpanStub, prefix, branch string) {
		fmt.Fprintf(w, "%s%s%s\n", prefix, branch, describeSpan(s))
		kids := children[s.SpanContext.SpanID()]
		next := prefix
		switch branch {
		case "├── ":
			next += "│   "
		case "└── ":
			next += "    "
		}
		for i, k := range kids {
			b := "├── "
			if i == len(kids)-1 {
				b = "└── "
			}
			walk(k, next, b)
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
}

func describeSpan(s tracetest.SpanStub) string {
	var b strings.Builder
	b.WriteString(s.Name)
	if s.SpanKind != trace.SpanKindInternal && s.SpanKind != trace.SpanKindUnspecified {
		fmt.Fprintf(&b, " [%s]", s.SpanKind)
	}
	d := s.EndTime.Sub(s.StartTime)
	fmt.Fprintf(&b, "  %s", d.Round(10*time.Microsecond))
	for _, k := range shownAttributes {
		for _, kv := range s.Attributes {
			if kv.Key == k {
				fmt.Fprintf(&b, "  %s=%s", strings.TrimPrefix(string(k), "troupe."), kv.Value.Emit())
			}
		}
	}
	if n := len(s.Links); n > 0 {
		fmt.Fprintf(&b, "  (links to %d other command spans)", n)
	}
	return b.String()
}
