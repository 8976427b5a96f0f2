package actor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/troupehq/troupe/store"
)

// loadStart is where a load begins: a full load starts from the snapshot
// (if any) or the initial state; a tail load from the actor's state.
type loadStart[S any] struct {
	full    bool
	state   S
	version store.Version
	exists  bool
	// incarnation is the incarnation the tail load's state was folded
	// from (0: unknown). When the stream read is another incarnation (it
	// was archived, and maybe started again), the load starts over from the
	// initial state and the first event.
	incarnation store.Incarnation
}

// loadResult is a rebuilt state.
type loadResult[E, S any] struct {
	state    S
	version  store.Version
	exists   bool
	replayed int
	// snapshotVersion is the version of the snapshot the state started
	// from (0: none).
	snapshotVersion store.Version
	// incarnation is the incarnation of the stream the state was folded
	// from; 0 when the stream does not exist. Appends from this state
	// should require it (store.AppendOptions.Incarnation) and snapshots of
	// it record it (store.Snapshot.Incarnation).
	incarnation store.Incarnation
	// commands are the results of the most recent commands with an id
	// found in the replayed events, oldest first.
	commands []commandRecord[E, S]
	err      error
}

type commandRecord[E, S any] struct {
	id     string
	result Result[E, S]
}

// load rebuilds a stream's state. It runs off the actor's loop; the state
// it is given is not touched by the loop until the result is back.
func (k *kindRuntime[C, E, S]) load(ctx context.Context, h *Host, key key, start loadStart[S]) (r loadResult[E, S]) {
	defer func() {
		if p := recover(); p != nil {
			r.err = newPanicError("replay", p)
		}
	}()
	state, version, exists, inc := start.state, start.version, start.exists, start.incarnation
	var snapVersion store.Version
	if start.full {
		state, version, exists, inc = k.Decider.InitialState(), 0, false, 0
		if s, v, si, ok := k.loadSnapshot(ctx, h, key); ok {
			state, version, exists, snapVersion, inc = s, v, true, v, si
		}
	}
	window := h.cfg.CommandIDWindow
	var cur *commandRecord[E, S]
	flush := func() {
		if cur == nil || window <= 0 {
			cur = nil
			return
		}
		r.commands = append(r.commands, *cur)
		if len(r.commands) >= 2*window {
			r.commands = append(r.commands[:0:0], r.commands[len(r.commands)-window:]...)
		}
		cur = nil
	}
	page := h.cfg.ReplayPageSize
	from := version + 1
	for {
		res, err := h.store.ReadStream(ctx, key.stream, store.ReadOptions{Partition: key.tenant, From: from, MaxCount: page})
		if err != nil {
			r.err = fmt.Errorf("read stream from position %d: %w", from, err)
			return r
		}
		if inc != 0 && res.Incarnation != inc {
			// The state was folded from another incarnation of the stream
			// (archived, and maybe started again since): it is not this
			// stream's. Start over from the initial state and the first
			// event of the stream as it is now.
			h.log.Info("actor_stream_incarnation_changed", slog.String("kind", key.kind),
				slog.String("tenant_id", key.tenant), slog.String("stream_id", string(key.stream)),
				slog.Int64("incarnation", int64(inc)), slog.Int64("stream_incarnation", int64(res.Incarnation)),
				slog.Int64("snapshot_version", int64(snapVersion)), slog.Int64("version", int64(version)))
			state, version, exists, snapVersion, inc = k.Decider.InitialState(), 0, false, 0, res.Incarnation
			r.commands, cur = nil, nil
			if from != 1 || !res.StreamExists {
				from = 1
				continue
			}
		}
		if snapVersion > 0 && (!res.StreamExists || res.CurrentVersion < snapVersion) {
			// The snapshot is ahead of the stream: ignore it and replay
			// from the start.
			h.log.Warn("actor_snapshot_ahead_of_stream", slog.String("kind", key.kind),
				slog.String("tenant_id", key.tenant), slog.String("stream_id", string(key.stream)),
				slog.Int64("snapshot_version", int64(snapVersion)), slog.Int64("stream_version", int64(res.CurrentVersion)))
			state, version, exists, snapVersion, inc = k.Decider.InitialState(), 0, false, 0, 0
			r.commands, cur = nil, nil
			from = 1
			continue
		}
		inc = res.Incarnation
		exists = exists || res.StreamExists
		for i, ev := range res.Events {
			// Positions rise; an upcaster may leave gaps (dropped events)
			// and repeat one (the events of a split follow each other).
			split := i > 0 && ev.StreamPosition == res.Events[i-1].StreamPosition
			if ev.StreamPosition <= version && !split {
				r.err = fmt.Errorf("read stream: expected a position after %d, got %d", version, ev.StreamPosition)
				return r
			}
			v, err := store.Decode(k.codec, ev)
			if err != nil {
				r.err = err
				return r
			}
			e, ok := v.(E)
			if !ok {
				r.err = fmt.Errorf("event %s decoded to %T, which is not the aggregate's event type", ev, v)
				return r
			}
			state = k.Decider.Evolve(state, e)
			version = ev.StreamPosition
			r.replayed++
			id, _ := ev.Metadata[MetaCommandID].(string)
			if cur != nil && cur.id != id {
				flush()
			}
			if id != "" {
				if cur == nil {
					cur = &commandRecord[E, S]{id: id}
				}
				cur.result.Events = append(cur.result.Events, e)
				cur.result.Version = ev.StreamPosition
				cur.result.GlobalPosition = ev.GlobalPosition
				cur.result.Position = ev.Position()
				cur.result.State = state
			}
		}
		if len(res.Events) < page || len(res.Events) == 0 {
			// The end of the stream: events after the last one read as
			// nothing (dropped) still count in the stream's version.
			if res.StreamExists {
				version = max(version, res.CurrentVersion)
			}
			break
		}
		from = version + 1
	}
	flush()
	if len(r.commands) > window {
		r.commands = r.commands[len(r.commands)-window:]
	}
	r.state, r.version, r.exists, r.snapshotVersion, r.incarnation = state, version, exists, snapVersion, inc
	return r
}

