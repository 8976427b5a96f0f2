package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func stored(typ, version, data string) Event {
	return Event{Type: typ, SchemaVersion: version, Data: json.RawMessage(data), StreamID: "cart-1",
		Partition: DefaultPartition, StreamPosition: 7, GlobalPosition: 42, MessageID: "m-1"}
}

func double(data json.RawMessage) (json.RawMessage, error) {
	var v map[string]int
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	v["n"] *= 2
	return json.Marshal(v)
}

func TestRegisterEvolutionRefusesBadInput(t *testing.T) {
	c := NewJSONCodec().MustRegister("A", itemAdded{}).MustRegisterUpcaster("B", 1, double).MustRegisterRename("Old", "A").MustRegisterDrop("Gone")
	cases := []struct {
		name string
		err  error
		says string
	}{
		{"empty type", c.RegisterUpcaster("", 1, double), "empty type name"},
		{"version 0", c.RegisterUpcaster("B", 0, double), "versions start at 1"},
		{"nil upcaster", c.RegisterUpcaster("B", 2, nil), "nil"},
		{"step twice", c.RegisterUpcaster("B", 1, double), "already registered"},
		{"upcaster of a renamed type", c.RegisterUpcaster("Old", 1, double), `renamed to "A"`},
		{"upcaster of a dropped type", c.RegisterUpcaster("Gone", 1, double), "dropped"},
		{"rename to itself", c.RegisterRename("A", "A"), "itself"},
		{"rename of a registered type", c.RegisterRename("A", "Z"), "still registered"},
		{"rename of an evolved type", c.RegisterRename("B", "Z"), "has upcasters"},
		{"rename cycle", c.RegisterRename("A2", "Old2"), ""},
		{"drop of a registered type", c.RegisterDrop("A"), "registered for"},
		{"drop of an evolved type", c.RegisterDrop("B"), "has upcasters"},
		{"register a dropped name", c.Register("Gone", itemRemoved{}), "dropped"},
		{"register a renamed name", c.Register("Old", itemRemoved{}), "renamed"},
		{"split into nothing named", c.RegisterSplit("S", 1, []string{""}, func(json.RawMessage) ([]UpcastEvent, error) { return nil, nil }), "into[0] is empty"},
		{"nil split", c.RegisterSplit("S", 1, []string{"A"}, nil), "nil"},
	}
	for _, tc := range cases {
		if tc.name == "rename cycle" {
			require.NoError(t, tc.err)
			err := c.RegisterRename("Old2", "A2")
			require.ErrorIs(t, err, ErrInvalidArgument)
			require.ErrorContains(t, err, "cycle")
			continue
		}
		require.ErrorIs(t, tc.err, ErrInvalidArgument, tc.name)
		require.ErrorContains(t, tc.err, tc.says, tc.name)
	}
	require.Panics(t, func() { c.MustRegisterDrop("A") })
}

func TestCurrentVersionAndEncode(t *testing.T) {
	c := NewJSONCodec().MustRegister("ItemAdded", itemAdded{}).MustRegister("ItemRemoved", itemRemoved{}).
		MustRegisterUpcaster("ItemAdded", 1, double).MustRegisterUpcaster("ItemAdded", 2, double)
	require.Equal(t, "3", c.SchemaVersion("ItemAdded"))
	require.Equal(t, "1", c.SchemaVersion("ItemRemoved"))
	require.Equal(t, "1", c.SchemaVersion("Unknown"))
	out, err := Encode(c, itemAdded{SKU: "a"}, itemRemoved{SKU: "a"})
	require.NoError(t, err)
	require.Equal(t, "3", out[0].SchemaVersion, "new events are written at the current version")
	require.Equal(t, "1", out[1].SchemaVersion)
}

func TestUpcastChainsStepsAndKeepsTheEnvelope(t *testing.T) {
	c := NewJSONCodec().MustRegisterUpcaster("N", 1, double).MustRegisterUpcaster("N", 2, double).MustRegisterRename("Old", "N")
	for _, tc := range []struct {
		in   Event
		want string
	}{
		{stored("N", "1", `{"n":1}`), `{"n":4}`},
		{stored("N", "", `{"n":1}`), `{"n":4}`}, // no version is version 1
		{stored("N", "2", `{"n":1}`), `{"n":2}`},
		{stored("N", "3", `{"n":1}`), `{"n":1}`},
		{stored("Old", "1", `{"n":3}`), `{"n":12}`}, // a rename goes on through the new name's upcasters
	} {
		out, err := c.Upcast(tc.in, nil)
		require.NoError(t, err)
		require.Len(t, out, 1)
		got := out[0]
		require.Equal(t, "N", got.Type)
		require.Equal(t, "3", got.SchemaVersion)
		require.JSONEq(t, tc.want, string(got.Data))
		got.Type, got.SchemaVersion, got.Data = tc.in.Type, tc.in.SchemaVersion, tc.in.Data
		require.Equal(t, tc.in, got, "only type, version and body change")
	}
}

