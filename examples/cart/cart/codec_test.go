package cart_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/store"
)

func newCodec(t *testing.T) *store.JSONCodec {
	t.Helper()
	c := store.NewJSONCodec()
	if err := cart.RegisterEvents(c); err != nil {
		t.Fatalf("RegisterEvents: %v", err)
	}
	return c
}

const storedMeta = `"eventMeta":{"tenantId":"acme","cartId":"cart-1","createdBy":"alice","version":1}`

// Every event is stored under its name with exactly the seed's data shape,
// and decodes back to the same value.
func TestEventsStoredShape(t *testing.T) {
	t.Parallel()
	codec := newCodec(t)
	cases := []struct {
		event    cart.Event
		typ      string
		wantJSON string
	}{
		{created(), "CartCreated", `{"eventData":{"currency":"USD"},` + storedMeta + `}`},
		{added(item("SKU-123", "Item 123", "19.99", 2)), "ItemAddedToCart",
			`{"eventData":{"item":{"sku":"SKU-123","name":"Item 123","unitPrice":19.99,"quantity":2}},` + storedMeta + `}`},
		{removed("SKU-123", 1), "ItemRemovedFromCart", `{"eventData":{"sku":"SKU-123","quantity":1},` + storedMeta + `}`},
		{emptied(), "CartEmptied", `{"eventData":null,` + storedMeta + `}`},
		{checkedOut("order-1", "40"), "CartCheckedOut", `{"eventData":{"orderId":"order-1","total":40},` + storedMeta + `}`},
		{checkedOut("order-2", "0.3"), "CartCheckedOut", `{"eventData":{"orderId":"order-2","total":0.3},` + storedMeta + `}`},
		{checkedOut("order-3", "0"), "CartCheckedOut", `{"eventData":{"orderId":"order-3","total":0},` + storedMeta + `}`},
		{cancelled("Customer requested"), "CartCancelled", `{"eventData":{"reason":"Customer requested"},` + storedMeta + `}`},
	}
	for _, tc := range cases {
		if tc.event.EventType() != tc.typ {
			t.Errorf("%T.EventType() = %q, want %q", tc.event, tc.event.EventType(), tc.typ)
		}
		if tc.event.Meta() != meta() {
			t.Errorf("%T.Meta() = %+v", tc.event, tc.event.Meta())
		}
		data, err := store.Encode(codec, tc.event)
		if err != nil {
			t.Fatalf("encode %T: %v", tc.event, err)
		}
		if data[0].Type != tc.typ || string(data[0].Data) != tc.wantJSON {
			t.Errorf("encode %T =\n  %s %s\nwant\n  %s %s", tc.event, data[0].Type, data[0].Data, tc.typ, tc.wantJSON)
		}
		back, err := store.Decode(codec, store.Event{Type: data[0].Type, Data: data[0].Data})
		if err != nil {
			t.Fatalf("decode %s: %v", tc.typ, err)
		}
		if !reflect.DeepEqual(back, any(tc.event)) {
			t.Errorf("decode %s = %#v, want %#v", tc.typ, back, tc.event)
		}
		if _, ok := back.(cart.Event); !ok {
			t.Errorf("decoded %T is not a cart.Event", back)
		}
	}
}

// Events written by the seed application (numbers as JS writes them,
// eventData null or missing createdBy) and amounts written as strings
// decode.
func TestDecodeSeedWrittenEvents(t *testing.T) {
	t.Parallel()
	codec := newCodec(t)
	cases := []struct {
		typ, data string
		want      cart.Event
	}{
		{"ItemAddedToCart",
			`{"eventMeta":{"tenantId":"acme","cartId":"cart-1","version":1},"eventData":{"item":{"sku":"SKU-1","name":"One","unitPrice":25,"quantity":2}}}`,
			cart.ItemAddedToCart{EventData: cart.ItemAddedToCartData{Item: item("SKU-1", "One", "25", 2)},
				EventMeta: cart.EventMeta{TenantID: tenant, CartID: cartID, Version: 1}}},
		{"ItemAddedToCart",
			`{"eventData":{"item":{"sku":"SKU-1","name":"One","unitPrice":"19.990","quantity":1}},` + storedMeta + `}`,
			added(item("SKU-1", "One", "19.99", 1))},
		{"CartCheckedOut", `{"eventData":{"orderId":"o","total":39.99},` + storedMeta + `}`, checkedOut("o", "39.99")},
		{"CartEmptied", `{"eventData":{},` + storedMeta + `}`, emptied()},
		{"CartEmptied", `{` + storedMeta + `}`, emptied()},
	}
	for _, tc := range cases {
		got, err := codec.Decode(tc.typ, json.RawMessage(tc.data))
		if err != nil {
			t.Errorf("decode %s %s: %v", tc.typ, tc.data, err)
			continue
		}
		if !reflect.DeepEqual(got, any(tc.want)) {
			t.Errorf("decode %s %s = %+v, want %+v", tc.typ, tc.data, got, tc.want)
		}
	}
	for _, bad := range []struct{ typ, data string }{
		{"ItemAddedToCart", `{"eventData":{"item":{"sku":"S","unitPrice":"cheap","quantity":1}}}`},
		{"ItemAddedToCart", `{"eventData":{"item":{"sku":"S","unitPrice":1,"quantity":1.5}}}`},
		{"CartCheckedOut", `{"eventData":{"orderId":"o","total":true}}`},
		{"CartEmptied", `{"eventData":7}`},
	} {
		if got, err := codec.Decode(bad.typ, json.RawMessage(bad.data)); err == nil {
			t.Errorf("decode %s %s = %+v, want an error", bad.typ, bad.data, got)
		}
	}
}

