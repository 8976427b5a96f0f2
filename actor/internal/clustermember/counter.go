package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/store"
)

// The counter kind: a stream holds a count.

// Count is the counter's only command type (registered in the codec, as
// cluster mode requires).
type Count struct {
	Tenant string `json:"tenant"`
	Stream string `json:"stream"`
	// Op is "inc" (default), "reject" (a rejection matching ErrTooMany, a
	// Kind.Errors sentinel), "reject-other" (a rejection matching no
	// sentinel) or "panic".
	Op string `json:"op,omitempty"`
	By int    `json:"by,omitempty"`
}

// Incremented is the counter's event.
type Incremented struct {
	By int `json:"by"`
}

// CounterState is the counter's state.
type CounterState struct {
	Count  int `json:"count"`
	Events int `json:"events"`
}

// ErrTooMany is the counter's sentinel domain error.
var ErrTooMany = errors.New("too many at once")

type counterAgg = actor.Aggregate[Count, Incremented, CounterState]

func codec() *store.JSONCodec {
	return store.NewJSONCodec().MustRegister("Incremented", Incremented{}).MustRegister("Count", Count{})
}

func counterKind() actor.Kind[Count, Incremented, CounterState] {
	return actor.Kind[Count, Incremented, CounterState]{
		Name: "counter",
		Decider: decider.Decider[Count, Incremented, CounterState]{
			Decide: func(c Count, s CounterState) ([]Incremented, error) {
				switch c.Op {
				case "", "inc":
					return []Incremented{{By: max(c.By, 1)}}, nil
				case "reject":
					return nil, fmt.Errorf("count %d: %w", s.Count, ErrTooMany)
				case "reject-other":
					return nil, errors.New("not today")
				case "panic":
					panic("decide exploded")
				}
				return nil, fmt.Errorf("unknown op %q", c.Op)
			},
			Evolve: func(s CounterState, e Incremented) CounterState {
				s.Count += e.By
				s.Events++
				return s
			},
			InitialState: func() CounterState { return CounterState{} },
		},
		Route:  func(c Count) (string, store.StreamID) { return c.Tenant, store.StreamID(c.Stream) },
		Errors: []error{ErrTooMany},
	}
}

// sendRequest is the body of POST /send.
type sendRequest struct {
	Count
	CommandID string `json:"commandId,omitempty"`
}

// sendReply is the answer of POST /send: the result, or the error with
// what it matches on this member (errors.Is / errors.As), so a test can
// tell that a typed error crossed the wire as the same Go error.
type sendReply struct {
	Member    string         `json:"member"`
	Version   int64          `json:"version"`
	Count     int            `json:"count"`
	Events    int            `json:"events"`
	Duplicate bool           `json:"duplicate"`
	Error     string         `json:"error,omitempty"`
	Matches   map[string]any `json:"matches,omitempty"`
	Micros    int64          `json:"micros"`
}

func routes(m *Member) {
	m.Mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
		var req sendRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		start := time.Now()
		res, err := m.Counters.Send(r.Context(), req.Count, actor.SendOptions{CommandID: req.CommandID, ReturnState: true})
		rep := sendReply{Member: m.Host.Member(), Micros: time.Since(start).Microseconds()}
		if err != nil {
			rep.Error, rep.Matches = err.Error(), matches(err)
		} else {
			rep.Version, rep.Count, rep.Events, rep.Duplicate = int64(res.Version), res.State.Count, len(res.Events), res.Duplicate
		}
		writeJSON(w, rep)
	})
	m.Mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		s, v, err := m.Counters.State(r.Context(), r.URL.Query().Get("tenant"), store.StreamID(r.URL.Query().Get("stream")))
		if err != nil {
			writeJSON(w, map[string]any{"error": err.Error(), "matches": matches(err)})
			return
		}
		writeJSON(w, map[string]any{"count": s.Count, "events": s.Events, "version": v})
	})
	m.Mux.HandleFunc("GET /activations", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"member": m.Host.Member(), "activations": m.Host.Activations()})
	})
	m.Mux.HandleFunc("GET /owner", func(w http.ResponseWriter, r *http.Request) {
		o, err := m.Host.Owner("counter", r.URL.Query().Get("tenant"), store.StreamID(r.URL.Query().Get("stream")))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]any{"owner": o})
	})
	m.Mux.HandleFunc("GET /members", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"member": m.Host.Member(), "members": m.Host.Members(), "race": raceEnabled})
	})
}

// matches lists the sentinels and typed errors err matches.
func matches(err error) map[string]any {
	out := map[string]any{}
	for name, target := range map[string]error{
		"rejected":        decider.ErrRejected,
		"tooMany":         ErrTooMany,
		"conflict":        store.ErrVersionConflict,
		"outcomeUnknown":  actor.ErrOutcomeUnknown,
		"stopped":         actor.ErrStopped,
		"tenantDropped":   store.ErrTenantDropped,
		"invalidArgument": store.ErrInvalidArgument,
		"unavailable":     store.ErrUnavailable,
		"panic":           actor.ErrPanic,
		"canceled":        context.Canceled,
	} {
		if errors.Is(err, target) {
			out[name] = true
		}
	}
	var vc *store.VersionConflictError
	if errors.As(err, &vc) {
		out["conflictStream"] = string(vc.Stream)
		out["conflictActual"] = int64(vc.Actual)
	}
	var pe *actor.PanicError
	if errors.As(err, &pe) {
		out["panicWhere"] = pe.Where
		out["panicValue"] = fmt.Sprint(pe.Value)
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
