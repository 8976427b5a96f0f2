package pgmembership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/store/postgres"
)

// heartbeatSQL is one heartbeat in one statement (one snapshot, one
// now()): it registers the member ($8) or refreshes its heartbeat, deletes
// the rows of members expired for longer than the TTL ($3 µs) when the
// member may expire others ($4) and, at registration, the rows of earlier
// processes at the member's address, and returns the database time,
// whether the member's own row was written, and every row of the cluster
// as it was before this statement, with whether each is live and whether
// this statement deleted it. A cluster without rows still returns one row
// (the member columns NULL). A client passes member id "" and false flags.
const heartbeatSQL = `WITH registered AS (
    INSERT INTO cluster_members (cluster, member_id, host, port, kinds)
    SELECT $1, $2, $5::text, $6::integer, $7::text[] WHERE $8::boolean
    ON CONFLICT (cluster, member_id) DO UPDATE
    SET host = EXCLUDED.host, port = EXCLUDED.port, kinds = EXCLUDED.kinds, heartbeat_at = now()
    RETURNING member_id
), beat AS (
    UPDATE cluster_members SET heartbeat_at = now()
    WHERE NOT $8::boolean AND cluster = $1 AND member_id = $2
    RETURNING member_id
), removed AS (
    DELETE FROM cluster_members
    WHERE cluster = $1 AND member_id <> $2
      AND (($4::boolean AND heartbeat_at < now() - $3::bigint * interval '1 microsecond')
           OR ($8::boolean AND host = $5::text AND port = $6::integer))
    RETURNING member_id
)
SELECT b.now, b.beat, m.member_id, m.host, m.port, m.kinds, m.heartbeat_at,
       m.heartbeat_at >= b.now - $3::bigint * interval '1 microsecond',
       m.member_id IN (SELECT member_id FROM removed)
FROM (SELECT now() AS now, EXISTS (SELECT FROM registered) OR EXISTS (SELECT FROM beat) AS beat) b
LEFT JOIN cluster_members m ON m.cluster = $1
ORDER BY m.member_id`

const leaveSQL = `DELETE FROM cluster_members WHERE cluster = $1 AND member_id = $2`

// row is one member as the table describes it.
type row struct {
	id, host  string
	port      int32
	kinds     []string
	heartbeat time.Time
	live      bool // heartbeat within the TTL
	removed   bool // deleted by this heartbeat
}

func (r row) same(o row) bool {
	return r.id == o.id && r.host == o.host && r.port == o.port && slices.Equal(r.kinds, o.kinds)
}

func (r row) addr() string { return fmt.Sprintf("%s:%d", r.host, r.port) }

// loop is the state of a provider's heartbeats; tick runs on one goroutine
// at a time (the start, then the provider's goroutine), leave after it.
type loop struct {
	db      postgres.DB
	cfg     Config
	cluster string
	self    *cluster.Member // nil for a client
	publish func(cluster.Members)
	logger  *slog.Logger

	registered bool      // the member's row was inserted
	lost       bool      // the member's row was found deleted by others
	published  bool      // a topology was published
	last       []row     // the members of the last published topology, by id
	failures   int       // consecutive failed heartbeats
	failedAt   time.Time // local time of the first of them
	// recoveredAt is when the first heartbeat after failures succeeded
	// (zero when none failed since the start): for one TTL after it the
	// member expires nobody.
	recoveredAt time.Time
}

func (l *loop) what() string {
	if l.self == nil {
		return "client"
	}
	return "member " + l.self.Id
}

// tick runs one heartbeat and publishes the topology. A failure is logged
// and publishes nothing.
func (l *loop) tick(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	rows, beat, err := l.heartbeat(ctx)
	if err != nil {
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return err // shutting down
		}
		l.failures++
		if l.failures == 1 {
			l.failedAt = time.Now()
		}
		l.logger.Warn("pgmembership: heartbeat failed; keeping the last known topology",
			slog.Int("consecutive_failures", l.failures), slog.Duration("failing_for", time.Since(l.failedAt)),
			slog.Any("error", err))
		return err
	}
	if l.failures > 0 {
		l.logger.Info("pgmembership: heartbeats recovered",
			slog.Int("failed_heartbeats", l.failures), slog.Duration("failed_for", time.Since(l.failedAt)))
		l.failures = 0
		l.recoveredAt = time.Now()
	}
	if l.self != nil {
		switch {
		case !l.registered && beat:
			l.registered = true
			l.logger.Info("pgmembership: member joined", slog.String("address", fmt.Sprintf("%s:%d", l.self.Host, l.self.Port)))
		case l.registered && !beat && !l.lost:
			l.lost = true
			l.logger.Error("pgmembership: this member's row was deleted by the other members after its heartbeats failed for longer than the TTL; " +
				"they no longer route to it and will not take it back: restart the process")
		}
	}
	for _, r := range rows {
		if r.removed {
			reason := "heartbeat older than the TTL"
			if l.self != nil && r.host == l.self.Host && r.port == l.self.Port {
				reason = "a new process holds its address"
			}
			l.logger.Info("pgmembership: removed member", slog.String("removed", r.id), slog.String("address", r.addr()),
				slog.Time("last_heartbeat", r.heartbeat), slog.String("reason", reason))
		}
	}
	l.update(rows)
	return nil
}

