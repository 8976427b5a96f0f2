package perstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/internal/projtest"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// A stream archived and started again with the same id is projected from
// its first event, shorter or longer than the old one, and a snapshot read
// model fed by the runner holds the new stream's fold only.
func TestRunnerRestartsARecreatedStream(t *testing.T) {
	t.Parallel()
	pool, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	projtest.CreateCartTable(t, pool, "carts", readmodel.InRow)
	rm := projtest.CartProjection(t, "carts", readmodel.InRow, nil)
	rec := &recorder{}
	registry := rm.Registry()
	registry[projtest.TypeAdded] = append(registry[projtest.TypeAdded], rec.handler("h"))
	r, err := perstream.New(pool, &perstream.Config{Registry: registry})
	require.NoError(t, err)
	opts := perstream.ProjectOptions{Partition: "tenant-a"}

	for _, c := range []struct {
		cart     string
		old, new int // number of ItemAdded events
	}{{"shorter", 3, 1}, {"longer", 1, 3}} {
		added := func(n int, sku string) []store.EventData {
			evs := []store.EventData{projtest.CartEvent(projtest.TypeOpened, c.cart, "", 0)}
			for range n {
				evs = append(evs, projtest.CartEvent(projtest.TypeAdded, c.cart, sku, 1))
			}
			return evs
		}
		projtest.AppendCart(t, es, "tenant-a", c.cart, added(c.old, "old")...)
		res, err := r.Drain(ctx, "sub", store.StreamID(c.cart), opts)
		require.NoError(t, err)
		require.EqualValues(t, c.old+1, res.Checkpoint)
		require.False(t, res.Restarted)

		require.NoError(t, es.ArchiveStream(ctx, store.StreamID(c.cart), store.ArchiveOptions{Partition: "tenant-a"}))
		projtest.AppendCart(t, es, "tenant-a", c.cart, added(c.new, "new")...)
		rec.calls = nil
		res, err = r.Drain(ctx, "sub", store.StreamID(c.cart), opts)
		require.NoError(t, err, c.cart)
		require.True(t, res.Restarted, c.cart)
		require.Equal(t, c.new+1, res.Processed, "%s: every event of the new stream", c.cart)
		require.EqualValues(t, c.new+1, res.Checkpoint)
		var want []string
		for i := range c.new {
			want = append(want, "h:ItemAdded@"+string(rune('2'+i)))
		}
		require.Equal(t, want, rec.got(), c.cart)
		got := projtest.ReadCarts(t, pool, "carts", readmodel.InRow)["tenant-a/"+c.cart]
		require.Equal(t, projtest.CartState{Open: true, Items: map[string]int{"new": c.new}, Applied: c.new + 1}, got.State, c.cart)

		// Caught up: nothing more.
		res, err = r.ProjectEvents(ctx, "sub", store.StreamID(c.cart), opts)
		require.NoError(t, err)
		require.Zero(t, res.Processed)
		require.False(t, res.Restarted)
	}
}

// With Config.RowLevelSecurity the runner works as an application role
// under row-level security (it fails closed without it).
func TestRunnerRowLevelSecurity(t *testing.T) {
	t.Parallel()
	owner, es := projtest.NewDB(t)
	ctx := projtest.Ctx(t)
	mgr, err := tenancy.NewManager(owner, &tenancy.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	for _, id := range []store.TenantID{"tenant-a", "tenant-b"} {
		_, _, err := mgr.Create(ctx, id, "")
		require.NoError(t, err)
	}
	require.NoError(t, postgres.EnableRowLevelSecurity(ctx, owner))
	app := appRolePool(t, owner)
	projtest.AppendCart(t, es, "tenant-a", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0), projtest.CartEvent(projtest.TypeAdded, "c1", "x", 1))
	projtest.AppendCart(t, es, "tenant-b", "c1", projtest.CartEvent(projtest.TypeOpened, "c1", "", 0))

	rec := &recorder{}
	registry := projection.Registry{projtest.TypeAdded: {rec.handler("h")}}
	unscoped, err := perstream.New(app, &perstream.Config{Registry: registry})
	require.NoError(t, err)
	_, err = unscoped.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{Partition: "tenant-a"})
	require.Error(t, err, "without a tenant the application role may not write checkpoints")

	r, err := perstream.New(app, &perstream.Config{Registry: registry, RowLevelSecurity: true})
	require.NoError(t, err)
	res, err := r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{Partition: "tenant-a"})
	require.NoError(t, err)
	require.Equal(t, 2, res.Processed)
	require.Equal(t, []string{"h:ItemAdded@2"}, rec.got())
	res, err = r.ProjectEvents(ctx, "sub", "c1", perstream.ProjectOptions{Partition: "tenant-b"})
	require.NoError(t, err)
	require.Equal(t, 1, res.Processed)
	for _, part := range []string{"tenant-a", "tenant-b"} {
		pos, ok := streamCheckpoint(t, owner, "sub", part, "c1")
		require.True(t, ok, part)
		require.Positive(t, pos, part)
	}
}

// appRolePool creates a role that owns nothing and has no BYPASSRLS, with
// the grants an application has, and returns a pool connected as it.
func appRolePool(t *testing.T, owner *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	ctx := projtest.Ctx(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	role := "troupe_app_" + hex.EncodeToString(b)
	ident := pgx.Identifier{role}.Sanitize()
	_, err := owner.Exec(ctx, `CREATE ROLE `+ident+` LOGIN PASSWORD 'app-secret' NOSUPERUSER NOBYPASSRLS;
		GRANT USAGE ON SCHEMA public TO `+ident+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+ident+`;
		GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO `+ident)
	require.NoError(t, err)
	cfg := owner.Config().Copy()
	cfg.ConnConfig.User = role
	cfg.ConnConfig.Password = "app-secret"
	cfg.MaxConns = 4
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		app.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := owner.Exec(ctx, `DROP OWNED BY `+ident+`; DROP ROLE `+ident)
		assert.NoError(t, err)
	})
	return app
}
