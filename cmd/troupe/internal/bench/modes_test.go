package bench

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store/postgres"
)

// Round trips are counted one command at a time, so no measuring window
// cuts a command in two: the stateless mode reads the stream and appends
// (two round trips per command); the actor host reads a stream once, when
// its actor starts, and then only appends (one).
func TestRoundTripsPerCommand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode       string
		perCommand int64
	}{{ModeStateless, 2}, {ModeActor, 1}} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rt := &roundTrips{}
			cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
			require.NoError(t, err)
			cfg.ConnConfig.Tracer = rt
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			require.NoError(t, err)
			defer pool.Close()
			require.NoError(t, postgres.Migrate(ctx, pool))

			b := &bench{cfg: Config{Logger: slog.New(slog.DiscardHandler)}}
			cmdr, err := b.newCommander(ctx, tc.mode, pool, 0)
			require.NoError(t, err)
			defer func() { require.NoError(t, cmdr.close(context.WithoutCancel(ctx))) }()

			const tenant, id = "t1", "cart-1"
			_, err = cmdr.send(ctx, benchcart.CreateCart{TenantID: tenant, CartID: id, Currency: "EUR", CreatedBy: "test"})
			require.NoError(t, err)
			var cmds []benchcart.Command
			for i := range 5 {
				cmds = append(cmds, benchcart.AddItem{TenantID: tenant, CartID: id, CreatedBy: "test", Item: benchcart.Item{
					SKU: "sku-" + strconv.Itoa(i), Name: "Item", UnitPrice: benchcart.Price(199), Quantity: 1}})
			}
			cmds = append(cmds, benchcart.CheckoutCart{TenantID: tenant, CartID: id, OrderID: "order-1", CreatedBy: "test"})
			for _, cmd := range cmds {
				before := rt.load()
				out, err := cmdr.send(ctx, cmd)
				require.NoError(t, err)
				require.Equal(t, 1, out.events)
				require.Equal(t, tc.perCommand, rt.load()-before, "round trips of %s", commandName(cmd))
			}
			require.Zero(t, cmdr.conflicts())
		})
	}
}
