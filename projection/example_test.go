package projection_test

import (
	"context"
	"encoding/json"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
)

// CartState is the state a cart read-model row holds.
type CartState struct {
	Status string         `json:"status"`
	Items  map[string]int `json:"items"`
}

func evolveCart(s CartState, e store.Event) (CartState, error) {
	var d struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return s, err
	}
	if s.Items == nil {
		s.Items = map[string]int{}
	}
	switch e.Type {
	case "CartCreated":
		s.Status = "active"
	case "ItemAdded":
		s.Items[d.SKU] += d.Qty
	case "CartCheckedOut":
		s.Status = "checkedOut"
	}
	return s, nil
}

// A snapshot read model of carts kept up to date by a continuous
// projection, and a read of one's own write.
func Example() {
	ctx := context.Background()
	var pool *pgxpool.Pool // migrated with postgres.Migrate
	var es store.EventStore

	carts, err := projection.NewSnapshotProjection(projection.SnapshotConfig[CartState]{
		Table:      "carts", // cart_id, partition, item_count, is_checked_out
		Storage:    projection.SnapshotInTable,
		EventTypes: []string{"CartCreated", "ItemAdded", "CartCheckedOut"},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"cart_id": string(e.StreamID), "partition": partition}, nil
		},
		Evolve:  evolveCart,
		Initial: func() CartState { return CartState{Status: "init", Items: map[string]int{}} },
		MapToColumns: func(s CartState) map[string]any {
			n := 0
			for _, q := range s.Items {
				n += q
			}
			return map[string]any{"item_count": n, "is_checked_out": s.Status == "checkedOut"}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	p, err := projection.New(projection.Config{
		Name:          "carts",
		Pool:          pool,
		BatchHandlers: []projection.BatchHandler{carts},
		OnFailure:     projection.FailStop,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer p.Stop(ctx)

	res, err := es.AppendToStream(ctx, "cart-1", []store.EventData{{Type: "CartCreated", Data: []byte(`{}`)}},
		store.AppendOptions{Partition: "tenant-a", StreamType: "cart"})
	if err != nil {
		log.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.WaitFor(wctx, res.LastPosition()); err != nil {
		log.Fatal(err)
	}
	// The carts row of cart-1 is now there.
}

// The seed's on-demand runner: project one stream's new events.
func ExampleRunner_ProjectEvents() {
	ctx := context.Background()
	var pool *pgxpool.Pool

	r, err := projection.NewRunner(projection.RunnerConfig{
		Pool: pool,
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
	res, err := r.Drain(ctx, "cart-counts", "cart-1", projection.ProjectOptions{Partition: "tenant-a"})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("projected %d events, stream at version %d", res.Processed, res.CurrentStreamVersion)
}

// The seed's consumer: handlers per event type and for every event.
func ExampleConsumer() {
	ctx := context.Background()
	var pool *pgxpool.Pool

	c, err := projection.NewConsumer(projection.ConsumerConfig{Pool: pool, Name: "mailer"})
	if err != nil {
		log.Fatal(err)
	}
	c.Subscribe("CartCheckedOut", func(ctx context.Context, tx pgx.Tx, e store.Event) error {
		// Enqueue a mail in the same transaction as the checkpoint.
		_, err := tx.Exec(ctx, `INSERT INTO outbox (topic, payload) VALUES ('mail', $1)`, e.Data)
		return err
	})
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx)
}
