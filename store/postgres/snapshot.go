package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

const (
	// saveSnapshotSQL replaces a stored snapshot only when it is not newer
	// than the one being saved; one statement, so two savers racing can't
	// let the older one win.
	saveSnapshotSQL = `INSERT INTO aggregate_snapshots (partition, stream_id, name, stream_version, state)
VALUES ($1, $2, $3, $4, $5::text::jsonb)
ON CONFLICT (partition, stream_id, name) DO UPDATE
    SET stream_version = EXCLUDED.stream_version, state = EXCLUDED.state, created = now()
    WHERE aggregate_snapshots.stream_version <= EXCLUDED.stream_version`

	loadSnapshotSQL = `SELECT stream_version, state FROM aggregate_snapshots
WHERE partition = $1 AND stream_id = $2 AND name = $3`
)

// SaveSnapshot implements [store.SnapshotStore]. A snapshot at the same
// version as the stored one replaces it; an older one is ignored.
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	if err := store.ValidateStreamID(snap.Stream); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	partition, err := store.ValidatePartition(snap.Partition)
	if err != nil {
		return fmt.Errorf("save snapshot of stream %q: %w", snap.Stream, err)
	}
	if snap.Version < 0 {
		return store.InvalidArgument("save snapshot of stream %q: negative version %d", snap.Stream, snap.Version)
	}
	if !json.Valid(snap.State) {
		return store.InvalidArgument("save snapshot of stream %q: state is not valid JSON", snap.Stream)
	}
	_, err = s.exec(ctx, s.db(), partition, saveSnapshotSQL, partition, string(snap.Stream), snap.Name, int64(snap.Version), string(snap.State))
	if isDataException(err) {
		return fmt.Errorf("save snapshot of stream %q in partition %q: %w: PostgreSQL rejected the state: %w",
			snap.Stream, partition, store.ErrInvalidArgument, err)
	}
	if err != nil {
		return fmt.Errorf("save snapshot of stream %q in partition %q: %w", snap.Stream, partition, err)
	}
	return nil
}

// LoadSnapshot implements [store.SnapshotStore].
func (s *Store) LoadSnapshot(ctx context.Context, partition string, stream store.StreamID, name string) (store.Snapshot, bool, error) {
	if err := store.ValidateStreamID(stream); err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot: %w", err)
	}
	partition, err := store.ValidatePartition(partition)
	if err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot of stream %q: %w", stream, err)
	}
	var version int64
	var state []byte
	err = s.queryRow(ctx, s.db(), partition, loadSnapshotSQL, partition, string(stream), name).Scan(&version, &state)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Snapshot{}, false, nil
	}
	if err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot of stream %q in partition %q: %w", stream, partition, err)
	}
	return store.Snapshot{
		Partition: partition, Stream: stream, Name: name,
		Version: store.Version(version), State: json.RawMessage(state),
	}, true, nil
}
