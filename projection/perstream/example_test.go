package perstream_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/perstream"
	"github.com/troupehq/troupe/store"
)

// The seed's on-demand runner: project one stream's new events.
func ExampleRunner_ProjectEvents() {
	ctx := context.Background()
	var pool *pgxpool.Pool

	r, err := perstream.New(pool, &perstream.Config{
		Registry: projection.Registry{
			"ItemAdded": {func(ctx context.Context, tx pgx.Tx, e store.Event) error {
				_, err := tx.Exec(ctx, `UPDATE cart_counts SET n = n + 1 WHERE cart_id = $1`, string(e.StreamID))
				return err
			}},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := r.Drain(ctx, "cart-counts", "cart-1", perstream.ProjectOptions{Partition: "tenant-a"})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("projected %d events, stream at version %d", res.Processed, res.CurrentStreamVersion)
}