func TestUpcastErrors(t *testing.T) {
	loop := NewJSONCodec()
	loop.MustRegisterSplit("P", 1, []string{"P"}, func(data json.RawMessage) ([]UpcastEvent, error) {
		return []UpcastEvent{{Type: "P", Version: 1, Data: data}}, nil
	})
	c := NewJSONCodec().MustRegister("N", itemAdded{}).MustRegisterUpcaster("N", 2, double).
		MustRegisterUpcaster("Fails", 1, func(json.RawMessage) (json.RawMessage, error) { return nil, errors.New("boom") }).
		MustRegisterUpcaster("Panics", 1, func(json.RawMessage) (json.RawMessage, error) { panic("kaboom") }).
		MustRegisterUpcaster("Invalid", 1, func(json.RawMessage) (json.RawMessage, error) { return json.RawMessage(`{`), nil }).
		MustRegisterSplit("S", 1, []string{"A"}, func(json.RawMessage) ([]UpcastEvent, error) {
			return []UpcastEvent{{Type: "B", Data: json.RawMessage(`{}`)}}, nil
		})
	for _, tc := range []struct {
		codec        *JSONCodec
		in           Event
		says         string
		unknownSchem bool
	}{
		{c, stored("N", "4", `{}`), "version 4 of N is newer than 3", true},
		{c, stored("N", "x", `{}`), `"x" is not a positive integer`, true},
		{c, stored("N", "-1", `{}`), "not a positive integer", true},
		{c, stored("N", "1", `{}`), "no upcaster or split of N from version 1", true},
		{c, stored("Fails", "1", `{}`), "boom", false},
		{c, stored("Panics", "1", `{}`), "panicked: kaboom", false},
		{c, stored("Invalid", "1", `{}`), "invalid JSON", false},
		{c, stored("S", "1", `{}`), `type "B", which is not among the types`, false},
		{loop, stored("P", "1", `{}`), "more than 1000 upcast steps", false},
	} {
		prefix := []Event{{Type: "kept"}}
		out, err := tc.codec.Upcast(tc.in, prefix)
		require.Error(t, err, tc.says)
		require.Equal(t, prefix, out, "out is returned unchanged")
		require.ErrorIs(t, err, ErrUpcast)
		require.Equal(t, tc.unknownSchem, errors.Is(err, ErrUnknownSchemaVersion), tc.says)
		var ue *UpcastError
		require.ErrorAs(t, err, &ue)
		require.Equal(t, UpcastError{Type: tc.in.Type, SchemaVersion: tc.in.SchemaVersion, Stream: "cart-1",
			Partition: DefaultPartition, Position: 7, GlobalPosition: 42, Err: ue.Err}, *ue)
		msg := err.Error()
		for _, want := range []string{tc.says, tc.in.Type, fmt.Sprintf("%q", tc.in.SchemaVersion), "position 7", `"cart-1"`} {
			require.True(t, strings.Contains(msg, want), "%q lacks %q", msg, want)
		}
		_, err = Decode(tc.codec, tc.in)
		require.ErrorIs(t, err, ErrUpcast, "Decode upcasts too")
	}
}

