package store_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
)

type ItemAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type ItemRemoved struct {
	SKU string `json:"sku"`
}

func ExampleJSONCodec() {
	codec := store.NewJSONCodec().
		MustRegister("ItemAdded", ItemAdded{}).
		MustRegister("ItemRemoved", ItemRemoved{})

	typ, data, err := codec.Encode(ItemAdded{SKU: "apple", Quantity: 3})
	if err != nil {
		panic(err)
	}
	fmt.Println(typ, string(data))

	v, err := codec.Decode("ItemRemoved", []byte(`{"sku":"pear"}`))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%#v\n", v)

	_, err = codec.Decode("ItemRenamed", []byte(`{}`))
	fmt.Println(errors.Is(err, store.ErrUnknownEventType))
	// Output:
	// ItemAdded {"sku":"apple","quantity":3}
	// store_test.ItemRemoved{SKU:"pear"}
	// true
}

// The basket aggregate of the example: item quantities by SKU.
type basket map[string]int

func evolve(b basket, e any) basket {
	next := basket{}
	for k, v := range b {
		next[k] = v
	}
	switch e := e.(type) {
	case ItemAdded:
		next[e.SKU] += e.Quantity
	case ItemRemoved:
		delete(next, e.SKU)
	}
	return next
}

// Append events to a stream, read them back and fold them into state.
func ExampleAggregateStream() {
	ctx := context.Background()
	es := memory.New()
	codec := store.NewJSONCodec().
		MustRegister("ItemAdded", ItemAdded{}).
		MustRegister("ItemRemoved", ItemRemoved{})

	events, err := store.Encode(codec, ItemAdded{SKU: "apple", Quantity: 3}, ItemAdded{SKU: "pear", Quantity: 1})
	if err != nil {
		panic(err)
	}
	res, err := es.AppendToStream(ctx, "basket-1", events, store.AppendOptions{
		Partition:       "tenant-a",
		StreamType:      "basket",
		ExpectedVersion: store.NoStream,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("version", res.NextExpectedVersion, "created", res.CreatedNewStream)

	// Appending with a stale expected version is a typed conflict.
	more, _ := store.Encode(codec, ItemRemoved{SKU: "pear"})
	_, err = es.AppendToStream(ctx, "basket-1", more, store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(1)})
	var conflict *store.VersionConflictError
	if errors.As(err, &conflict) {
		fmt.Println("conflict: expected", conflict.Expected, "actual", conflict.Actual)
	}
	if _, err := es.AppendToStream(ctx, "basket-1", more, store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(2)}); err != nil {
		panic(err)
	}

	read, err := es.ReadStream(ctx, "basket-1", store.ReadOptions{Partition: "tenant-a"})
	if err != nil {
		panic(err)
	}
	for _, e := range read.Events {
		fmt.Println(e.StreamPosition, e.Type, string(e.Data))
	}

	state, err := store.AggregateStream(ctx, es, codec, "basket-1", basket{}, evolve, store.AggregateOptions{Partition: "tenant-a"})
	if err != nil {
		panic(err)
	}
	fmt.Println("state", state.State, "at version", state.CurrentVersion)
	// Output:
	// version 2 created true
	// conflict: expected 1 actual 2
	// 1 ItemAdded {"sku":"apple","quantity":3}
	// 2 ItemAdded {"sku":"pear","quantity":1}
	// 3 ItemRemoved {"sku":"pear"}
	// state map[apple:3] at version 3
}
