package readmodel_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
)

type ticketOpened struct {
	Title string `json:"title"`
}
type ticketCommented struct{}
type ticketClosed struct{}
type ticketNotInCodec struct{}

type ticketState struct {
	Title    string `json:"title"`
	Comments int    `json:"comments"`
}

func ticketCodec() *store.JSONCodec {
	return store.NewJSONCodec().
		MustRegister("TicketOpened", ticketOpened{}).
		MustRegister("TicketCommented", ticketCommented{}).
		MustRegister("TicketClosed", ticketClosed{})
}

// ticketConfig is a read model of open tickets: closing a ticket deletes
// its row; opening it again starts a new row from the initial state.
func ticketConfig(storage readmodel.Storage, evolved *int) readmodel.Config[ticketState] {
	count := func() {
		if evolved != nil {
			*evolved++
		}
	}
	return readmodel.Config[ticketState]{
		Table:   "tickets",
		Storage: storage,
		Codec:   ticketCodec(),
		Evolvers: []readmodel.Evolver[ticketState]{
			readmodel.On(func(s ticketState, e ticketOpened, _ store.Event) (ticketState, error) {
				count()
				s.Title = e.Title
				return s, nil
			}),
			readmodel.On(func(s ticketState, _ ticketCommented, _ store.Event) (ticketState, error) {
				count()
				s.Comments++
				return s, nil
			}),
			readmodel.On(func(s ticketState, _ ticketClosed, _ store.Event) (ticketState, error) {
				count()
				return s, readmodel.Delete
			}),
		},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"ticket_id": string(e.StreamID), "partition": partition}, nil
		},
		Initial: func() ticketState { return ticketState{} },
		MapToColumns: func(s ticketState) map[string]any {
			return map[string]any{"title": s.Title, "comments": s.Comments}
		},
	}
}

func createTickets(t testing.TB, pool *pgxpool.Pool, storage readmodel.Storage) {
	t.Helper()
	sql := `CREATE TABLE tickets (ticket_id text NOT NULL, partition text NOT NULL, title text, comments int,
PRIMARY KEY (ticket_id, partition))`
	if storage == readmodel.InRow {
		sql = `CREATE TABLE tickets (ticket_id text NOT NULL, partition text NOT NULL, title text, comments int,
snapshot jsonb, stream_id text, last_stream_position bigint, last_global_position bigint, PRIMARY KEY (ticket_id, partition))`
	}
	_, err := pool.Exec(projtest.Ctx(t), sql)
	require.NoError(t, err)
}

func appendTicket(t testing.TB, es store.EventStore, id string, events ...any) store.AppendResult {
	t.Helper()
	data, err := store.Encode(ticketCodec(), events...)
	require.NoError(t, err)
	res, err := es.AppendToStream(projtest.Ctx(t), store.StreamID(id), data, store.AppendOptions{Partition: "t1"})
	require.NoError(t, err)
	return res
}

type ticketRow struct {
	Title    string
	Comments int
}

func readTickets(t testing.TB, pool *pgxpool.Pool) map[string]ticketRow {
	t.Helper()
	rows, err := pool.Query(projtest.Ctx(t), `SELECT ticket_id, title, comments FROM tickets`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
		id string
		ticketRow
	}, error) {
		var v struct {
			id string
			ticketRow
		}
		err := r.Scan(&v.id, &v.Title, &v.Comments)
		return v, err
	})
	require.NoError(t, err)
	m := map[string]ticketRow{}
	for _, v := range out {
		m[v.id] = v.ticketRow
	}
	return m
}

// TestReadModelTypedEvolversAndDelete: typed evolvers get decoded events;
// an evolver returning readmodel.Delete deletes the row, an event at or
// before the deleted row's position is still skipped (the row is not
// brought back), and a later event of the stream writes the row again from
// the initial state. Through the per-event Handler (one event per
// transaction) and as a batch handler of a continuous projection, where a
// ticket is closed and reopened within one batch.
func TestReadModelTypedEvolversAndDelete(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			testTypedEvolversAndDelete(t, storage)
		})
	}
}

