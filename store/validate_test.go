package store

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestPrepareAppendDefaults(t *testing.T) {
	t.Parallel()
	in := []EventData{
		{Type: "A", Data: json.RawMessage(`{}`)},
		{Type: "B", Data: json.RawMessage(`null`), MessageID: "given", SchemaVersion: "3", Metadata: Metadata{"k": "v"}},
	}
	out, opts, err := PrepareAppend("s", in, AppendOptions{ExpectedVersion: Exact(4)})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Partition != DefaultPartition || opts.StreamType != DefaultStreamType || opts.ExpectedVersion != Exact(4) {
		t.Errorf("options = %+v", opts)
	}
	if _, err := uuid.Parse(out[0].MessageID); err != nil {
		t.Errorf("generated message id %q: %v", out[0].MessageID, err)
	}
	if out[0].SchemaVersion != DefaultSchemaVersion {
		t.Errorf("schema version = %q", out[0].SchemaVersion)
	}
	if out[1].MessageID != "given" || out[1].SchemaVersion != "3" || out[1].Metadata["k"] != "v" || out[1].Type != "B" {
		t.Errorf("supplied fields changed: %+v", out[1])
	}
	if in[0].MessageID != "" || in[0].SchemaVersion != "" {
		t.Errorf("the caller's events were modified: %+v", in[0])
	}

	// Explicit options are kept; ids differ between calls.
	out2, opts, err := PrepareAppend("s", in[:1], AppendOptions{Partition: "tenant-1", StreamType: "cart"})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Partition != "tenant-1" || opts.StreamType != "cart" {
		t.Errorf("options = %+v", opts)
	}
	if out2[0].MessageID == out[0].MessageID {
		t.Error("two calls generated the same message id")
	}
}

func TestPrepareAppendRejects(t *testing.T) {
	t.Parallel()
	ok := EventData{Type: "A", Data: json.RawMessage(`{}`)}
	cases := []struct {
		name   string
		stream StreamID
		events []EventData
		opts   AppendOptions
		want   string
	}{
		{"empty_stream_id", "", []EventData{ok}, AppendOptions{}, "stream id is empty"},
		{"long_stream_id", StreamID(strings.Repeat("x", MaxStreamIDLength+1)), []EventData{ok}, AppendOptions{}, "at most"},
		{"no_events", "s", nil, AppendOptions{}, "no events"},
		{"semicolon_partition", "s", []EventData{ok}, AppendOptions{Partition: "bad;partition"}, "partition"},
		{"space_partition", "s", []EventData{ok}, AppendOptions{Partition: "a b"}, "partition"},
		{"long_partition", "s", []EventData{ok}, AppendOptions{Partition: strings.Repeat("p", MaxTenantIDLength+1)}, "partition"},
		{"no_type", "s", []EventData{ok, {Data: json.RawMessage(`{}`)}}, AppendOptions{}, "event 1 has no type"},
		{"no_data", "s", []EventData{{Type: "A"}}, AppendOptions{}, "no data"},
		{"invalid_json", "s", []EventData{{Type: "A", Data: json.RawMessage(`{"a":}`)}}, AppendOptions{}, "not valid JSON"},
		{"duplicate_id", "s", []EventData{{Type: "A", Data: json.RawMessage(`1`), MessageID: "m"}, {Type: "B", Data: json.RawMessage(`2`), MessageID: "m"}}, AppendOptions{}, "appears twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := PrepareAppend(tc.stream, tc.events, tc.opts)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to mention %q", err, tc.want)
			}
			if out != nil {
				t.Errorf("events returned with an error: %+v", out)
			}
		})
	}
	// The longest accepted stream id.
	if _, _, err := PrepareAppend(StreamID(strings.Repeat("x", MaxStreamIDLength)), []EventData{ok}, AppendOptions{}); err != nil {
		t.Errorf("stream id of MaxStreamIDLength bytes rejected: %v", err)
	}
}

func TestValidatePartition(t *testing.T) {
	t.Parallel()
	if p, err := ValidatePartition(""); err != nil || p != DefaultPartition {
		t.Errorf(`ValidatePartition("") = %q, %v`, p, err)
	}
	if p, err := ValidatePartition("tenant_1-a"); err != nil || p != "tenant_1-a" {
		t.Errorf("ValidatePartition(valid) = %q, %v", p, err)
	}
	for _, bad := range []string{"a b", "x;y", "é", "a'b"} {
		if _, err := ValidatePartition(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidatePartition(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
	if got := Partition(""); got != DefaultPartition {
		t.Errorf(`Partition("") = %q`, got)
	}
	if got := Partition("t"); got != "t" {
		t.Errorf(`Partition("t") = %q`, got)
	}
}
