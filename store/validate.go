package store

import (
	"encoding/json"

	"github.com/google/uuid"
)

// Partition returns p, or DefaultPartition when p is empty.
func Partition(p string) string {
	if p == "" {
		return DefaultPartition
	}
	return p
}

// MaxStreamIDLength is the longest stream id accepted, in bytes.
const MaxStreamIDLength = 512

// PrepareAppend validates an append's input and returns a copy of events
// with defaults filled in (message ids, schema versions) and the resolved
// partition and stream type. Backends call it first so every backend
// rejects the same inputs with the same errors before writing anything.
func PrepareAppend(stream StreamID, events []EventData, opts AppendOptions) ([]EventData, AppendOptions, error) {
	if err := ValidateStreamID(stream); err != nil {
		return nil, opts, err
	}
	opts.Partition = Partition(opts.Partition)
	if err := ValidateTenantID(opts.Partition); err != nil {
		return nil, opts, InvalidArgument("partition: %v", err)
	}
	if opts.StreamType == "" {
		opts.StreamType = DefaultStreamType
	}
	if len(events) == 0 {
		return nil, opts, InvalidArgument("append to stream %q: no events", stream)
	}
	if opts.Incarnation < 0 {
		return nil, opts, InvalidArgument("append to stream %q: negative incarnation %d", stream, opts.Incarnation)
	}
	if v, exact := opts.ExpectedVersion.Exact(); opts.Incarnation != 0 && (opts.ExpectedVersion == NoStream || exact && v == 0) {
		return nil, opts, InvalidArgument("append to stream %q: an incarnation is required together with %s, which expects no stream", stream, opts.ExpectedVersion)
	}
	out := make([]EventData, len(events))
	seen := make(map[string]struct{}, len(events))
	for i, e := range events {
		if e.Type == "" {
			return nil, opts, InvalidArgument("append to stream %q: event %d has no type", stream, i)
		}
		if len(e.Data) == 0 {
			return nil, opts, InvalidArgument("append to stream %q: event %d (%s) has no data", stream, i, e.Type)
		}
		if !json.Valid(e.Data) {
			return nil, opts, InvalidArgument("append to stream %q: event %d (%s) data is not valid JSON", stream, i, e.Type)
		}
		if e.MessageID == "" {
			e.MessageID = uuid.NewString()
		}
		if _, dup := seen[e.MessageID]; dup {
			return nil, opts, InvalidArgument("append to stream %q: message id %q appears twice", stream, e.MessageID)
		}
		seen[e.MessageID] = struct{}{}
		if e.SchemaVersion == "" {
			e.SchemaVersion = DefaultSchemaVersion
		}
		out[i] = e
	}
	return out, opts, nil
}

// ValidateStreamID rejects empty and oversized stream ids.
func ValidateStreamID(stream StreamID) error {
	if stream == "" {
		return InvalidArgument("stream id is empty")
	}
	if len(stream) > MaxStreamIDLength {
		return InvalidArgument("stream id is %d bytes, at most %d allowed", len(stream), MaxStreamIDLength)
	}
	return nil
}

// ValidatePartition resolves an empty partition to the default and
// rejects invalid ones.
func ValidatePartition(p string) (string, error) {
	p = Partition(p)
	if err := ValidateTenantID(p); err != nil {
		return p, InvalidArgument("partition: %v", err)
	}
	return p, nil
}
