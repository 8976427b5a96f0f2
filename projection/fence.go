package projection

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// Fencing. The lease (a session advisory lock on the lease connection)
// decides which runner applies events, but a runner learns that it lost the
// lease only later: its lease connection may die, or a standby may take
// over, while a batch or a status write is in flight on a pool connection.
// So every write of the checkpoint or the status runs in a transaction
// that first
//
//   - checks that this runner's lease backend (by pid) still holds the
//     lock, and
//   - locks the projection's projection_status row and checks that this
//     runner is still its owner, the last one to have claimed it.
//
// A runner that takes the lease over claims the status row (owner = itself)
// before it reads the checkpoint, in one transaction. A claim waits for the
// row lock of a write of the previous owner in flight, and that write, if
// it comes after the claim, finds another owner and rolls back. So the
// writes of a runner that lost its lease either commit before the new
// owner's claim (and the new owner reads their checkpoint) or not at all;
// the checkpoint's compare-and-set alone would let a stale runner commit a
// batch (and the status after it) between a takeover and the new owner's
// first commit.

// leaseHeldSQL reports whether the backend with pid $1 holds the session
// advisory lock on key $2 (a bigint key shows in pg_locks as classid, the
// high half, objid, the low half, and objsubid 1).
const leaseHeldSQL = `EXISTS (SELECT 1 FROM pg_locks l
    WHERE l.pid = $PID AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::bigint = ((hashtextextended($KEY, 0) >> 32) & 4294967295)
      AND l.objid::bigint = (hashtextextended($KEY, 0) & 4294967295))`

var (
	fenceSQL = `SELECT s.owner = $3, ` + bind(leaseHeldSQL, "$4", "$5") + `
FROM projection_status s WHERE s.projection = $1 AND s.partition = $2
FOR UPDATE OF s`
	claimCheckSQL = `SELECT ` + bind(leaseHeldSQL, "$1", "$2")
)

func bind(sql, pid, key string) string {
	return strings.NewReplacer("$PID", pid, "$KEY", key).Replace(sql)
}

// fence checks in tx that this runner still holds the lease and owns the
// status row, which it locks until tx ends; it returns errLeaseLost when
// not.
func (p *Projection) fence(ctx context.Context, tx pgx.Tx) error {
	pid := p.leasePID.Load()
	if pid == 0 {
		return errLeaseLost
	}
	var owner, held bool
	err := tx.QueryRow(ctx, fenceSQL, p.fenceArgs(pid)...).Scan(&owner, &held)
	return fenceOutcome(err, owner, held)
}

func (p *Projection) fenceArgs(pid uint32) []any {
	return []any{p.cfg.Name, p.scope, p.owner, int32(pid), p.lockKey}
}

// fenceOutcome turns the result of fenceSQL into fence's error.
func fenceOutcome(err error, owner, held bool) error {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: no status row", errLeaseLost)
	case err != nil:
		return fmt.Errorf("check the lease: %w", err)
	case !held:
		return fmt.Errorf("%w: the lease connection no longer holds the lock", errLeaseLost)
	case !owner:
		return fmt.Errorf("%w: another runner has claimed the projection", errLeaseLost)
	}
	return nil
}

// fenceAndAdvance is fence followed by advanceCheckpoint, sent together in
// one round trip. The checkpoint update runs even when the fence fails,
// but then the error makes the caller roll tx back: nothing of a runner
// that lost its lease commits.
func (p *Projection) fenceAndAdvance(ctx context.Context, tx pgx.Tx, cp, next store.Position) error {
	pid := p.leasePID.Load()
	if pid == 0 {
		return errLeaseLost
	}
	b := &pgx.Batch{}
	b.Queue(fenceSQL, p.fenceArgs(pid)...)
	b.Queue(checkpointAdvanceSQL, p.advanceArgs(cp, next)...)
	br := tx.SendBatch(ctx, b)
	var owner, held bool
	ferr := fenceOutcome(br.QueryRow().Scan(&owner, &held), owner, held)
	tag, aerr := br.Exec()
	cerr := br.Close()
	switch {
	case ferr != nil:
		return ferr
	case aerr != nil:
		return fmt.Errorf("advance checkpoint: %w", aerr)
	case cerr != nil:
		return fmt.Errorf("advance checkpoint: %w", cerr)
	case tag.RowsAffected() != 1:
		return errCheckpointMoved
	}
	return nil
}

// fenced runs f in a transaction that starts with fence.
func (p *Projection) fenced(ctx context.Context, f func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if err := p.fence(ctx, tx); err != nil {
			return err
		}
		return f(tx)
	})
}

// claim makes this runner, which has just taken the lease, the owner of
// the projection: in one transaction it checks its lease backend holds the
// lock, records state as its own report (waiting for a write of the
// previous owner in flight to end), creates the checkpoint when missing
// and reads it.
func (p *Projection) claim(ctx context.Context, state State) (store.Position, error) {
	pid := p.leasePID.Load()
	if pid == 0 {
		return store.Position{}, errLeaseLost
	}
	var cp store.Position
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var held bool
		if err := tx.QueryRow(ctx, claimCheckSQL, int32(pid), p.lockKey).Scan(&held); err != nil {
			return fmt.Errorf("check the lease: %w", err)
		}
		if !held {
			return fmt.Errorf("%w: the lease connection no longer holds the lock", errLeaseLost)
		}
		if err := p.writeStatus(ctx, tx, state, nil); err != nil {
			return err
		}
		var err error
		cp, err = p.ensureCheckpointTx(ctx, tx)
		return err
	})
	return cp, err
}