// loadSnapshot returns the stream's snapshot state, version and
// incarnation when the kind takes snapshots and a decodable one of a known
// incarnation and the kind's state version exists. A snapshot that cannot
// be read or decoded, or of another state version, is logged and ignored; so is one of an unknown incarnation (saved by an older
// build), which could be the state of an archived stream with the same id.
// Whether the incarnation is the stream's is checked by load against the
// stream read.
func (k *kindRuntime[C, E, S]) loadSnapshot(ctx context.Context, h *Host, key key) (s S, v store.Version, inc store.Incarnation, ok bool) {
	sc := k.Snapshot
	if sc == nil {
		return s, 0, 0, false
	}
	snap, found, err := k.snapshots.LoadSnapshot(ctx, key.tenant, key.stream, sc.Name)
	if err != nil {
		h.log.Warn("actor_snapshot_load_failed", slog.String("kind", key.kind),
			slog.String("tenant_id", key.tenant), slog.String("stream_id", string(key.stream)), slog.Any("error", err))
		return s, 0, 0, false
	}
	if !found || snap.Version <= 0 {
		return s, 0, 0, false
	}
	if snap.Incarnation == 0 {
		h.log.Debug("actor_snapshot_incarnation_unknown", slog.String("kind", key.kind),
			slog.String("tenant_id", key.tenant), slog.String("stream_id", string(key.stream)),
			slog.Int64("snapshot_version", int64(snap.Version)))
		return s, 0, 0, false
	}
	if snap.StateVersion != sc.Version {
		// Saved by a build whose state had another shape: fold the
		// events instead.
		h.log.Info("actor_snapshot_state_version_changed", slog.String("kind", key.kind),
			slog.String("tenant_id", key.tenant), slog.String("stream_id", string(key.stream)),
			slog.Int64("snapshot_version", int64(snap.Version)),
			slog.Int("snapshot_state_version", snap.StateVersion), slog.Int("state_version", sc.Version))
		return s, 0, 0, false
	}
	s, err = decodeSnapshot(sc, snap.State)
	if err != nil {
		h.log.Warn("actor_snapshot_undecodable", slog.String("kind", key.kind),
			slog.String("tenant_id", key.tenant), slog.String("stream_id", string(key.stream)),
			slog.Int64("snapshot_version", int64(snap.Version)), slog.Any("error", err))
		return s, 0, 0, false
	}
	return s, snap.Version, snap.Incarnation, true
}

func decodeSnapshot[S any](sc *SnapshotConfig[S], data json.RawMessage) (s S, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError("snapshot decode", r)
		}
	}()
	return sc.Decode(data)
}
