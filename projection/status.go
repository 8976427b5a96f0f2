package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// FailedEvent names the event a projection stopped at.
type FailedEvent struct {
	Partition      string
	Position       store.Position
	StreamID       store.StreamID
	StreamPosition store.Version
	MessageID      string
	Type           string
}

// Status is a projection's state and lag, as stored in the database, so any
// process can read it.
type Status struct {
	Name string
	// Partition is the partition the projection is limited to, or
	// AllPartitions.
	Partition string
	// State is the state the active runner reported: running, rebuilding
	// or failed. It is stopped when no runner holds the lease (a runner
	// that reported running and died leaves no lease behind), and failed
	// after a runner stopped at a failing event until a runner starts
	// again.
	State State
	// Active reports whether a runner (in any process) holds the lease.
	Active bool
	// Owner names the runner that last reported the state (host/pid/id).
	Owner string
	// Local is this Projection's own state (standby, for example); empty
	// from LoadStatus.
	Local State
	// Checkpoint is the position of the last event applied, and
	// CheckpointUpdated when it was written.
	Checkpoint        store.Position
	CheckpointUpdated time.Time
	// LastEvent is the last event in the log (of the partition), and
	// LastEventCreated when it was appended.
	LastEvent        store.Position
	LastEventCreated time.Time
	// LagEvents is how many events of the log come after the checkpoint.
	LagEvents int64
	// Lag is how long the oldest of those has been waiting; 0 when
	// LagEvents is 0.
	Lag time.Duration
	// Error and FailedEvent describe the failure of a failed projection.
	Error       string
	FailedEvent *FailedEvent
	// Updated is when the state was last reported; zero if never.
	Updated time.Time
}

const (
	statusWriteSQL = `INSERT INTO projection_status (projection, partition, state, error,
    failed_partition, failed_transaction_id, failed_global_position, failed_stream_id,
    failed_stream_position, failed_message_id, failed_message_type, owner, updated)
VALUES ($1, $2, $3, $4, $5, $6::xid8, $7, $8, $9, $10, $11, $12, now())
ON CONFLICT (projection, partition) DO UPDATE SET state = EXCLUDED.state, error = EXCLUDED.error,
    failed_partition = EXCLUDED.failed_partition, failed_transaction_id = EXCLUDED.failed_transaction_id,
    failed_global_position = EXCLUDED.failed_global_position, failed_stream_id = EXCLUDED.failed_stream_id,
    failed_stream_position = EXCLUDED.failed_stream_position, failed_message_id = EXCLUDED.failed_message_id,
    failed_message_type = EXCLUDED.failed_message_type, owner = EXCLUDED.owner, updated = now()`
	// A runner that stops records "stopped" only if it is still the last
	// one to report: a runner that took over since keeps its state.
	statusStoppedSQL = `UPDATE projection_status SET state = 'stopped', updated = now()
WHERE projection = $1 AND partition = $2 AND owner = $3 AND state <> 'failed'`
	statusReadSQL = `SELECT state, error, failed_partition, failed_transaction_id, failed_global_position,
    failed_stream_id, failed_stream_position, failed_message_id, failed_message_type, owner, updated
FROM projection_status WHERE projection = $1 AND partition = $2`
	checkpointStatusSQL = `SELECT last_processed_transaction_id, last_processed_position, updated FROM subscriptions
WHERE subscription_id = $1 AND partition = $2 AND version = 1`
	// lockHeldSQL finds a session advisory lock on the projection's key: a
	// bigint key shows in pg_locks as classid (high half), objid (low
	// half) and objsubid 1.
	lockHeldSQL = `WITH k AS (SELECT hashtextextended($1, 0) AS v)
SELECT EXISTS (
    SELECT 1 FROM pg_locks l, k
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = ((k.v >> 32) & 4294967295)
      AND l.objid::bigint = (k.v & 4294967295))`
	lastEventSQL = `SELECT m.transaction_id, m.global_position, m.created
FROM messages m
JOIN streams s ON s.stream_id = m.stream_id AND s.partition = m.partition AND NOT s.is_archived
WHERE NOT m.is_archived AND ($1::text IS NULL OR m.partition = $1::text)
ORDER BY m.transaction_id DESC, m.global_position DESC
LIMIT 1`
	lagSQL = `SELECT count(*), COALESCE(EXTRACT(EPOCH FROM (now() - min(m.created))), 0)::float8
FROM messages m
JOIN streams s ON s.stream_id = m.stream_id AND s.partition = m.partition AND NOT s.is_archived
WHERE NOT m.is_archived AND ($1::text IS NULL OR m.partition = $1::text)
  AND (m.transaction_id, m.global_position) > ($2::xid8, $3::bigint)`
	// countUpToSQL counts the events up to a position, as a rebuild's
	// total.
	countUpToSQL = `SELECT count(*)
FROM messages m
JOIN streams s ON s.stream_id = m.stream_id AND s.partition = m.partition AND NOT s.is_archived
WHERE NOT m.is_archived AND ($1::text IS NULL OR m.partition = $1::text)
  AND (m.transaction_id, m.global_position) <= ($2::xid8, $3::bigint)`
)

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// writeStatus records s (and the failure, if any) as this runner's report.
func (p *Projection) writeStatus(ctx context.Context, q execer, s State, he *HandlerError) error {
	var (
		msg                      string
		fPartition, fStream, fID *string
		fType                    *string
		fTx                      *uint64
		fGlobal, fStreamPos      *int64
	)
	if he != nil {
		e := he.Event
		msg = he.Err.Error()
		gp, sp, tx := int64(e.GlobalPosition), int64(e.StreamPosition), e.TransactionID
		part, stream, id, typ := e.Partition, string(e.StreamID), e.MessageID, e.Type
		fPartition, fStream, fID, fType, fTx, fGlobal, fStreamPos = &part, &stream, &id, &typ, &tx, &gp, &sp
	}
	if _, err := q.Exec(ctx, statusWriteSQL, p.cfg.Name, p.scope, string(s), msg,
		fPartition, fTx, fGlobal, fStream, fStreamPos, fID, fType, p.owner); err != nil {
		return fmt.Errorf("write status %s: %w", s, err)
	}
	return nil
}

