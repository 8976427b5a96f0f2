package actor

import (
	"fmt"
	"slices"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/store"
)

// appendReq is one stream's ready append, waiting for the host's appender.
type appendReq struct {
	part store.StreamAppend
	// span carries the part's append span, under which the store's own
	// spans of a batch it leads are recorded.
	span trace.Span
	// bytes is the size of the part's event data and metadata, for
	// Config.MaxAppendBatchBytes.
	bytes int
	// done receives the part's outcome. It runs on the appender's
	// goroutine and must not block.
	done func(store.AppendResult, error)
}

// appender is the host-wide group commit: stream actors hand it their
// ready appends (at most one per stream at a time, so each stream's order
// is kept), and it writes the appends of many streams with one
// store.AppendBatch call, one round trip and one commit. There is no timer:
// when fewer than Config.AppendBatchesInFlight batches are in flight a new
// append goes out at once (alone, through AppendToStream, when nothing else
// is waiting); otherwise it waits for the next batch, which the goroutine
// finishing a batch gathers from everything that arrived meanwhile, up to
// Config.MaxAppendBatch streams and Config.MaxAppendBatchBytes bytes.
type appender struct {
	h        *Host
	batches  store.BatchAppender
	maxParts int
	maxBytes int
	maxSends int

	mu       sync.Mutex
	queue    []*appendReq
	inflight int // batches being written
}

// newAppender returns the host's appender, or nil when appends go one
// stream at a time: the store cannot append to several streams at once, or
// Config.MaxAppendBatch is 1.
func newAppender(h *Host) *appender {
	ba, ok := h.store.(store.BatchAppender)
	if !ok || h.cfg.MaxAppendBatch <= 1 {
		return nil
	}
	return &appender{h: h, batches: ba, maxParts: h.cfg.MaxAppendBatch, maxBytes: h.cfg.MaxAppendBatchBytes,
		maxSends: h.cfg.AppendBatchesInFlight}
}

// submit queues r and starts a batch when fewer than maxSends are in
// flight. The goroutine it starts keeps writing batches while appends keep
// arriving, so a busy host reuses one goroutine (and its grown stack)
// instead of starting one per append.
func (ap *appender) submit(r *appendReq) {
	ap.mu.Lock()
	ap.queue = append(ap.queue, r)
	if ap.inflight >= ap.maxSends {
		ap.mu.Unlock()
		return
	}
	ap.inflight++
	batch := ap.takeLocked()
	ap.mu.Unlock()
	ap.h.jobs.Add(1)
	go ap.run(batch)
}

// takeLocked removes the next batch from the queue: the oldest appends, up
// to maxParts of them and maxBytes in all (a first append larger than
// maxBytes goes alone). Called with ap.mu held and the queue not empty.
func (ap *appender) takeLocked() []*appendReq {
	n, size := 0, 0
	for n < len(ap.queue) && n < ap.maxParts {
		b := ap.queue[n].bytes
		if n > 0 && size+b > ap.maxBytes {
			break
		}
		size += b
		n++
	}
	batch := slices.Clone(ap.queue[:n])
	clear(ap.queue[:n])
	ap.queue = ap.queue[n:]
	if len(ap.queue) == 0 {
		ap.queue = nil // let the backing array go
	}
	return batch
}

// run writes batch, then the batches that gathered meanwhile, until the
// queue is empty.
func (ap *appender) run(batch []*appendReq) {
	defer ap.h.jobs.Done()
	for {
		ap.write(batch)
		ap.mu.Lock()
		if len(ap.queue) == 0 {
			ap.inflight--
			ap.mu.Unlock()
			return
		}
		batch = ap.takeLocked()
		ap.mu.Unlock()
	}
}

// write makes the store call for one batch and hands every part its
// outcome. A lone append goes through AppendToStream; a batch through
// AppendBatch, whose error for the batch as a whole (nothing was sent, or
// the outcome is unknown) becomes every part's error.
func (ap *appender) write(batch []*appendReq) {
	h := ap.h
	ctx, cancel := h.storeCtx()
	defer cancel()
	ctx = trace.ContextWithSpan(ctx, batch[0].span)
	h.appendCalls.Add(1)
	if len(batch) == 1 {
		p := batch[0].part
		res, err := h.store.AppendToStream(ctx, p.Stream, p.Events, p.Options)
		batch[0].done(res, err)
		return
	}
	parts := make([]store.StreamAppend, len(batch))
	for i, r := range batch {
		parts[i] = r.part
	}
	results, err := ap.batches.AppendBatch(ctx, parts)
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("actor: the store answered a batch of %d appends with %d outcomes", len(batch), len(results))
	}
	for i, r := range batch {
		if err != nil {
			r.done(store.AppendResult{}, err)
			continue
		}
		r.done(results[i].Result, results[i].Err)
	}
}

// eventBytes is the size of events' data and metadata keys, an estimate of
// what they weigh in a batch.
func eventBytes(events []store.EventData) int {
	n := 0
	for _, e := range events {
		n += len(e.Data) + len(e.Type) + len(e.MessageID) + 64*len(e.Metadata)
	}
	return n
}
