package actor_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
)

// ExampleHost_RunProjection has a host run a read model's projection as an
// actor: started with the host, restarted with backoff when it fails,
// asked for its status, stopped (and waited for) by Stop.
func ExampleHost_RunProjection() {
	ctx := context.Background()
	var pool *pgxpool.Pool // the application's pool
	var h *actor.Host      // created with actor.New

	balances, err := projection.New(pool, &projection.Config{
		Name: "balances",
		Handlers: projection.Registry{"Deposited": {func(ctx context.Context, tx pgx.Tx, e store.Event) error {
			_, err := tx.Exec(ctx, `UPDATE balances SET events = events + 1 WHERE account = $1`, string(e.StreamID))
			return err
		}}},
	})
	if err != nil {
		panic(err)
	}
	err = h.RunProjection("balances", balances, &actor.ProjectionOptions{
		Restart: retry.Policy{InitialDelay: time.Second, MaxDelay: time.Minute},
	})
	if err != nil {
		panic(err)
	}
	_ = h.Start(ctx)
	defer h.Stop(ctx)

	st, err := h.ProjectionStatus(ctx, "balances")
	if err != nil {
		panic(err)
	}
	fmt.Println(st.State, st.Projection.Local, st.Projection.LagEvents)
}
