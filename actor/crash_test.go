package actor_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// The child process of TestProcessDiesMidBatch is this test binary run with
// TROUPE_CRASH_CHILD set: a host on the database in TROUPE_CRASH_DB sending
// one command with an id to each of 16 streams at once, through a store
// that reports each batch it sends and, in "after" mode, each batch
// PostgreSQL answered, then waits to be killed before any reply reaches the
// host.
const crashChildEnv = "TROUPE_CRASH_CHILD"

// crashStore wraps a PostgreSQL store: it tells the parent when a batch is
// sent and, in "after" mode, when it committed, and never returns it.
type crashStore struct {
	*postgres.Store
	mode    string
	out     *os.File
	mu      sync.Mutex
	once    sync.Once
	started chan struct{} // closed when the first append goes out
}

func (s *crashStore) appending() { s.once.Do(func() { close(s.started) }) }

func (s *crashStore) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	s.appending()
	return s.Store.AppendToStream(ctx, stream, events, opts)
}

func (s *crashStore) say(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintln(s.out, line)
}

func (s *crashStore) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	s.appending()
	s.say(fmt.Sprintf("SENT %d", len(appends)))
	out, err := s.Store.AppendBatch(ctx, appends)
	if s.mode == "after" {
		s.say(fmt.Sprintf("ANSWERED %d %v", len(appends), err))
		select {} // die here, before the host hears of the outcome
	}
	return out, err
}

// crashChild is the child process's whole run (see TestMain): it never
// returns; the parent kills it.
func crashChild(mode string) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	pool, err := pgxpool.New(ctx, os.Getenv("TROUPE_CRASH_DB"))
	if err != nil {
		fail(err)
	}
	pg, err := postgres.New(pool, nil)
	if err != nil {
		fail(err)
	}
	st := &crashStore{Store: pg, mode: mode, out: os.Stdout, started: make(chan struct{})}
	h, err := actor.New(st, &actor.Config{Logger: quietLogger(), AppendBatchesInFlight: 1})
	if err != nil {
		fail(err)
	}
	agg, err := actor.Register(h, counterKind())
	if err != nil {
		fail(err)
	}
	if err := h.Start(ctx); err != nil {
		fail(err)
	}
	// The first append goes alone (the others are sent once it is on its
	// way, however slow the machine); the other 15 gather behind it (one
	// batch in flight at a time) into one batch.
	for i := range crashStreams {
		go func() {
			_, _ = agg.Send(ctx, counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", i), By: i + 1},
				actor.SendOptions{CommandID: fmt.Sprintf("cmd-%d", i)})
		}()
		if i == 0 {
			<-st.started
		}
	}
	select {} // the parent kills us
}

const crashStreams = 16

// Must show: the process dies between sending a batch and its reply, once
// while PostgreSQL holds the batch (waiting for a lock: it commits or rolls
// back the whole batch afterwards, unseen by anyone) and once after
// PostgreSQL committed it. Every command is either wholly in the log or
// absent, and re-sending every command with its command id from a new host
// applies each exactly once.
func TestProcessDiesMidBatch(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"during", "after"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			url := pgtest.NewDatabase(t)
			pool, err := pgxpool.New(ctx, url)
			require.NoError(t, err)
			defer pool.Close()
			require.NoError(t, postgres.Migrate(ctx, pool))

			// "during": a trigger makes every insert into messages wait for
			// an advisory lock this test holds: lock 1 for stream s-0 (the
			// lone first append, let through once the others are queued
			// behind it), lock 2 for the others (the batch, held at
			// PostgreSQL, sent and unanswered, until the child is dead).
			var locks *pgxpool.Conn
			if mode == "during" {
				_, err := pool.Exec(ctx, `CREATE FUNCTION hold_appends() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(CASE WHEN NEW.stream_id = 's-0' THEN 1 ELSE 2 END);
    RETURN NEW;
END $$;
CREATE TRIGGER hold_appends BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION hold_appends();`)
				require.NoError(t, err)
				locks, err = pool.Acquire(ctx)
				require.NoError(t, err)
				defer locks.Release()
				_, err = locks.Exec(ctx, `SELECT pg_advisory_lock(1), pg_advisory_lock(2)`)
				require.NoError(t, err)
			}
			waiting := func() int {
				var n int
				_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n)
				return n
			}
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+mode, "TROUPE_CRASH_DB="+url)
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			cmd.Stderr = os.Stderr
			require.NoError(t, cmd.Start())
			lines := bufio.NewScanner(stdout)
			if mode == "during" {
				// s-0's append waits at PostgreSQL; the others queue behind
				// it in the host. Let s-0 through.
				require.Eventually(t, func() bool { return waiting() == 1 }, time.Minute, 5*time.Millisecond)
				time.Sleep(200 * time.Millisecond)
				_, err := locks.Exec(ctx, `SELECT pg_advisory_unlock(1)`)
				require.NoError(t, err)
			}
			parts := 0 // streams in the batch the child dies with
			for parts < 2 && lines.Scan() {
				want := "SENT %d"
				if mode == "after" {
					want = "ANSWERED %d"
				}
				_, _ = fmt.Sscanf(lines.Text(), want, &parts)
			}
			require.GreaterOrEqual(t, parts, 2, "the child sent a multi-stream batch")
			if mode == "during" {
				// The batch is at PostgreSQL, waiting for lock 2.
				require.Eventually(t, func() bool { return waiting() == 1 }, time.Minute, 5*time.Millisecond)
			}
			require.NoError(t, cmd.Process.Kill())
			_ = cmd.Wait()
			if locks != nil {
				_, err := locks.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
				require.NoError(t, err)
			}
			// Let PostgreSQL notice the dead connections.
			require.Eventually(t, func() bool {
				var n int
				_ = pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'`).Scan(&n)
				return n == 0
			}, time.Minute, 10*time.Millisecond)

			es, err := postgres.New(pool, nil)
			require.NoError(t, err)
			before := map[int]int{}
			for i := range crashStreams {
				events := readAll(t, es, "t", fmt.Sprintf("s-%d", i))
				require.LessOrEqual(t, len(events), 1, "a command's events are in the log once or not at all")
				before[i] = len(events)
			}
			stored := 0
			for i := range crashStreams {
				stored += before[i]
			}
			if mode == "during" {
				// PostgreSQL had received the whole batch (its statements
				// and its Sync) before the child died: it goes on once the
				// lock is free and commits it, or rolls all of it back. It
				// is one transaction: all of its parts or none.
				require.Equal(t, 1, before[0], "the lone append before the batch was stored")
				require.Contains(t, []int{1, 1 + parts}, stored, "the batch's %d parts are all in the log or none is", parts)
			} else {
				require.GreaterOrEqual(t, stored, parts, "the answered batch committed")
			}

			// A new host re-sends every command with its id: each is
			// applied once.
			_, agg := startHost(t, es, actor.Config{})
			for i := range crashStreams {
				res, err := agg.Send(ctx, counterCmd{Tenant: "t", Stream: fmt.Sprintf("s-%d", i), By: i + 1},
					actor.SendOptions{CommandID: fmt.Sprintf("cmd-%d", i)})
				require.NoError(t, err)
				require.Equal(t, before[i] == 1, res.Duplicate, "stream s-%d: a re-send is a duplicate exactly when the first send was stored", i)
				events := readAll(t, es, "t", fmt.Sprintf("s-%d", i))
				require.Len(t, events, 1, "stream s-%d holds its command's event once", i)
				require.JSONEq(t, fmt.Sprintf(`{"by":%d}`, i+1), string(events[0].Data))
			}
		})
	}
}
