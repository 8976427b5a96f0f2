package store_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

// ItemAdded was first written as {"sku":"a","qty":2} (version 1) under the
// name "ItemPut". The codec registers the rename and the upcaster from
// version 1; the store, configured with the codec, returns old events as
// current ones, and writes new ones at version 2.
func ExampleJSONCodec_RegisterUpcaster() {
	codec := store.NewJSONCodec().
		MustRegister("ItemAdded", ItemAdded{}).
		MustRegisterRename("ItemPut", "ItemAdded").
		MustRegisterUpcaster("ItemAdded", 1, func(data json.RawMessage) (json.RawMessage, error) {
			var v1 struct {
				SKU string `json:"sku"`
				Qty int    `json:"qty"`
			}
			if err := json.Unmarshal(data, &v1); err != nil {
				return nil, err
			}
			return json.Marshal(ItemAdded{SKU: v1.SKU, Quantity: v1.Qty})
		})
	es, err := memory.NewWithConfig(&memory.Config{Upcaster: codec})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	old := store.EventData{Type: "ItemPut", SchemaVersion: "1", Data: json.RawMessage(`{"sku":"a","qty":2}`)}
	current, err := store.Encode(codec, ItemAdded{SKU: "b", Quantity: 1})
	if err != nil {
		panic(err)
	}
	if _, err := es.AppendToStream(ctx, "cart-1", append([]store.EventData{old}, current...), store.AppendOptions{}); err != nil {
		panic(err)
	}
	res, err := es.ReadStream(ctx, "cart-1", store.ReadOptions{})
	if err != nil {
		panic(err)
	}
	for _, e := range res.Events {
		v, err := store.Decode(codec, e)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s v%s %+v\n", e.Type, e.SchemaVersion, v)
	}
	// Output:
	// ItemAdded v2 {SKU:a Quantity:2}
	// ItemAdded v2 {SKU:b Quantity:1}
}
