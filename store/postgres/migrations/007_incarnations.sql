-- Troupe schema, version 7: stream incarnations.
-- Archiving a stream (or dropping its tenant) and appending to the same id
-- again starts a new stream, a new incarnation, which must share nothing with
-- the old one. An incarnation is the global position of its first event:
-- unique, and greater for a later life than for any earlier one.
--
--   streams.incarnation                        set by the append that creates
--                                              the stream; the append and the
--                                              snapshot save can require it.
--   aggregate_snapshots.incarnation            the incarnation the state was
--                                              folded from; NULL (unknown) is
--                                              never used by a load.
--   projection_stream_checkpoints.incarnation  the incarnation the per-stream
--                                              runner's checkpoint counts in.
--
-- The backfill of streams touches every row once (one index probe of
-- messages each); on a large database run it at a quiet time.

ALTER TABLE streams ADD COLUMN IF NOT EXISTS incarnation bigint;

UPDATE streams s SET incarnation = m.global_position
FROM messages m
WHERE s.incarnation IS NULL
  AND m.stream_id = s.stream_id AND m.partition = s.partition
  AND m.is_archived = s.is_archived AND m.stream_position = 1;

ALTER TABLE aggregate_snapshots ADD COLUMN IF NOT EXISTS incarnation bigint;

-- A snapshot saved before this migration belongs to the live incarnation when
-- it was saved after that incarnation's first event and is not ahead of the
-- stream; a snapshot of an earlier life was saved before the archive, so before
-- the first event of the live one. The others stay unknown and are ignored.
UPDATE aggregate_snapshots a SET incarnation = s.incarnation
FROM streams s, messages m
WHERE a.incarnation IS NULL
  AND s.stream_id = a.stream_id AND s.partition = a.partition AND NOT s.is_archived
  AND a.stream_version <= s.stream_position
  AND m.stream_id = s.stream_id AND m.partition = s.partition AND NOT m.is_archived
  AND m.stream_position = 1 AND a.created > m.created;

-- A checkpoint written before this migration is adopted by the live
-- incarnation the next time the runner reads the stream (see
-- projection/perstream).
ALTER TABLE projection_stream_checkpoints ADD COLUMN IF NOT EXISTS incarnation bigint;