func (p *Projection) writeStoppedStatus(ctx context.Context, q execer) error {
	if _, err := q.Exec(ctx, statusStoppedSQL, p.cfg.Name, p.scope, p.owner); err != nil {
		return fmt.Errorf("write status stopped: %w", err)
	}
	return nil
}

// LoadStatus reads the status of the projection called name over partition
// (empty or AllPartitions for every partition) from the database: what its
// active runner reported, its checkpoint, the last event of the log and the
// lag between them. A projection that never ran is stopped at the start of
// the log.
//
// db may be a pool, a connection or a transaction.
func LoadStatus(ctx context.Context, db postgres.DB, name, partition string) (Status, error) {
	if postgres.IsNil(db) {
		return Status{}, configError("projection.LoadStatus: db is nil")
	}
	pool := db
	scope := scopeOf(partition)
	if partition == AllPartitions {
		partition = ""
	}
	st := Status{Name: name, Partition: scope, State: StateStopped}
	fail := func(what string, err error) (Status, error) {
		return Status{}, fmt.Errorf("load status of projection %q (partition %s): %s: %w", name, scope, what, err)
	}

	var (
		state, msg, owner        string
		fPartition, fStream, fID *string
		fType                    *string
		fTx                      *uint64
		fGlobal, fStreamPos      *int64
		updated                  time.Time
	)
	err := pool.QueryRow(ctx, statusReadSQL, name, scope).Scan(&state, &msg, &fPartition, &fTx, &fGlobal,
		&fStream, &fStreamPos, &fID, &fType, &owner, &updated)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fail("read state", err)
	default:
		st.State, st.Error, st.Owner, st.Updated = State(state), msg, owner, updated
		if fGlobal != nil {
			st.FailedEvent = &FailedEvent{
				Partition:      deref(fPartition),
				Position:       store.Position{TransactionID: deref(fTx), GlobalPosition: store.GlobalPosition(deref(fGlobal))},
				StreamID:       store.StreamID(deref(fStream)),
				StreamPosition: store.Version(deref(fStreamPos)),
				MessageID:      deref(fID),
				Type:           deref(fType),
			}
		}
	}
	if err := pool.QueryRow(ctx, lockHeldSQL, lockKey(name, scope)).Scan(&st.Active); err != nil {
		return fail("look for the lease", err)
	}
	if !st.Active && st.State != StateFailed {
		st.State = StateStopped
	}

	var cpTx uint64
	var cpGlobal int64
	var cpUpdated time.Time
	err = pool.QueryRow(ctx, checkpointStatusSQL, name, scope).Scan(&cpTx, &cpGlobal, &cpUpdated)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fail("read checkpoint", err)
	default:
		st.Checkpoint = store.Position{TransactionID: cpTx, GlobalPosition: store.GlobalPosition(cpGlobal)}
		st.CheckpointUpdated = cpUpdated
	}

	var partArg *string
	if partition != "" {
		partArg = &partition
	}
	var lastTx uint64
	var lastGlobal int64
	var lastCreated time.Time
	err = pool.QueryRow(ctx, lastEventSQL, partArg).Scan(&lastTx, &lastGlobal, &lastCreated)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fail("read the last event", err)
	default:
		st.LastEvent = store.Position{TransactionID: lastTx, GlobalPosition: store.GlobalPosition(lastGlobal)}
		st.LastEventCreated = lastCreated
	}

	var lagSeconds float64
	if err := pool.QueryRow(ctx, lagSQL, partArg, st.Checkpoint.TransactionID, int64(st.Checkpoint.GlobalPosition)).
		Scan(&st.LagEvents, &lagSeconds); err != nil {
		return fail("count the lag", err)
	}
	if st.LagEvents > 0 && lagSeconds > 0 {
		st.Lag = time.Duration(lagSeconds * float64(time.Second))
	}
	return st, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Status returns the projection's status (see LoadStatus) with this
