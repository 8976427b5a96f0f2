package actor_test

import (
	"context"
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
	pool := pgtest.NewPool(t)
	require.NoError(t, postgres.Migrate(ctx, pool))
	inner, err := postgres.New(pool, &postgres.Config{Logger: quietLogger()})
	require.NoError(t, err)
	keys, err := postgres.NewKeyStore(pool, nil)
	require.NoError(t, err)
	k := profileKind()
	sh, err := shred.New(keys, &shred.Config{Codec: k.Codec, Events: []any{NameSet{}}})
	require.NoError(t, err)
	st := sh.Wrap(inner)

	host := func() *actor.Aggregate[profileCmd, NameSet, profile] {
		h, err := actor.New(st, &actor.Config{Logger: quietLogger()})
		require.NoError(t, err)
		agg, err := actor.Register(h, k)
		require.NoError(t, err)
		require.NoError(t, h.Start(ctx))
		t.Cleanup(func() { require.NoError(t, h.Stop(context.Background())) })
		return agg
	}
	agg := host()
	for _, name := range []string{"Ada Byron", "Ada Lovelace"} {
		_, err := agg.Send(ctx, profileCmd{User: "ada", Name: name})
		require.NoError(t, err)
	}
	_, err = agg.Send(ctx, profileCmd{User: "grace", Name: "Grace Hopper"})
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

func countPlaintext(t testing.TB, pool *pgxpool.Pool, values ...string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM messages m WHERE EXISTS (
		SELECT FROM unnest($1::text[]) v WHERE strpos(m.message_data::text, v) > 0)`, values).Scan(&n))
	return n
}
