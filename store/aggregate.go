package store

import (
	"context"
	"fmt"
)

// AggregateOptions configure AggregateStream.
type AggregateOptions struct {
	// Partition the stream lives in. Defaults to DefaultPartition.
	Partition string
	// ExpectedVersion, when set, is checked against the stream read: a
	// mismatch returns the same *VersionConflictError an append would.
	ExpectedVersion ExpectedVersion
	// From starts the fold after a known state (for example a snapshot
	// taken at version From-1). 0 folds from the start.
	From Version
	// PageSize is how many events are read per round trip. Defaults to
	// 1000.
	PageSize int
}

// Aggregated is the outcome of AggregateStream.
type Aggregated[S any] struct {
	State          S
	CurrentVersion Version
	StreamExists   bool
}

// AggregateStream folds evolve over a stream's events, decoded with codec,
// starting from initial. Events are read in pages so memory stays bounded
// for long streams. Decoded values must be of type E; anything else is an
// error naming the event.
func AggregateStream[S, E any](ctx context.Context, es EventStore, codec Codec, stream StreamID,
	initial S, evolve func(S, E) S, opts AggregateOptions) (Aggregated[S], error) {
	page := opts.PageSize
	if page <= 0 {
		page = 1000
	}
	from := opts.From
	if from < 1 {
		from = 1
	}
	out := Aggregated[S]{State: initial}
	for {
		res, err := es.ReadStream(ctx, stream, ReadOptions{Partition: opts.Partition, From: from, MaxCount: page})
		if err != nil {
			return out, fmt.Errorf("aggregate stream %q: %w", stream, err)
		}
		out.StreamExists = res.StreamExists
		out.CurrentVersion = res.CurrentVersion
		for _, ev := range res.Events {
			v, err := Decode(codec, ev)
			if err != nil {
				return out, err
			}
			e, ok := v.(E)
			if !ok {
				return out, fmt.Errorf("aggregate stream %q: event %s decoded to %T, which is not the aggregate's event type", stream, ev, v)
			}
			out.State = evolve(out.State, e)
			from = ev.StreamPosition + 1
		}
		if len(res.Events) < page || from > res.CurrentVersion {
			break
		}
	}
	if !opts.ExpectedVersion.Allows(out.StreamExists, out.CurrentVersion) {
		return out, &VersionConflictError{Stream: stream, Partition: Partition(opts.Partition),
			Expected: opts.ExpectedVersion, Actual: out.CurrentVersion, ActualExists: out.StreamExists}
	}
	return out, nil
}
