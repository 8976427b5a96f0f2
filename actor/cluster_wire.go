package actor

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/store"
)

// The messages between members are JSON documents carried in a
// wrapperspb.BytesValue (protoactor's remoting needs protobuf messages):
// a wireRequest to the stream's grain, a wireReply back. Commands, events
// and states inside them are encoded by the kind's codec (states by the
// kind's snapshot encoding, or JSON).

type wireOp string

const (
	opSend  wireOp = "send"
	opState wireOp = "state"
)

type wireRequest struct {
	Op      wireOp          `json:"op"`
	Kind    string          `json:"kind"`
	Tenant  string          `json:"tenant"`
	Stream  store.StreamID  `json:"stream"`
	CmdType string          `json:"cmdType,omitempty"`
	Cmd     json.RawMessage `json:"cmd,omitempty"`
	// The command's SendOptions (Metadata is Meta: the caller's, with the
	// correlation, causation, command id and trace context already added).
	CommandID   string         `json:"commandId,omitempty"`
	ReturnState bool           `json:"returnState,omitempty"`
	Meta        store.Metadata `json:"meta,omitempty"`
}

type wireEvent struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

type wireReply struct {
	Err            *wireError           `json:"err,omitempty"`
	Version        store.Version        `json:"version,omitempty"`
	GlobalPosition store.GlobalPosition `json:"globalPosition,omitempty"`
	Position       store.Position       `json:"position"`
	Events         []wireEvent          `json:"events,omitempty"`
	State          json.RawMessage      `json:"state,omitempty"`
	Duplicate      bool                 `json:"duplicate,omitempty"`
}

// wireError is an error that crossed the wire: its message and what it
// matched (errors.Is) on the member that returned it, so that the caller
// gets an error matching the same sentinels, and the same
// *store.VersionConflictError or *PanicError under errors.As.
type wireError struct {
	Msg     string   `json:"msg"`
	Matches []string `json:"matches,omitempty"`
	// Domain is the index+1 of the Kind.Errors sentinel a rejection
	// matched (0: none).
	Domain   int           `json:"domain,omitempty"`
	Conflict *wireConflict `json:"conflict,omitempty"`
	Panic    *wirePanic    `json:"panic,omitempty"`
}

// wireConflict is a *store.VersionConflictError.
type wireConflict struct {
	Stream              store.StreamID    `json:"stream"`
	Partition           string            `json:"partition"`
	Expected            string            `json:"expected"` // "any", "stream exists", "no stream" or "exact"
	ExpectedVersion     store.Version     `json:"expectedVersion,omitempty"`
	Actual              store.Version     `json:"actual"`
	ActualExists        bool              `json:"actualExists"`
	ExpectedIncarnation store.Incarnation `json:"expectedIncarnation,omitempty"`
	ActualIncarnation   store.Incarnation `json:"actualIncarnation,omitempty"`
}

func encodeConflict(e *store.VersionConflictError) *wireConflict {
	w := &wireConflict{Stream: e.Stream, Partition: e.Partition, Expected: e.Expected.String(), Actual: e.Actual,
		ActualExists: e.ActualExists, ExpectedIncarnation: e.ExpectedIncarnation, ActualIncarnation: e.ActualIncarnation}
	if n, ok := e.Expected.Exact(); ok {
		w.Expected, w.ExpectedVersion = "exact", n
	}
	return w
}

func (w *wireConflict) decode() *store.VersionConflictError {
	e := &store.VersionConflictError{Stream: w.Stream, Partition: w.Partition, Actual: w.Actual, ActualExists: w.ActualExists,
		ExpectedIncarnation: w.ExpectedIncarnation, ActualIncarnation: w.ActualIncarnation}
	switch w.Expected {
	case "exact":
		e.Expected = store.Exact(w.ExpectedVersion)
	case store.StreamExists.String():
		e.Expected = store.StreamExists
	case store.NoStream.String():
		e.Expected = store.NoStream
	default:
		e.Expected = store.Any
	}
	return e
}

