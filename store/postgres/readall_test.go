package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

func ids(evs []store.Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.MessageID)
	}
	return out
}

// Transaction A takes a global position and stays open; B appends later
// and commits. While A is open the global read returns neither (B's event
// would let a checkpoint pass A's); once A commits, A's event comes before
// B's, also when reading from the checkpoint taken while A was open.
func TestReadAllOutOfOrderCommit(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	_, err := s.AppendToStream(ctx, "c", withIDs("c", events("E", 1)), store.AppendOptions{})
	require.NoError(t, err)
	waitFor(t, "the first event in the global log", func() bool {
		res, err := s.ReadAll(ctx, store.ReadAllOptions{})
		require.NoError(t, err)
		return len(res.Events) == 1
	})

	txA, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = txA.Rollback(context.WithoutCancel(ctx)) }()
	resA, err := s.WithTx(txA).AppendToStream(ctx, "a", withIDs("a", events("E", 1)), store.AppendOptions{})
	require.NoError(t, err)
	resB, err := s.AppendToStream(ctx, "b", withIDs("b", events("E", 1)), store.AppendOptions{})
	require.NoError(t, err)
	require.Less(t, resA.LastGlobalPosition, resB.LastGlobalPosition)
	require.Less(t, resA.TransactionID, resB.TransactionID)

	// Committed B is there (a plain read of the table sees it) ...
	var visible int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE message_id = 'b-1'`).Scan(&visible))
	require.Equal(t, 1, visible)
	// ... but the global read holds it back while A is in flight.
	var checkpoint store.Position
	for _, opts := range []store.ReadAllOptions{{}, {Partition: "default_partition"}, {Types: []string{"E"}}} {
		res := readAllSettled(t, s, opts, []string{"c-1"})
		checkpoint = res.Next
	}
	// A's own transaction doesn't read its uncommitted event either.
	res, err := s.WithTx(txA).ReadAll(ctx, store.ReadAllOptions{After: checkpoint})
	require.NoError(t, err)
	require.Empty(t, res.Events)

	require.NoError(t, txA.Commit(ctx))
	var after []store.Event
	waitFor(t, "A's and B's events in the global log", func() bool {
		res, err := s.ReadAll(ctx, store.ReadAllOptions{After: checkpoint})
		require.NoError(t, err)
		after = res.Events
		return len(after) >= 2
	})
	require.Equal(t, []string{"a-1", "b-1"}, ids(after))
	require.Equal(t, resA.LastPosition(), after[0].Position())
	require.Equal(t, resB.LastPosition(), after[1].Position())
	readAllSettled(t, s, store.ReadAllOptions{}, []string{"c-1", "a-1", "b-1"})
}

// readAllSettled reads one page with opts until its events are want, and
// returns it. A read that has returned an event may briefly hold it back
// again (another database's older transaction that finishes during the
// read counts as in flight for it), so a page short of want's tail is read
// again; any other page fails.
func readAllSettled(t *testing.T, s store.EventStore, opts store.ReadAllOptions, want []string) store.ReadAllResult {
	t.Helper()
	var res store.ReadAllResult
	waitFor(t, fmt.Sprintf("%v in the global log after %+v", want, opts), func() bool {
		var err error
		res, err = s.ReadAll(t.Context(), opts)
		require.NoError(t, err)
		got := ids(res.Events)
		require.True(t, len(got) <= len(want) && slices.Equal(got, want[:len(got)]),
			"read all after %+v returned %v: not the start of %v", opts, got, want)
		return len(got) == len(want)
	})
	return res
}

// An open writing transaction in another database of the same server does
// not hold back this database's global log.
func TestReadAllIgnoresOtherDatabases(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	other, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer other.Close(context.WithoutCancel(ctx))
	tx, err := other.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var xid uint64
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&xid)) // takes an xid and keeps it

	res, err := s.AppendToStream(ctx, "s", withIDs("s", events("E", 1)), store.AppendOptions{})
	require.NoError(t, err)
	require.Greater(t, res.TransactionID, xid)
	var got []string
	waitFor(t, "the event in the global log", func() bool {
		all, err := s.ReadAll(ctx, store.ReadAllOptions{})
		require.NoError(t, err)
		got = ids(all.Events)
		return len(got) > 0
	})
	require.Equal(t, []string{"s-1"}, got)
}

// Partition and type filters, limits and archived streams.
func TestReadAllFiltersAndArchive(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	appendOne := func(stream store.StreamID, partition, typ, id string) {
		t.Helper()
		_, err := s.AppendToStream(ctx, stream, []store.EventData{{Type: typ, Data: json.RawMessage(`{}`), MessageID: id}},
			store.AppendOptions{Partition: partition, StreamType: "kind-" + string(stream)})
		require.NoError(t, err)
	}
	appendOne("x", "p1", "A", "1")
	appendOne("y", "p2", "B", "2")
	appendOne("x", "p1", "B", "3")
	appendOne("z", "p1", "A", "4")
	appendOne("y", "p2", "A", "5")
	require.NoError(t, s.ArchiveStream(ctx, "z", store.ArchiveOptions{Partition: "p1"}))

	var all store.ReadAllResult
	waitFor(t, "the global log", func() bool {
		var err error
		all, err = s.ReadAll(ctx, store.ReadAllOptions{})
		require.NoError(t, err)
		return len(all.Events) == 4
	})
	require.Equal(t, []string{"1", "2", "3", "5"}, ids(all.Events))
	require.Equal(t, "kind-y", all.Events[1].StreamType)
	require.Equal(t, "p2", all.Events[1].Partition)
	for _, tc := range []struct {
		opts store.ReadAllOptions
		want []string
	}{
		{store.ReadAllOptions{Partition: "p1"}, []string{"1", "3"}},
		{store.ReadAllOptions{Partition: "p2", Types: []string{"A"}}, []string{"5"}},
		{store.ReadAllOptions{Types: []string{"B", "nope"}}, []string{"2", "3"}},
		{store.ReadAllOptions{Limit: 2}, []string{"1", "2"}},
		{store.ReadAllOptions{After: all.Events[1].Position(), Limit: 1}, []string{"3"}},
		{store.ReadAllOptions{Partition: "p3"}, []string{}},
	} {
		res := readAllSettled(t, s, tc.opts, tc.want)
		if len(res.Events) == 0 {
			require.Equal(t, tc.opts.After, res.Next)
		} else {
			require.Equal(t, res.Events[len(res.Events)-1].Position(), res.Next)
		}
	}
}

// listen opens a connection listening on postgres.NotifyChannel.
func listen(t *testing.T, pool *pgxpool.Pool) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(t.Context(), pool.Config().ConnConfig.Copy())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(t.Context(), "LISTEN "+pgx.Identifier{postgres.NotifyChannel}.Sanitize())
	require.NoError(t, err)
	return conn
}

type notification struct {
	Partition      string               `json:"partition"`
	GlobalPosition store.GlobalPosition `json:"globalPosition"`
}

func nextNotification(t *testing.T, conn *pgx.Conn) notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	require.NoError(t, err)
	require.Equal(t, postgres.NotifyChannel, n.Channel)
	var got notification
	require.NoError(t, json.Unmarshal([]byte(n.Payload), &got), "payload %q", n.Payload)
	return got
}

// Every append notifies NotifyChannel when its transaction commits, with
// its partition and last global position.
func TestAppendNotifies(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	conn := listen(t, pool)

	res, err := s.AppendToStream(ctx, "s", events("E", 3), store.AppendOptions{Partition: "tenant-n"})
	require.NoError(t, err)
	require.Equal(t, notification{"tenant-n", res.LastGlobalPosition}, nextNotification(t, conn))

	// An append in an open transaction notifies at its commit: a later
	// append that commits first is heard first.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	resA, err := s.WithTx(tx).AppendToStream(ctx, "a", events("E", 1), store.AppendOptions{})
	require.NoError(t, err)
	resB, err := s.AppendToStream(ctx, "b", events("E", 1), store.AppendOptions{})
	require.NoError(t, err)
	require.Equal(t, notification{"default_partition", resB.LastGlobalPosition}, nextNotification(t, conn))
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, notification{"default_partition", resA.LastGlobalPosition}, nextNotification(t, conn))

	// A rolled-back append never notifies: the next one heard is the
	// append after it.
	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	_, err = s.WithTx(tx).AppendToStream(ctx, "rolled-back", events("E", 1), store.AppendOptions{})
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	resC, err := s.AppendToStream(ctx, "c", events("E", 1), store.AppendOptions{})
	require.NoError(t, err)
	require.Equal(t, notification{"default_partition", resC.LastGlobalPosition}, nextNotification(t, conn))
}