// runner's own state in Local.
func (p *Projection) Status(ctx context.Context) (Status, error) {
	st, err := LoadStatus(ctx, p.pool, p.cfg.Name, p.scope)
	if err != nil {
		return st, err
	}
	p.mu.Lock()
	st.Local = p.state
	p.mu.Unlock()
	return st, nil
}

// waitPollInterval is how often WaitFor reads the stored checkpoint when
// this process is not the one applying events.
const waitPollInterval = 50 * time.Millisecond

// WaitFor waits until the projection has applied every event up to pos
// (typically store.AppendResult.LastPosition of a command), so a read of
// the read model shows the command's effect: read-your-writes. It watches
// this runner's checkpoint, and the stored one when another process is
// running the projection. It returns an error matching ErrFailed when the
// projection stops at a failing event first, and one wrapping ctx's error
// when ctx ends first: give ctx a deadline.
//
// pos must be in the projection's partition: a projection limited to one
// partition never passes an event of another.
func (p *Projection) WaitFor(ctx context.Context, pos store.Position) error {
	for {
		p.mu.Lock()
		cp, failure, changed, active := p.checkpoint, p.failure, p.changed, p.active
		p.mu.Unlock()
		if !cp.Less(pos) {
			return nil
		}
		if failure != nil {
			return fmt.Errorf("wait for projection %q to reach %+v: %w: %w", p.cfg.Name, pos, ErrFailed, failure)
		}
		var tick <-chan time.Time
		var timer *time.Timer
		if !active {
			stored, err := loadCheckpoint(ctx, p.pool, p.cfg.Name, p.scope)
			if err == nil && !stored.Less(pos) {
				return nil
			}
			timer = time.NewTimer(waitPollInterval)
			tick = timer.C
		}
		select {
		case <-changed:
		case <-tick:
		case <-ctx.Done():
			return fmt.Errorf("wait for projection %q to reach %+v (checkpoint %+v): %w", p.cfg.Name, pos, cp, ctx.Err())
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// jsonText encodes v as JSON text.
func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
