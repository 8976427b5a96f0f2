package memory

import (
	"context"
	"errors"
	"fmt"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/internal/upcasting"
)

var (
	_ store.BatchAppender = (*Store)(nil)
	_ store.BatchAppender = (*session)(nil)
)

// AppendBatch implements [store.BatchAppender]: the parts run one after the
// other in one transaction, each undone on its own when it fails, and the
// transaction commits the parts that succeeded. A context that ends before
// the store lock is taken fails the batch with an error matching
// store.ErrUnavailable and the context's error; nothing is written.
func (s *Store) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	if len(appends) == 0 {
		return nil, nil
	}
	appends = upcasting.VersionedBatch(s.upcaster, appends)
	var out []store.StreamAppendResult
	err := s.do(ctx, func(t *txn) error {
		out = t.appendBatch(appends)
		return nil
	})
	if err != nil {
		return nil, batchError(err)
	}
	return out, nil
}

// AppendBatch appends the parts in the session's transaction.
func (ses *session) AppendBatch(ctx context.Context, appends []store.StreamAppend) ([]store.StreamAppendResult, error) {
	if len(appends) == 0 {
		return nil, nil
	}
	appends = upcasting.VersionedBatch(ses.upcaster, appends)
	var out []store.StreamAppendResult
	err := ses.do(ctx, func(t *txn) error {
		out = t.appendBatch(appends)
		return nil
	})
	if err != nil {
		return nil, batchError(err)
	}
	return out, nil
}

// appendBatch appends each part on t, undoing a part's writes when it
// fails, and returns the outcomes.
func (t *txn) appendBatch(appends []store.StreamAppend) []store.StreamAppendResult {
	parts, errs := store.PrepareBatch(appends)
	out := make([]store.StreamAppendResult, len(parts))
	for i, p := range parts {
		if errs[i] != nil {
			out[i].Err = errs[i]
			continue
		}
		mark := len(t.undo)
		res, err := t.append(p.Stream, p.Events, p.Options)
		if err != nil {
			t.rollbackTo(mark)
			out[i].Err = fmt.Errorf("append to stream %q: %w", p.Stream, err)
			continue
		}
		out[i].Result = res
	}
	return out
}

// batchError describes a batch that never ran: the context ended first
// (matching store.ErrUnavailable), or the store was misused (its own
// session's context, an ended session).
func batchError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("append batch: %w: %w", store.ErrUnavailable, err)
	}
	return fmt.Errorf("append batch: %w", err)
}
