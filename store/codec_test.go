package store

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type itemAdded struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

type itemRemoved struct {
	SKU string `json:"sku"`
}

func testCodec(t *testing.T) *JSONCodec {
	t.Helper()
	c := NewJSONCodec()
	if err := c.Register("ItemAdded", itemAdded{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Register("ItemRemoved", itemRemoved{}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestJSONCodecRoundTrip(t *testing.T) {
	t.Parallel()
	c := testCodec(t)
	for _, v := range []any{itemAdded{SKU: "a", Quantity: 2}, itemRemoved{SKU: "b"}, itemAdded{}} {
		typ, data, err := c.Encode(v)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", v, err)
		}
		got, err := c.Decode(typ, data)
		if err != nil {
			t.Fatalf("Decode(%q, %s): %v", typ, data, err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip of %#v gave %#v", v, got)
		}
	}
	typ, data, err := c.Encode(itemAdded{SKU: "x", Quantity: 1})
	if err != nil || typ != "ItemAdded" || string(data) != `{"sku":"x","quantity":1}` {
		t.Errorf("Encode = %q, %s, %v", typ, data, err)
	}

	events, err := Encode(c, itemAdded{SKU: "a", Quantity: 1}, itemRemoved{SKU: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].Type != "ItemAdded" || events[1].Type != "ItemRemoved" {
		t.Fatalf("Encode(codec, …) = %+v", events)
	}
	v, err := Decode(c, Event{Type: events[1].Type, Data: events[1].Data})
	if err != nil || v != (itemRemoved{SKU: "a"}) {
		t.Errorf("Decode(codec, …) = %#v, %v", v, err)
	}
}

func TestJSONCodecRegister(t *testing.T) {
	t.Parallel()
	c := testCodec(t)
	// The same pair again is fine.
	if err := c.Register("ItemAdded", itemAdded{}); err != nil {
		t.Errorf("registering the same pair twice: %v", err)
	}
	cases := []struct {
		name   string
		sample any
	}{
		{"ItemAdded", itemRemoved{}}, // name taken by another type
		{"Other", itemAdded{}},       // type registered under another name
		{"", itemAdded{}},            // no name
		{"Nil", nil},                 // no type
	}
	for _, tc := range cases {
		if err := c.Register(tc.name, tc.sample); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Register(%q, %T) = %v, want ErrInvalidArgument", tc.name, tc.sample, err)
		}
	}
	// A failed registration changes nothing.
	if typ, _, err := c.Encode(itemAdded{}); err != nil || typ != "ItemAdded" {
		t.Errorf("after failed registrations Encode = %q, %v", typ, err)
	}
	if _, err := c.Decode("Other", json.RawMessage(`{}`)); !errors.Is(err, ErrUnknownEventType) {
		t.Errorf("Decode of a rejected name = %v", err)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Error("MustRegister of a taken name did not panic")
			}
		}()
		c.MustRegister("ItemAdded", itemRemoved{})
	}()
	if got := NewJSONCodec().MustRegister("A", itemAdded{}).MustRegister("B", itemRemoved{}); got == nil {
		t.Error("MustRegister should return the codec for chaining")
	}
}

func TestJSONCodecErrors(t *testing.T) {
	t.Parallel()
	c := testCodec(t)
	if _, _, err := c.Encode(struct{ X int }{}); !errors.Is(err, ErrUnknownEventType) {
		t.Errorf("Encode of an unregistered type = %v, want ErrUnknownEventType", err)
	}
	if _, _, err := c.Encode(nil); !errors.Is(err, ErrUnknownEventType) {
		t.Errorf("Encode(nil) = %v, want ErrUnknownEventType", err)
	}
	if _, _, err := c.Encode(&itemAdded{}); !errors.Is(err, ErrUnknownEventType) {
		t.Errorf("Encode of a pointer to a registered type = %v, want ErrUnknownEventType", err)
	}
	if _, err := c.Decode("Nope", json.RawMessage(`{}`)); !errors.Is(err, ErrUnknownEventType) {
		t.Errorf("Decode of an unknown type = %v, want ErrUnknownEventType", err)
	}
	_, err := c.Decode("ItemAdded", json.RawMessage(`{"quantity":"many"}`))
	if err == nil || errors.Is(err, ErrUnknownEventType) || !strings.Contains(err.Error(), "ItemAdded") {
		t.Errorf("Decode of a mistyped body = %v, want a decode error naming the type", err)
	}
	if _, err := c.Decode("ItemAdded", json.RawMessage(`{`)); err == nil {
		t.Error("Decode of invalid JSON succeeded")
	}
	if _, err := Encode(c, itemAdded{}, 42); err == nil || !strings.Contains(err.Error(), "event 1") {
		t.Errorf("Encode(codec, …) with an unregistered value = %v, want an error naming event 1", err)
	}

	e := Event{Type: "Nope", Data: json.RawMessage(`{}`), StreamID: "cart-1", Partition: "t1", StreamPosition: 7}
	_, err = Decode(c, e)
	var ue *UnknownEventTypeError
	if !errors.As(err, &ue) || ue.Type != "Nope" || ue.Stream != "cart-1" || ue.Partition != "t1" || ue.Position != 7 {
		t.Errorf("Decode(codec, unknown) = %v, want *UnknownEventTypeError naming the event", err)
	}
	e = Event{Type: "ItemAdded", Data: json.RawMessage(`[]`), StreamID: "cart-1", Partition: "t1", StreamPosition: 8}
	_, err = Decode(c, e)
	if err == nil || errors.Is(err, ErrUnknownEventType) || !strings.Contains(err.Error(), "position 8") {
		t.Errorf("Decode(codec, bad body) = %v, want an error naming the position", err)
	}
}