func testTypedEvolversAndDelete(t *testing.T, storage readmodel.Storage) {
	t.Run("handler", func(t *testing.T) {
		t.Parallel()
		pool, es := projtest.NewDB(t)
		ctx := projtest.Ctx(t)
		createTickets(t, pool, storage)
		evolved := 0
		rm, err := readmodel.New(new(ticketConfig(storage, &evolved)))
		require.NoError(t, err)
		require.Len(t, rm.Registry(), 3)
		r, err := perstream.New(pool, &perstream.Config{Registry: rm.Registry()})
		require.NoError(t, err)
		drain := func() {
			t.Helper()
			_, err := r.Drain(ctx, "tickets", "k-1", perstream.ProjectOptions{Partition: "t1", BatchSize: 1})
			require.NoError(t, err)
		}

		appendTicket(t, es, "k-1", ticketOpened{Title: "printer"}, ticketCommented{}, ticketCommented{})
		drain()
		require.Equal(t, map[string]ticketRow{"k-1": {"printer", 2}}, readTickets(t, pool))

		appendTicket(t, es, "k-1", ticketClosed{})
		drain()
		require.Empty(t, readTickets(t, pool), "closing the ticket deletes its row")
		var pos int64
		var snap string
		require.NoError(t, pool.QueryRow(ctx, `SELECT last_stream_position, snapshot::text FROM snapshots
WHERE readmodel_table_name = 'tickets' AND stream_id = 'partition:t1|ticket_id:k-1'`).Scan(&pos, &snap))
		require.EqualValues(t, 4, pos, "the deleted row's position is kept")
		require.Equal(t, "null", snap)

		// Replaying the earlier events changes nothing: they are at or
		// before the kept position.
		before := evolved
		events := projtest.ReadAllEvents(t, pool, es, "t1")
		h := rm.Handler()
		require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error {
			for _, e := range events {
				if err := h(ctx, tx, e); err != nil {
					return err
				}
			}
			return nil
		}))
		require.Equal(t, before, evolved)
		require.Empty(t, readTickets(t, pool))

		appendTicket(t, es, "k-1", ticketCommented{}, ticketOpened{Title: "scanner"})
		drain()
		require.Equal(t, map[string]ticketRow{"k-1": {"scanner", 1}}, readTickets(t, pool),
			"the row comes back from the initial state, not from the state before the delete")
	})
	t.Run("batch", func(t *testing.T) {
		t.Parallel()
		pool, es := projtest.NewDB(t)
		createTickets(t, pool, storage)
		rm, err := readmodel.New(new(ticketConfig(storage, nil)))
		require.NoError(t, err)
		appendTicket(t, es, "k-1", ticketOpened{Title: "a"}, ticketCommented{}, ticketClosed{}, ticketOpened{Title: "b"})
		appendTicket(t, es, "k-2", ticketOpened{Title: "c"}, ticketCommented{})
		res := appendTicket(t, es, "k-3", ticketOpened{Title: "d"}, ticketClosed{})
		cfg := projtest.FastConfig("tickets")
		cfg.BatchHandlers = []projection.BatchHandler{rm}
		p := projtest.NewProjection(t, pool, cfg)
		projtest.Start(t, p)
		projtest.WaitFor(t, p, res.LastPosition())
		require.Equal(t, map[string]ticketRow{"k-1": {"b", 0}, "k-2": {"c", 1}}, readTickets(t, pool))

		// Later batches: delete a row the cache holds, then bring it back.
		res = appendTicket(t, es, "k-2", ticketClosed{})
		projtest.WaitFor(t, p, res.LastPosition())
		require.Equal(t, map[string]ticketRow{"k-1": {"b", 0}}, readTickets(t, pool))
		res = appendTicket(t, es, "k-2", ticketOpened{Title: "e"})
		projtest.WaitFor(t, p, res.LastPosition())
		require.Equal(t, map[string]ticketRow{"k-1": {"b", 0}, "k-2": {"e", 0}}, readTickets(t, pool))

		// A rebuild folds the same rows from scratch.
		require.NoError(t, p.Rebuild(projtest.Ctx(t), projection.RebuildOptions{}))
		require.Equal(t, map[string]ticketRow{"k-1": {"b", 0}, "k-2": {"e", 0}}, readTickets(t, pool))
		var kept int
		require.NoError(t, pool.QueryRow(projtest.Ctx(t), `SELECT count(*) FROM snapshots WHERE readmodel_table_name = 'tickets'`).Scan(&kept))
		if storage == readmodel.InRow {
			require.Equal(t, 1, kept, "after the rebuild, only k-3's deleted row keeps a position")
		} else {
			require.Equal(t, 3, kept)
		}
	})
}