type wirePanic struct {
	Where string `json:"where"`
	Value string `json:"value"`
	Stack string `json:"stack"`
}

// wireSentinels are the errors whose identity crosses the wire, by name.
var wireSentinels = []struct {
	name string
	err  error
}{
	{"rejected", decider.ErrRejected},
	{"outcomeUnknown", ErrOutcomeUnknown},
	{"stopped", ErrStopped},
	{"notStarted", ErrNotStarted},
	{"unknownKind", ErrUnknownKind},
	{"invalidConfig", ErrInvalidConfig},
	{"panic", ErrPanic},
	{"versionConflict", store.ErrVersionConflict},
	{"invalidArgument", store.ErrInvalidArgument},
	{"duplicateMessageId", store.ErrDuplicateMessageID},
	{"unknownEventType", store.ErrUnknownEventType},
	{"unavailable", store.ErrUnavailable},
	{"refused", store.ErrRefused},
	{"tenantDropped", store.ErrTenantDropped},
	{"streamNotFound", store.ErrStreamNotFound},
	{"canceled", context.Canceled},
	{"deadlineExceeded", context.DeadlineExceeded},
}

// encodeError describes err for the wire; domain are the kind's sentinel
// domain errors (Kind.Errors).
func encodeError(err error, domain []error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Msg: err.Error()}
	for _, s := range wireSentinels {
		if errors.Is(err, s.err) {
			w.Matches = append(w.Matches, s.name)
		}
	}
	if errors.Is(err, decider.ErrRejected) {
		for i, d := range domain {
			if errors.Is(err, d) {
				w.Domain = i + 1
				break
			}
		}
	}
	var vc *store.VersionConflictError
	if errors.As(err, &vc) {
		w.Conflict = encodeConflict(vc)
	}
	var pe *PanicError
	if errors.As(err, &pe) {
		w.Panic = &wirePanic{Where: pe.Where, Value: errorString(pe.Value), Stack: string(pe.Stack)}
	}
	return w
}

func errorString(v any) string {
	switch v := v.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "unprintable panic value"
	}
	return string(b)
}

// decode turns a wire error back into an error with the same message that
// matches the same sentinels. A rejection is marked with decider.Rejected
// and wraps the Kind.Errors sentinel it matched on the owner, if any.
func (w *wireError) decode(domain []error) error {
	e := &remoteError{msg: w.Msg}
	rejected := false
	for _, name := range w.Matches {
		for _, s := range wireSentinels {
			if s.name != name {
				continue
			}
			switch s.err {
			case decider.ErrRejected:
				rejected = true
			case ErrPanic, store.ErrVersionConflict:
				if (s.err == ErrPanic && w.Panic != nil) || (s.err == store.ErrVersionConflict && w.Conflict != nil) {
					continue // matched through the typed error below
				}
				e.causes = append(e.causes, s.err)
			default:
				e.causes = append(e.causes, s.err)
			}
		}
	}
	if w.Conflict != nil {
		e.causes = append(e.causes, w.Conflict.decode())
	}
	if w.Panic != nil {
		e.causes = append(e.causes, &PanicError{Where: w.Panic.Where, Value: w.Panic.Value, Stack: []byte(w.Panic.Stack)})
	}
	if !rejected {
		return e
	}
	if w.Domain > 0 && w.Domain <= len(domain) {
		e.causes = append(e.causes, domain[w.Domain-1])
	}
	return decider.Rejected(e)
}

// remoteError is an error returned by another member: its message is the
// original's, and errors.Is/As find the sentinels and typed errors the
// original matched.
type remoteError struct {
	msg    string
	causes []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.causes }

// placementError is a failure to reach a stream's owner or get its answer:
// retried with ClusterConfig.Retry.
type placementError struct {
	err      error
	timedOut bool // the request may have been delivered
}

func (e *placementError) Error() string { return e.err.Error() }
func (e *placementError) Unwrap() error { return e.err }