func TestDecodeUpcastsOneEvent(t *testing.T) {
	c := NewJSONCodec().MustRegister("ItemAdded", itemAdded{}).
		MustRegisterUpcaster("ItemAdded", 1, func(data json.RawMessage) (json.RawMessage, error) {
			return json.RawMessage(strings.Replace(string(data), `"qty"`, `"quantity"`, 1)), nil
		}).MustRegisterRename("ItemPut", "ItemAdded").MustRegisterDrop("Gone").
		MustRegisterSplit("Two", 1, []string{"ItemAdded"}, func(data json.RawMessage) ([]UpcastEvent, error) {
			return []UpcastEvent{{Type: "ItemAdded", Version: 2, Data: data}, {Type: "ItemAdded", Version: 2, Data: data}}, nil
		})
	v, err := Decode(c, stored("ItemPut", "1", `{"sku":"a","qty":2}`))
	require.NoError(t, err)
	require.Equal(t, itemAdded{SKU: "a", Quantity: 2}, v)
	for _, typ := range []string{"Gone", "Two"} {
		_, err = Decode(c, stored(typ, "1", `{}`))
		require.ErrorIs(t, err, ErrUpcast)
		require.ErrorContains(t, err, "read it through a store configured with the upcaster")
	}
	_, err = Decode(c, stored("Mystery", "5", `{}`))
	var ute *UnknownEventTypeError
	require.ErrorAs(t, err, &ute)
	require.Equal(t, "5", ute.SchemaVersion)
	require.ErrorContains(t, err, `unknown event type "Mystery" (schema version "5") at position 7`)
}

func TestSplitAndDrop(t *testing.T) {
	c := NewJSONCodec().MustRegister("A", itemAdded{}).MustRegister("B", itemRemoved{}).
		MustRegisterUpcaster("A", 1, func(data json.RawMessage) (json.RawMessage, error) { return data, nil }).
		MustRegisterSplit("AB", 1, []string{"A", "B", "Gone"}, func(data json.RawMessage) ([]UpcastEvent, error) {
			return []UpcastEvent{
				{Type: "A", Data: json.RawMessage(`{"sku":"a"}`)}, // version 0 is 1: upcast on to 2
				{Type: "Gone", Data: json.RawMessage(`{}`)},
				{Type: "B", Version: 1, Data: json.RawMessage(`{"sku":"b"}`)},
			}, nil
		}).MustRegisterDrop("Gone")
	out, err := c.Upcast(stored("AB", "1", `{}`), nil)
	require.NoError(t, err)
	require.Len(t, out, 2)
	require.Equal(t, []string{"A", "B"}, []string{out[0].Type, out[1].Type})
	require.Equal(t, []string{"2", "1"}, []string{out[0].SchemaVersion, out[1].SchemaVersion})
	for _, e := range out {
		require.Equal(t, Version(7), e.StreamPosition)
		require.Equal(t, "m-1", e.MessageID)
	}
	out, err = c.Upcast(stored("Gone", "3", `{}`), nil)
	require.NoError(t, err)
	require.Empty(t, out)
	require.ElementsMatch(t, []string{"A", "AB"}, c.StoredTypes([]string{"A"}))
	require.ElementsMatch(t, []string{"B", "AB", "Gone"}, c.StoredTypes([]string{"B", "Gone"}))
}

// An upcaster may use the codec, and upcasts run concurrently with
// registrations without a data race.
func TestUpcastConcurrentWithRegistration(t *testing.T) {
	c := NewJSONCodec().MustRegister("A", itemAdded{})
	c.MustRegisterUpcaster("A", 1, func(data json.RawMessage) (json.RawMessage, error) {
		_ = c.SchemaVersion("A") // takes the codec's lock
		return data, nil
	})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if g == 0 {
					require.NoError(t, c.Register(fmt.Sprintf("T%d", i), reflectType(i)))
					continue
				}
				out, err := c.Upcast(stored("A", "1", `{"sku":"a"}`), nil)
				if err != nil || len(out) != 1 || out[0].SchemaVersion != "2" {
					t.Errorf("upcast: %v %v", out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// reflectType returns a value of a distinct Go type per i (arrays of
// different lengths).
func reflectType(i int) any {
	return reflect.New(reflect.ArrayOf(i+1, reflect.TypeOf(byte(0)))).Elem().Interface()
}

func BenchmarkUpcast(b *testing.B) {
	c := NewJSONCodec().MustRegister("A", itemAdded{}).MustRegisterUpcaster("A", 1, func(data json.RawMessage) (json.RawMessage, error) {
		return data, nil
	})
	for _, bc := range []struct {
		name string
		e    Event
	}{
		{"current", stored("A", "2", `{"sku":"a","quantity":1}`)},
		{"v1", stored("A", "1", `{"sku":"a","quantity":1}`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]Event, 0, 1)
			for b.Loop() {
				var err error
				if buf, err = c.Upcast(bc.e, buf[:0]); err != nil || len(buf) != 1 {
					b.Fatal(err)
				}
			}
		})
	}
}
