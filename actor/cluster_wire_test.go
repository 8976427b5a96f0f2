package actor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

// roundTrip sends err through the wire format as the owner and the caller
// of a cluster request do.
func roundTrip(t *testing.T, err error, domain []error) error {
	t.Helper()
	b, jerr := json.Marshal(&wireReply{Err: encodeError(err, domain)})
	require.NoError(t, jerr)
	var rep wireReply
	require.NoError(t, json.Unmarshal(b, &rep))
	require.NotNil(t, rep.Err)
	return rep.Err.decode(domain)
}

var errClusterTooMany = errors.New("too many at once")

// The typed errors of Send come out of the wire format as the same Go
// errors: same message, same sentinels under errors.Is, same typed errors
// under errors.As. (TestClusterTypedErrors checks them between members.)
func TestClusterWireErrors(t *testing.T) {
	domain := []error{errors.New("other"), errClusterTooMany}
	conflict := &store.VersionConflictError{Stream: "s-1", Partition: "acme", Expected: store.Exact(3), Actual: 5, ActualExists: true,
		ExpectedIncarnation: 2, ActualIncarnation: 3}
	for _, tc := range []struct {
		name  string
		err   error
		is    []error
		isNot []error
		check func(t *testing.T, got error)
	}{
		{name: "rejection with a sentinel", err: decider.Rejected(fmt.Errorf("count 9: %w", errClusterTooMany)),
			is: []error{decider.ErrRejected, errClusterTooMany}, isNot: []error{domain[0], ErrPanic}},
		{name: "rejection without a sentinel", err: decider.Rejected(errors.New("not today")),
			is: []error{decider.ErrRejected}, isNot: []error{errClusterTooMany, domain[0]}},
		{name: "version conflict", err: fmt.Errorf("actor: counter command: 5 attempts: %w", conflict),
			is: []error{store.ErrVersionConflict}, isNot: []error{decider.ErrRejected},
			check: func(t *testing.T, got error) {
				var vc *store.VersionConflictError
				require.ErrorAs(t, got, &vc)
				require.Equal(t, conflict, vc)
				require.True(t, vc.IncarnationChanged())
			}},
		{name: "outcome unknown", err: fmt.Errorf("%w: counter command: %w", ErrOutcomeUnknown, errors.New("connection lost")),
			is: []error{ErrOutcomeUnknown}, isNot: []error{store.ErrUnavailable}},
		{name: "stopped", err: fmt.Errorf("actor: send: %w", ErrStopped), is: []error{ErrStopped}},
		{name: "tenant dropped", err: fmt.Errorf("actor: append: %w", store.ErrTenantDropped), is: []error{store.ErrTenantDropped}},
		{name: "invalid argument", err: store.InvalidArgument("stream id is empty"), is: []error{store.ErrInvalidArgument}},
		{name: "unavailable", err: fmt.Errorf("actor: append: %w: %w", store.ErrUnavailable, context.DeadlineExceeded),
			is: []error{store.ErrUnavailable, context.DeadlineExceeded}},
		{name: "panic", err: newPanicError("decide", "boom"), is: []error{ErrPanic}, isNot: []error{decider.ErrRejected},
			check: func(t *testing.T, got error) {
				var pe *PanicError
				require.ErrorAs(t, got, &pe)
				require.Equal(t, "decide", pe.Where)
				require.Equal(t, "boom", pe.Value)
				require.Contains(t, string(pe.Stack), "goroutine")
			}},
		{name: "panic with an error value", err: newPanicError("evolve", fmt.Errorf("wrapped: %w", store.ErrInvalidArgument)),
			is: []error{ErrPanic, store.ErrInvalidArgument}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := roundTrip(t, tc.err, domain)
			require.Equal(t, tc.err.Error(), got.Error())
			for _, target := range tc.is {
				require.ErrorIs(t, got, target)
			}
			for _, target := range tc.isNot {
				require.NotErrorIs(t, got, target)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
}

// Every expected version survives the wire inside a conflict.
func TestClusterWireConflictExpected(t *testing.T) {
	for _, ev := range []store.ExpectedVersion{store.Any, store.NoStream, store.StreamExists, store.Exact(0), store.Exact(7)} {
		got := roundTrip(t, &store.VersionConflictError{Stream: "s", Expected: ev}, nil)
		var vc *store.VersionConflictError
		require.ErrorAs(t, got, &vc)
		require.Equal(t, ev, vc.Expected)
	}
}

type wireCmd struct{ N int }

// In cluster mode a command crosses the wire through the kind's codec: one
// whose type is not registered fails with an error naming the type.
func TestClusterUnregisteredCommand(t *testing.T) {
	h, err := New(memory.New(), &Config{Codec: store.NewJSONCodec().MustRegister("e", wireCmd{})})
	require.NoError(t, err)
	agg, err := Register(h, Kind[wireCmd, int, int]{
		Name: "k",
		Decider: decider.Decider[wireCmd, int, int]{
			Decide:       func(wireCmd, int) ([]int, error) { return nil, nil },
			Evolve:       func(s, e int) int { return s + e },
			InitialState: func() int { return 0 },
		},
		Route: func(wireCmd) (string, store.StreamID) { return "", "s" },
		Codec: store.NewJSONCodec(),
	})
	require.NoError(t, err)
	_, _, err = agg.encodeCommand(wireCmd{N: 1})
	require.ErrorIs(t, err, store.ErrInvalidArgument)
	require.ErrorContains(t, err, "actor.wireCmd")
	require.ErrorContains(t, err, "registered in the codec")
}
