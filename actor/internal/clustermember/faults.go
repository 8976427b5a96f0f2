package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store"
)

// faultStore (flag -faults) makes appends to streams named
// "fault-<kind>-..." fail the way PostgreSQL can, without writing:
//
//	fault-unknown-...   an error that leaves the outcome unknown (actor.ErrOutcomeUnknown)
//	fault-conflict-...  a *store.VersionConflictError on every attempt
//	fault-dropped-...   store.ErrTenantDropped
//	fault-invalid-...   store.ErrInvalidArgument
//	fault-stopping-...  actor.ErrStopped, as from an owner that is leaving
//
// It hides the store's batch appends, so every append goes through
// AppendToStream.
type faultStore struct {
	store.EventStore
}

func (f faultStore) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	s := string(stream)
	switch {
	case strings.HasPrefix(s, "fault-unknown-"):
		return store.AppendResult{}, errors.New("injected: connection lost during commit")
	case strings.HasPrefix(s, "fault-conflict-"):
		return store.AppendResult{}, &store.VersionConflictError{Stream: stream, Partition: store.Partition(opts.Partition),
			Expected: opts.ExpectedVersion, Actual: 99, ActualExists: true}
	case strings.HasPrefix(s, "fault-dropped-"):
		return store.AppendResult{}, fmt.Errorf("injected: %w", store.ErrTenantDropped)
	case strings.HasPrefix(s, "fault-stopping-"):
		return store.AppendResult{}, fmt.Errorf("injected: %w", actor.ErrStopped)
	case strings.HasPrefix(s, "fault-invalid-"):
		return store.AppendResult{}, store.InvalidArgument("injected: event data PostgreSQL refuses")
	}
	return f.EventStore.AppendToStream(ctx, stream, events, opts)
}
