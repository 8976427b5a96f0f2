package projection_test

import (
	"context"
	"encoding/json"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
)

// CartState is the state a cart read-model row holds.
type CartState struct {
	Status string         `json:"status"`
	Items  map[string]int `json:"items"`
}

func EvolveCart(s CartState, e store.Event) (CartState, error) {
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

// A read model of carts (each row the fold of its cart's events) kept up to date by a continuous
// projection, and a read of one's own write.
func Example() {
	ctx := context.Background()
	var pool *pgxpool.Pool // migrated with postgres.Migrate
	var es store.EventStore

	carts, err := readmodel.New(&readmodel.Config[CartState]{
		Table:      "carts", // cart_id, partition, item_count, is_checked_out
		Storage:    readmodel.InTable,
		EventTypes: []string{"CartCreated", "ItemAdded", "CartCheckedOut"},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"cart_id": string(e.StreamID), "partition": partition}, nil
		},
		Evolve:  EvolveCart,
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
	p, err := projection.New(pool, &projection.Config{
		Name:          "carts",
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
