package actor_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/store/shred"
)

// A profile aggregate whose events carry a personal value.

type profileCmd struct {
	User, Name string
}

type NameSet struct {
	User string `json:"user" troupe:"subject"`
	Name string `json:"name" troupe:"personal"`
}

type profile struct {
	Name string
	Sets int
}

func profileKind() actor.Kind[profileCmd, NameSet, profile] {
	return actor.Kind[profileCmd, NameSet, profile]{
		Name: "profile",
		Decider: decider.Decider[profileCmd, NameSet, profile]{
			Decide: func(c profileCmd, _ profile) ([]NameSet, error) {
				return []NameSet{{User: c.User, Name: c.Name}}, nil
			},
			Evolve:       func(s profile, e NameSet) profile { return profile{Name: e.Name, Sets: s.Sets + 1} },
			InitialState: func() profile { return profile{} },
		},
		Route: func(c profileCmd) (string, store.StreamID) { return "", store.StreamID("profile-" + c.User) },
		Codec: store.NewJSONCodec().MustRegister("NameSet", NameSet{}),
	}
}

// TestHostOnShreddedStore: the host appends through the wrapper (its group
// commit included) and replays through it: the state of a cold actor is
// decrypted, and after the subject is forgotten it is rebuilt redacted;
// a command adding personal data for the forgotten subject fails, writing
// nothing.
func TestHostOnShreddedStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, inner, sh, host := shreddedProfiles(t, profileKind(), nil)
	agg := host()
	for _, name := range []string{"Ada Byron", "Ada Lovelace"} {
		_, err := agg.Send(ctx, profileCmd{User: "ada", Name: name})
		require.NoError(t, err)
	}
	_, err := agg.Send(ctx, profileCmd{User: "grace", Name: "Grace Hopper"})
	require.NoError(t, err)
	require.Zero(t, countPlaintext(t, pool, "Ada", "Grace"))

	cold := host() // a second host: its actors replay the streams
	s, v, err := cold.State(ctx, "", "profile-ada")
	require.NoError(t, err)
	require.Equal(t, profile{Name: "Ada Lovelace", Sets: 2}, s)
	require.EqualValues(t, 2, v)

	require.NoError(t, sh.Forget(ctx, "", "ada"))
	s, _, err = host().State(ctx, "", "profile-ada")
	require.NoError(t, err)
	require.Equal(t, profile{Name: "", Sets: 2}, s, "replayed redacted")
	s, _, err = host().State(ctx, "", "profile-grace")
	require.NoError(t, err)
	require.Equal(t, "Grace Hopper", s.Name)

	_, err = cold.Send(ctx, profileCmd{User: "ada", Name: "Ada King"})
	require.ErrorIs(t, err, shred.ErrSubjectForgotten)
	read, err := inner.ReadStream(ctx, "profile-ada", store.ReadOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 2, read.CurrentVersion, "nothing was written")
}

// shreddedProfiles is a migrated database, its PostgreSQL store, a
// Shredder of profile events keyed in it (with snapshotSubject as its
// Config.SnapshotSubject), and a function starting a host of kind k on the
// wrapped store, stopped when the test ends.
func shreddedProfiles(t *testing.T, k actor.Kind[profileCmd, NameSet, profile],
	snapshotSubject func(partition string, stream store.StreamID, name string) (string, bool),
) (*pgxpool.Pool, *postgres.Store, *shred.Shredder, func() *actor.Aggregate[profileCmd, NameSet, profile]) {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, pool))
	inner, err := postgres.New(pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	keys, err := postgres.NewKeyStore(pool, nil)
	require.NoError(t, err)
	sh, err := shred.New(keys, &shred.Config{Codec: k.Codec, Events: []any{NameSet{}}, SnapshotSubject: snapshotSubject})
	require.NoError(t, err)
	st := sh.Wrap(inner)
	return pool, inner, sh, func() *actor.Aggregate[profileCmd, NameSet, profile] {
		h, err := actor.New(st, &actor.Config{Logger: quietLogger()})
		require.NoError(t, err)
		agg, err := actor.Register(h, k)
		require.NoError(t, err)
		require.NoError(t, h.Start(ctx))
		t.Cleanup(func() { require.NoError(t, h.Stop(context.Background())) })
		return agg
	}
}

func countPlaintext(t testing.TB, pool *pgxpool.Pool, values ...string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM messages m WHERE EXISTS (
		SELECT FROM unnest($1::text[]) v WHERE strpos(m.message_data::text, v) > 0)`, values).Scan(&n))
	return n
}

// TestHostSnapshotsEncrypted: with shred.Config.SnapshotSubject, aggregate
// snapshots hold no personal value in clear; a cold actor loads them
// decrypted; after the subject is forgotten its snapshot is ignored, so
// the state is replayed redacted rather than carried forward.
func TestHostSnapshotsEncrypted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := profileKind()
	k.Snapshot = &actor.SnapshotConfig[profile]{Every: 1}
	pool, inner, sh, host := shreddedProfiles(t, k, func(_ string, stream store.StreamID, _ string) (string, bool) {
		user, ok := strings.CutPrefix(string(stream), "profile-")
		return user, ok
	})
	agg := host()
	for _, name := range []string{"Ada Byron", "Ada Lovelace"} {
		_, err := agg.Send(ctx, profileCmd{User: "ada", Name: name})
		require.NoError(t, err)
	}
	eventually(t, "the snapshot at version 2 is saved", func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM aggregate_snapshots WHERE stream_id = 'profile-ada' AND stream_version = 2`).Scan(&n))
		return n == 1
	})
	var plain int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM aggregate_snapshots s WHERE strpos(s::text, 'Ada') > 0`).Scan(&plain))
	require.Zero(t, plain, "the snapshot holds no personal value in clear")
	sp, ok := sh.Wrap(inner).(store.SnapshotStore) // the store the hosts run on
	require.True(t, ok)
	snap, found, err := sp.LoadSnapshot(ctx, "", "profile-ada", "profile")
	require.NoError(t, err)
	require.True(t, found)
	require.JSONEq(t, `{"Name":"Ada Lovelace","Sets":2}`, string(snap.State))

	require.NoError(t, sh.Forget(ctx, "", "ada"))
	_, found, err = sp.LoadSnapshot(ctx, "", "profile-ada", "profile")
	require.NoError(t, err)
	require.False(t, found, "a forgotten subject's snapshot loads as missing")
	s, v, err := host().State(ctx, "", "profile-ada")
	require.NoError(t, err)
	require.Equal(t, profile{Name: "", Sets: 2}, s, "replayed redacted, not carried forward from the snapshot")
	require.EqualValues(t, 2, v)
	// A snapshot of the forgotten subject is not saved.
	require.NoError(t, sp.SaveSnapshot(ctx, store.Snapshot{Stream: "profile-ada", Name: "profile", Version: 3, State: []byte(`{"Name":"Ada King"}`)}))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM aggregate_snapshots s WHERE strpos(s::text, 'Ada') > 0 OR stream_version = 3`).Scan(&plain))
	require.Zero(t, plain)
}