// update computes the topology from the rows and publishes it. A row
// deleted by this heartbeat is out; a live row is in; a stale row (one
// another member is deleting right now, or one kept through the grace
// after an outage, or any row for a client) is kept only if it was in the
// last topology: a member that leaves protoactor's topology is never let
// back in, so it must not leave on the strength of a stale read alone.
func (l *loop) update(rows []row) {
	var members []row
	if l.self != nil {
		members = append(members, row{id: l.self.Id, host: l.self.Host, port: l.self.Port, kinds: l.self.Kinds})
	}
	for _, r := range rows {
		if l.self != nil && r.id == l.self.Id || r.removed {
			continue
		}
		if r.live || slices.ContainsFunc(l.last, func(o row) bool { return o.id == r.id }) {
			members = append(members, r)
		}
	}
	slices.SortFunc(members, func(a, b row) int { return strings.Compare(a.id, b.id) })
	changed := !l.published || !slices.EqualFunc(members, l.last, row.same)
	l.published, l.last = true, members
	out := make(cluster.Members, len(members))
	ids := make([]string, len(members))
	for i, m := range members {
		out[i] = &cluster.Member{Id: m.id, Host: m.host, Port: m.port, Kinds: slices.Clone(m.kinds)}
		ids[i] = m.id + "@" + m.addr()
	}
	if changed {
		l.logger.Info("pgmembership: topology changed", slog.Int("members", len(members)), slog.Any("ids", ids))
	}
	// Published after every successful heartbeat, changed or not:
	// protoactor's member list ignores an unchanged list but applies its
	// block list (members its gossip found silent or gracefully gone) only
	// when handed one.
	l.publish(out)
}

// mayExpire reports whether this heartbeat may delete expired rows: a
// member that is not failing and not within one TTL of recovering.
func (l *loop) mayExpire() bool {
	return l.self != nil && l.failures == 0 && (l.recoveredAt.IsZero() || time.Since(l.recoveredAt) >= l.cfg.TTL)
}

// heartbeat runs heartbeatSQL and returns the cluster's rows and whether
// the member's own row was written.
func (l *loop) heartbeat(ctx context.Context) ([]row, bool, error) {
	var (
		id, host string
		port     int32
		kinds    []string
		register bool
	)
	if l.self != nil {
		id, host, port, kinds, register = l.self.Id, l.self.Host, l.self.Port, l.self.Kinds, !l.registered
		if kinds == nil {
			kinds = []string{}
		}
	}
	res, err := l.db.Query(ctx, heartbeatSQL, l.cluster, id, l.cfg.TTL.Microseconds(), l.mayExpire(),
		host, port, kinds, register)
	if err != nil {
		return nil, false, err
	}
	var (
		dbNow     time.Time
		beat      bool
		out       []row
		mid, mh   *string
		mport     *int32
		mkinds    []string
		mhb       *time.Time
		live, del *bool
	)
	_, err = pgx.ForEachRow(res, []any{&dbNow, &beat, &mid, &mh, &mport, &mkinds, &mhb, &live, &del}, func() error {
		if mid != nil {
			out = append(out, row{id: *mid, host: *mh, port: *mport, kinds: mkinds, heartbeat: *mhb, live: *live, removed: *del})
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, beat, nil
}

// leave deletes the member's row, also when no heartbeat saw it written
// (the insert may have committed with its answer lost); the delete is a
// no-op when there is none.
func (l *loop) leave(graceful bool) error {
	if l.self == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	if _, err := l.db.Exec(ctx, leaveSQL, l.cluster, l.self.Id); err != nil {
		return fmt.Errorf("pgmembership: member %s leaving cluster %s: delete its row: %w", l.self.Id, l.cluster, err)
	}
	l.logger.Info("pgmembership: member left", slog.Bool("graceful", graceful))
	return nil
}

// isAnswered reports whether err is the database refusing the statement
// for a reason retrying will not fix (a missing table or column, a refused
// permission: SQLSTATE class 42), rather than a connection failure or a
// timeout.
func isAnswered(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "42")
}
