package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

const (
	// saveSnapshotSQL replaces a stored snapshot only when it is not newer
	// than the one being saved or is of another incarnation; one
	// statement, so two savers racing can't let the older one win. It
	// key-share locks the live streams row, so an archive (which locks the
	// row for update and then deletes the stream's snapshots) either waits
	// for the save and deletes what it wrote, or commits first and the save
	// then finds no live stream. The row's incarnation is returned (NULL
	// when the stream is missing); with $6 not 0 nothing is written unless
	// it equals $6. Appends lock the row for no-key update, which a key
	// share lock does not block.
	saveSnapshotSQL = `WITH s AS (
    SELECT coalesce(incarnation, 0) AS incarnation FROM streams
    WHERE stream_id = $2 AND partition = $1 AND NOT is_archived
    FOR KEY SHARE
), ins AS (
    INSERT INTO aggregate_snapshots (partition, stream_id, name, stream_version, state, incarnation, state_version)
    SELECT $1, $2, $3, $4, $5::text::jsonb, s.incarnation, $7
    FROM (VALUES (1)) AS one (x) LEFT JOIN s ON true
    WHERE $6::bigint = 0 OR s.incarnation = $6::bigint
    ON CONFLICT (partition, stream_id, name) DO UPDATE
        SET stream_version = EXCLUDED.stream_version, state = EXCLUDED.state,
            incarnation = EXCLUDED.incarnation, state_version = EXCLUDED.state_version, created = now()
        WHERE aggregate_snapshots.incarnation IS DISTINCT FROM EXCLUDED.incarnation
           OR aggregate_snapshots.state_version < EXCLUDED.state_version
           OR (aggregate_snapshots.state_version = EXCLUDED.state_version
               AND aggregate_snapshots.stream_version <= EXCLUDED.stream_version)
)
SELECT (SELECT incarnation FROM s), (SELECT stream_position FROM streams
    WHERE stream_id = $2 AND partition = $1 AND NOT is_archived)`

	loadSnapshotSQL = `SELECT stream_version, state, coalesce(incarnation, 0), state_version FROM aggregate_snapshots
WHERE partition = $1 AND stream_id = $2 AND name = $3`
)

// SaveSnapshot implements [store.SnapshotStore]. A snapshot at the same
// version as the stored one replaces it; an older one of the same
// incarnation and state version is ignored, and so is one of an older
// state version. With snap.Incarnation set, a stream that is
// missing or another incarnation fails the save with a
// *store.VersionConflictError.
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
	if snap.Incarnation < 0 {
		return store.InvalidArgument("save snapshot of stream %q: negative incarnation %d", snap.Stream, snap.Incarnation)
	}
	if snap.StateVersion < 0 || snap.StateVersion > math.MaxInt32 {
		return store.InvalidArgument("save snapshot of stream %q: state version %d is not in 0..%d", snap.Stream, snap.StateVersion, math.MaxInt32)
	}
	var current, version *int64
	err = s.queryRow(ctx, s.db(), partition, saveSnapshotSQL, partition, string(snap.Stream), snap.Name,
		int64(snap.Version), string(snap.State), int64(snap.Incarnation), int32(snap.StateVersion)).Scan(&current, &version)
	if err == nil && snap.Incarnation != 0 && (current == nil || store.Incarnation(*current) != snap.Incarnation) {
		conflict := &store.VersionConflictError{Stream: snap.Stream, Partition: partition, Expected: store.Any,
			ExpectedIncarnation: snap.Incarnation}
		if current != nil && version != nil {
			conflict.ActualIncarnation, conflict.Actual, conflict.ActualExists = store.Incarnation(*current), store.Version(*version), true
		}
		return fmt.Errorf("save snapshot: %w", conflict)
	}
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
	var version, incarnation int64
	var stateVersion int32
	var state []byte
	err = s.queryRow(ctx, s.db(), partition, loadSnapshotSQL, partition, string(stream), name).Scan(&version, &state, &incarnation, &stateVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Snapshot{}, false, nil
	}
	if err != nil {
		return store.Snapshot{}, false, fmt.Errorf("load snapshot of stream %q in partition %q: %w", stream, partition, err)
	}
	return store.Snapshot{
		Partition: partition, Stream: stream, Name: name,
		Version: store.Version(version), State: json.RawMessage(state),
		Incarnation: store.Incarnation(incarnation), StateVersion: int(stateVersion),
	}, true, nil
}
