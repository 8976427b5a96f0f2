package actor

import (
	"errors"
	"log/slog"

	"github.com/troupehq/troupe/store"
)

// maybeSnapshot saves a snapshot when the last append crossed a multiple
// of Snapshot.Every. The write runs off the loop; Stop waits for it.
func (a *streamActor[C, E, S]) maybeSnapshot(prev store.Version) {
	sc := a.k.Snapshot
	if sc == nil || int64(a.version)/int64(sc.Every) == int64(prev)/int64(sc.Every) {
		return
	}
	data, err := encodeSnapshot(sc, a.state)
	if err != nil {
		a.h.log.Warn("actor_snapshot_encode_failed", slog.String("kind", a.key.kind),
			slog.String("tenant_id", a.key.tenant), slog.String("stream_id", string(a.key.stream)), slog.Any("error", err))
		return
	}
	snap := store.Snapshot{Partition: a.key.tenant, Stream: a.key.stream, Name: sc.Name, Version: a.version, State: data,
		Incarnation: a.incarnation, StateVersion: sc.Version}
	h, snapshots := a.h, a.k.snapshots
	h.jobs.Add(1)
	go func() {
		defer h.jobs.Done()
		ctx, cancel := h.storeCtx()
		defer cancel()
		err := snapshots.SaveSnapshot(ctx, snap)
		switch {
		case errors.Is(err, store.ErrVersionConflict):
			// The stream was archived (and maybe started again) since
			// the state was folded: its snapshot is of no use.
			h.log.Debug("actor_snapshot_stream_gone", slog.String("kind", snap.Name),
				slog.String("tenant_id", snap.Partition), slog.String("stream_id", string(snap.Stream)),
				slog.Int64("version", int64(snap.Version)), slog.Any("error", err))
		case err != nil:
			h.log.Warn("actor_snapshot_save_failed", slog.String("kind", snap.Name),
				slog.String("tenant_id", snap.Partition), slog.String("stream_id", string(snap.Stream)),
				slog.Int64("version", int64(snap.Version)), slog.Any("error", err))
		}
	}()
}

func encodeSnapshot[S any](sc *SnapshotConfig[S], s S) (data []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError("snapshot encode", r)
		}
	}()
	return sc.Encode(s)
}
