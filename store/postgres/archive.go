package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

const (
	// archiveLockSQL locks the live streams row, so appends to the stream
	// wait for the archive (and then find the stream gone) and a second
	// archiver finds nothing to archive.
	archiveLockSQL = `SELECT stream_position FROM streams
WHERE stream_id = $1 AND partition = $2 AND NOT is_archived
FOR UPDATE`

	// The primary keys of streams and messages include is_archived, so a
	// stream can have at most one archived incarnation. Archiving a stream
	// that was archived before, recreated and written again replaces the
	// older archived incarnation with the newer one.
	archivePurgeMessagesSQL = `DELETE FROM messages WHERE stream_id = $1 AND partition = $2 AND is_archived`
	archivePurgeStreamSQL   = `DELETE FROM streams WHERE stream_id = $1 AND partition = $2 AND is_archived`
	archiveMessagesSQL      = `UPDATE messages SET is_archived = true WHERE stream_id = $1 AND partition = $2 AND NOT is_archived`
	archiveStreamSQL        = `UPDATE streams SET is_archived = true WHERE stream_id = $1 AND partition = $2 AND NOT is_archived`
	// A stream's aggregate snapshots end with it: a new stream with the
	// same id is a new incarnation and must not start from them.
	archiveSnapshotsSQL = `DELETE FROM aggregate_snapshots WHERE partition = $2 AND stream_id = $1`
)

// ArchiveStream implements [store.EventStore]: it marks the stream and all
// its messages archived and deletes its aggregate snapshots, in one
// transaction (the caller's when the store is bound to one). Afterwards the
// stream reads as missing, its events leave the global log, and an append
// may start a new stream with the same id, a new incarnation.
// Message ids of archived events stay taken. With Config.RowLevelSecurity
// the transaction is scoped to the partition before the stream is locked.
//
// A stream keeps at most one archived incarnation: when a stream archived
// earlier was started again and is now archived again, the earlier archived
// events are deleted and the newer ones take their place. The store logs
// this at Info level with the number of events removed.
//
// A missing (or already archived) stream returns an error matching
// [store.ErrStreamNotFound], and nothing is changed.
func (s *Store) ArchiveStream(ctx context.Context, stream store.StreamID, opts store.ArchiveOptions) error {
	if err := store.ValidateStreamID(stream); err != nil {
		return err
	}
	partition, err := store.ValidatePartition(opts.Partition)
	if err != nil {
		return err
	}
	run := func(tx querier) error { return s.archive(ctx, tx, stream, partition) }
	if s.inTx() {
		return run(s.tx)
	}
	if err := pgx.BeginFunc(ctx, s.base, func(tx pgx.Tx) error { return run(tx) }); err != nil {
		return err
	}
	return nil
}

func (s *Store) archive(ctx context.Context, tx querier, stream store.StreamID, partition string) error {
	var version int64
	err := s.queryRow(ctx, tx, partition, archiveLockSQL, string(stream), partition).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("archive stream %q in partition %q: %w", stream, partition, store.ErrStreamNotFound)
	}
	if err != nil {
		return fmt.Errorf("archive stream %q in partition %q: lock the stream: %w", stream, partition, err)
	}
	b := &pgx.Batch{}
	b.Queue(archivePurgeMessagesSQL, string(stream), partition)
	b.Queue(archivePurgeStreamSQL, string(stream), partition)
	b.Queue(archiveMessagesSQL, string(stream), partition)
	b.Queue(archiveStreamSQL, string(stream), partition)
	b.Queue(archiveSnapshotsSQL, string(stream), partition)
	br := tx.SendBatch(ctx, b)
	purged, err := br.Exec()
	if err == nil {
		for range 4 {
			if _, err = br.Exec(); err != nil {
				break
			}
		}
	}
	if closeErr := br.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("archive stream %q in partition %q: %w", stream, partition, err)
	}
	if n := purged.RowsAffected(); n > 0 {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "archive_replaced_older_archive",
			slog.String("stream_id", string(stream)), slog.String("partition", partition),
			slog.Int64("events_removed", n), slog.Int64("events_archived", version))
	}
	return nil
}