func TestRegisterEvents(t *testing.T) {
	t.Parallel()
	codec := newCodec(t)
	if err := cart.RegisterEvents(codec); err != nil {
		t.Fatalf("registering twice with the same codec: %v", err)
	}
	for _, name := range []string{"CartCreated", "ItemAddedToCart", "ItemRemovedFromCart", "CartEmptied",
		"CartCheckedOut", "CartCancelled"} {
		if _, err := codec.Decode(name, json.RawMessage(`{}`)); err != nil {
			t.Errorf("%s is not registered: %v", name, err)
		}
	}
	// A codec that already uses one of the names for another type refuses.
	clash := store.NewJSONCodec()
	if err := clash.Register("CartCreated", struct{ Other int }{}); err != nil {
		t.Fatal(err)
	}
	if err := cart.RegisterEvents(clash); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("RegisterEvents over a clashing name = %v, want ErrInvalidArgument", err)
	}
	if cart.StreamType != "cart" {
		t.Fatalf("StreamType = %q", cart.StreamType)
	}
}

// Folding decoded events gives the same state as folding the originals, so
// a cart rebuilt from the store matches the one in memory.
func TestStateFromStoredEvents(t *testing.T) {
	t.Parallel()
	codec := newCodec(t)
	events := []cart.Event{created(), added(item("SKU-123", "Item 123", "25", 2)),
		added(item("SKU-456", "Item 456", "15", 1)), removed("SKU-123", 1), checkedOut("order-1", "40")}
	d := cart.Decider()
	want := d.Fold(d.InitialState(), events...)
	stored, err := store.Encode(codec, anySlice(events)...)
	if err != nil {
		t.Fatal(err)
	}
	got := d.InitialState()
	for _, s := range stored {
		v, err := codec.Decode(s.Type, s.Data)
		if err != nil {
			t.Fatal(err)
		}
		got = d.Evolve(got, v.(cart.Event))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state from stored events = %+v, want %+v", got, want)
	}
	if got.Total.String() != "40" || got.Status != cart.StatusCheckedOut {
		t.Fatalf("state = %+v", got)
	}
}

// State encodes to JSON and back unchanged, for snapshots.
func TestStateJSON(t *testing.T) {
	t.Parallel()
	d := cart.Decider()
	for _, s := range []cart.State{
		d.InitialState(),
		d.Fold(d.InitialState(), created(), added(item("A", "a", "0.1", 3))),
		d.Fold(d.InitialState(), created(), added(item("A", "a", "19.99", 1)), checkedOut("o", "19.99")),
		d.Fold(d.InitialState(), created(), cancelled("no")),
	} {
		data, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back cart.State
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Errorf("state JSON round trip: %s decoded to %+v, want %+v", data, back, s)
		}
	}
	data, _ := json.Marshal(d.Fold(d.InitialState(), created(), checkedOut("o", "0")))
	if want := `{"status":"checkedOut","tenantId":"acme","cartId":"cart-1","currency":"USD","orderId":"o"}`; string(data) != want {
		t.Errorf("checked-out empty cart = %s, want %s", data, want)
	}
}

func anySlice(events []cart.Event) []any {
	out := make([]any, len(events))
	for i, e := range events {
		out[i] = e
	}
	return out
}

// Commands cross the wire between cluster members through the codec: each
// decodes to the same value, under its Type* name.
func TestRegisterCommandsRoundTrip(t *testing.T) {
	c := newCodec(t)
	if err := cart.RegisterCommands(c); err != nil {
		t.Fatalf("RegisterCommands: %v", err)
	}
	price, err := cart.ParseDecimal("9.99")
	if err != nil {
		t.Fatal(err)
	}
	for name, cmd := range map[string]cart.Command{
		cart.TypeCreateCart:   cart.CreateCart{TenantID: "t", CartID: "c", Currency: "USD", CreatedBy: "me"},
		cart.TypeAddItem:      cart.AddItem{TenantID: "t", CartID: "c", Item: cart.Item{SKU: "S", Name: "N", UnitPrice: price, Quantity: 3}},
		cart.TypeRemoveItem:   cart.RemoveItem{TenantID: "t", CartID: "c", SKU: "S", Quantity: 1},
		cart.TypeEmptyCart:    cart.EmptyCart{TenantID: "t", CartID: "c"},
		cart.TypeCheckoutCart: cart.CheckoutCart{TenantID: "t", CartID: "c", OrderID: "o"},
		cart.TypeCancelCart:   cart.CancelCart{TenantID: "t", CartID: "c", Reason: "r"},
	} {
		data, err := store.Encode(c, cmd)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		if data[0].Type != name {
			t.Errorf("%T encodes as %q, want %q", cmd, data[0].Type, name)
		}
		back, err := store.Decode(c, store.Event{Type: data[0].Type, Data: data[0].Data})
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !reflect.DeepEqual(back, cmd) {
			t.Errorf("%s: decoded %#v, want %#v", name, back, cmd)
		}
	}
}

// Rules lists every rule violation and nothing else.
func TestRulesAreEveryRejection(t *testing.T) {
	rules := cart.Rules()
	if len(rules) != 15 {
		t.Fatalf("Rules() has %d errors, want the 15 rules", len(rules))
	}
	seen := map[error]bool{}
	for _, r := range rules {
		if r == nil || seen[r] || errors.Is(r, cart.ErrUnknownCommand) {
			t.Errorf("Rules() holds %v (nil, twice, or not a rule)", r)
		}
		seen[r] = true
	}
	for _, want := range []error{cart.ErrCartNotActive, cart.ErrCartNotInitialized, cart.ErrMissingReason, cart.ErrTotalOutOfRange} {
		if !seen[want] {
			t.Errorf("Rules() lacks %v", want)
		}
	}
}
