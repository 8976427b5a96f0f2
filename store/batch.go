package store

import "context"

// StreamAppend is one stream's part of a batch append: the arguments of
// one [EventStore.AppendToStream] call.
type StreamAppend struct {
	Stream  StreamID
	Events  []EventData
	Options AppendOptions
}

// StreamAppendResult is the outcome of one part of a batch append: Err is
// nil and Result is what AppendToStream would have returned, or Err is the
// error AppendToStream would have returned (a *VersionConflictError, an
// error matching ErrDuplicateMessageID or ErrInvalidArgument, …) and
// nothing of the part was written.
type StreamAppendResult struct {
	Result AppendResult
	Err    error
}

// BatchAppender is implemented by stores that can append to several
// streams in one transaction (store/postgres: one round trip and one
// commit in the common case; store/memory).
//
// AppendBatch appends every part of appends as AppendToStream would, each
// with its own expected version and message ids, and commits the parts
// that succeed together. Outcomes are per part, in the order of appends:
// a part is all-or-nothing, and one part's version conflict, idempotent
// retry (answered with the original result), duplicate message id or bad
// event never fails the others. Parts that succeed share one transaction
// (the same TransactionID), except that a store may write a part in a
// second one when the part was refused by a state that changed meanwhile.
//
// A stream may appear in one part only: a later part for a stream (the
// same StreamID and partition) of an earlier part that passed validation
// fails with an error matching ErrInvalidArgument, without affecting the
// others; send it in the next batch. When two parts carry the same message
// id, one of them (which one is up to the store) fails with an error
// matching ErrDuplicateMessageID. An empty batch does nothing.
//
// The error is for the batch as a whole, and the results are nil when it
// is not nil: it matches ErrUnavailable when the batch never reached the
// database (nothing was written, retrying is safe); otherwise (the context
// ended, the connection was lost while the batch ran) the outcome of every
// part is unknown: each may or may not have committed. Re-send the parts
// with the same message ids to find out, which is safe since a committed
// part is then answered as an idempotent retry. A store that learned some
// parts' outcomes before losing the connection returns them instead, with
// the error of the lost connection as the Err of each part whose outcome
// is unknown.
type BatchAppender interface {
	AppendBatch(ctx context.Context, appends []StreamAppend) ([]StreamAppendResult, error)
}

// PrepareBatch runs PrepareAppend on every part of a batch and returns the
// prepared parts (defaults filled in, as PrepareAppend returns them) and,
// for each part, the error that refuses it before anything is written
// (nil for a part to append): its PrepareAppend error, or for a part
// whose stream already appeared in an earlier part of the batch, an error
// matching ErrInvalidArgument. Backends call it first so every backend
// refuses the same parts.
func PrepareBatch(appends []StreamAppend) ([]StreamAppend, []error) {
	prepared := make([]StreamAppend, len(appends))
	errs := make([]error, len(appends))
	type key struct {
		partition string
		stream    StreamID
	}
	first := make(map[key]int, len(appends))
	for i, a := range appends {
		events, opts, err := PrepareAppend(a.Stream, a.Events, a.Options)
		prepared[i] = StreamAppend{Stream: a.Stream, Events: events, Options: opts}
		if err != nil {
			errs[i] = err
			continue
		}
		k := key{opts.Partition, a.Stream}
		if j, seen := first[k]; seen {
			errs[i] = InvalidArgument("append batch: part %d appends to stream %q in partition %q, already appended to by part %d",
				i, a.Stream, opts.Partition, j)
			continue
		}
		first[k] = i
	}
	return prepared, errs
}
