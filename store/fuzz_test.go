package store

import (
	"encoding/json"
	"errors"
	"testing"
)

func FuzzJSONCodecDecode(f *testing.F) {
	for _, seed := range []struct{ typ, data string }{
		{"ItemAdded", `{"sku":"a","quantity":1}`},
		{"ItemAdded", `{"quantity":"x"}`},
		{"ItemRemoved", `null`},
		{"ItemRemoved", `[1,2`},
		{"Unknown", `{}`},
		{"", ``},
	} {
		f.Add(seed.typ, []byte(seed.data))
	}
	c := NewJSONCodec().MustRegister("ItemAdded", itemAdded{}).MustRegister("ItemRemoved", itemRemoved{})
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		v, err := c.Decode(typ, data)
		known := typ == "ItemAdded" || typ == "ItemRemoved"
		switch {
		case !known:
			if !errors.Is(err, ErrUnknownEventType) {
				t.Fatalf("Decode(%q) = %v, want ErrUnknownEventType", typ, err)
			}
		case !json.Valid(data):
			if err == nil {
				t.Fatalf("Decode(%q, %q) accepted invalid JSON", typ, data)
			}
		case err == nil:
			switch v.(type) {
			case itemAdded, itemRemoved:
			default:
				t.Fatalf("Decode(%q) returned %T", typ, v)
			}
			// What decodes encodes again and decodes to the same value.
			typ2, data2, err := c.Encode(v)
			if err != nil || typ2 != typ {
				t.Fatalf("Encode(%#v) = %q, %v", v, typ2, err)
			}
			if v2, err := c.Decode(typ2, data2); err != nil || v2 != v {
				t.Fatalf("re-decode = %#v, %v, want %#v", v2, err, v)
			}
		}
	})
}

func FuzzPrepareAppend(f *testing.F) {
	f.Add("cart-1", "", "ItemAdded", []byte(`{"a":1}`), "")
	f.Add("", "tenant", "T", []byte(`{}`), "id")
	f.Add("s", "bad;partition", "T", []byte(`{}`), "")
	f.Add("s", "a b", "", []byte(`{`), "")
	f.Add("s", "t", "T", []byte(``), "")
	f.Fuzz(func(t *testing.T, stream, partition, typ string, data []byte, messageID string) {
		in := []EventData{{Type: typ, Data: data, MessageID: messageID}, {Type: "Second", Data: json.RawMessage(`{}`)}}
		out, opts, err := PrepareAppend(StreamID(stream), in, AppendOptions{Partition: partition})
		p := partition
		if p == "" {
			p = DefaultPartition
		}
		valid := stream != "" && len(stream) <= MaxStreamIDLength && ValidateTenantID(p) == nil &&
			typ != "" && len(data) > 0 && json.Valid(data)
		if !valid {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("PrepareAppend(%q, %q, %q, %q) = %v, want ErrInvalidArgument", stream, partition, typ, data, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("PrepareAppend of valid input: %v", err)
		}
		if len(out) != 2 || opts.Partition != p || opts.StreamType != DefaultStreamType {
			t.Fatalf("PrepareAppend = %+v, %+v", out, opts)
		}
		for _, e := range out {
			if e.MessageID == "" || e.SchemaVersion == "" {
				t.Fatalf("defaults not filled: %+v", e)
			}
		}
		if messageID != "" && out[0].MessageID != messageID {
			t.Fatalf("message id %q replaced by %q", messageID, out[0].MessageID)
		}
	})
}