// TestReadModelTypedConfigErrors: the Go types come from the evolvers, so
// a type the codec does not know is a configuration error naming it; so
// is mixing Evolvers with EventTypes or Evolve, a missing codec, a nil or
// a duplicate evolver.
func TestReadModelTypedConfigErrors(t *testing.T) {
	t.Parallel()
	check := func(mutate func(c *readmodel.Config[ticketState]), want ...string) {
		t.Helper()
		cfg := ticketConfig(readmodel.InTable, nil)
		mutate(&cfg)
		_, err := readmodel.New(&cfg)
		require.ErrorIs(t, err, projection.ErrInvalidConfig)
		for _, w := range want {
			require.ErrorContains(t, err, w)
		}
	}
	check(func(c *readmodel.Config[ticketState]) {
		c.Evolvers = append(c.Evolvers, readmodel.On(func(s ticketState, _ ticketNotInCodec, _ store.Event) (ticketState, error) { return s, nil }))
	}, "readmodel.Config.Evolvers[3]", "readmodel_test.ticketNotInCodec is not registered in the codec")
	check(func(c *readmodel.Config[ticketState]) { c.Codec = nil }, "readmodel.Config.Codec is nil")
	check(func(c *readmodel.Config[ticketState]) { c.EventTypes = []string{"TicketOpened"} }, "readmodel.Config.EventTypes is set together with Evolvers")
	check(func(c *readmodel.Config[ticketState]) {
		c.Evolve = func(s ticketState, _ store.Event) (ticketState, error) { return s, nil }
	}, "readmodel.Config.Evolve is set together with Evolvers")
	check(func(c *readmodel.Config[ticketState]) { c.Evolvers = append(c.Evolvers, nil) }, "readmodel.Config.Evolvers[3] is nil")
	check(func(c *readmodel.Config[ticketState]) { c.Evolvers = append(c.Evolvers, c.Evolvers[0]) },
		"readmodel.Config.Evolvers[3]: a second evolver for readmodel_test.ticketOpened")

	_, err := readmodel.New(&readmodel.Config[ticketState]{Table: "t", ExtractKeys: ticketConfig(readmodel.InTable, nil).ExtractKeys,
		Initial: func() ticketState { return ticketState{} }})
	require.ErrorContains(t, err, "readmodel.Config.EventTypes is empty")
}

// TestTypedReadModelUpcastsGapsWithItsCodec: a typed read model's codec is
// also the upcaster of the events it reads itself. The batch holds only a
// ticket's second event; its first, written under the type's old name,
// is read from the messages table and renamed by the codec without
// Config.Upcaster being set, so the row gets its title.
func TestTypedReadModelUpcastsGapsWithItsCodec(t *testing.T) {
	t.Parallel()
	for _, storage := range projtest.Storages {
		t.Run(storage.String(), func(t *testing.T) {
			t.Parallel()
			testRenamedTicket(t, storage, 2)
		})
	}
}

// TestTypedReadModelUpcastsBatchesOfAPlainStore: from a store without an
// Upcaster the batch holds events as stored; the read model's codec
// upcasts them before choosing the evolvers, so an event stored under a
// type's old name is applied under its new one, in the batch as in a gap.
func TestTypedReadModelUpcastsBatchesOfAPlainStore(t *testing.T) {
	t.Parallel()
	testRenamedTicket(t, readmodel.InRow, 1)
}

// testRenamedTicket writes a ticket whose first event is stored under the
// type's old name through a store without an Upcaster, hands the read
// model a batch of its events from position from, and checks the row.
func testRenamedTicket(t *testing.T, storage readmodel.Storage, from store.Version) {
	pool, raw := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	createTickets(t, pool, storage)
	cfg := ticketConfig(storage, nil)
	cfg.Codec = ticketCodec().MustRegisterRename("TicketStarted", "TicketOpened")
	rm, err := readmodel.New(&cfg)
	require.NoError(t, err)
	_, err = raw.AppendToStream(ctx, "t-1", []store.EventData{
		{Type: "TicketStarted", Data: []byte(`{"title":"printer on fire"}`)},
		{Type: "TicketCommented", Data: []byte(`{}`)},
	}, store.AppendOptions{Partition: "t1"})
	require.NoError(t, err)
	res, err := raw.ReadStream(ctx, "t-1", store.ReadOptions{From: from, Partition: "t1"})
	require.NoError(t, err)
	require.Len(t, res.Events, int(3-from))
	if from == 1 {
		require.Equal(t, "TicketStarted", res.Events[0].Type, "the plain store hands the event over as stored")
	}
	require.NoError(t, inTx(t, pool, func(tx pgx.Tx) error { return rm.HandleBatch(ctx, tx, res.Events) }))
	require.Equal(t, map[string]ticketRow{"t-1": {Title: "printer on fire", Comments: 1}}, readTickets(t, pool))
}
