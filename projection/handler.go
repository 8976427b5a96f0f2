package projection

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// Handler applies one event to a read model. tx is the transaction that
// also advances the checkpoint: writes made through it commit together with
// the checkpoint or not at all, which is what makes a projection's effect
// exactly-once. Effects outside tx (calls to other systems) happen at least
// once. A returned error rolls the transaction back; the checkpoint does not
// pass the event.
type Handler func(ctx context.Context, tx pgx.Tx, e store.Event) error

// Registry maps an event type to the handlers run for it, in order. Events
// whose type has no handler are still checkpointed.
type Registry map[string][]Handler

// MergeRegistries combines registries: for every event type, the handlers of
// each registry in argument order. Merging no registries, or only empty
// ones, gives an empty (non-nil) registry. The arguments are not modified.
func MergeRegistries(registries ...Registry) Registry {
	out := Registry{}
	for _, r := range registries {
		for typ, hs := range r {
			if len(hs) == 0 {
				continue
			}
			merged := make([]Handler, 0, len(out[typ])+len(hs))
			merged = append(merged, out[typ]...)
			merged = append(merged, hs...)
			out[typ] = merged
		}
	}
	return out
}

// handlersFor returns the handlers registered for typ.
func (r Registry) handlersFor(typ string) []Handler { return r[typ] }

// BatchHandler applies a whole batch of events (every event of the batch,
// whatever its type, in log order) in one call, so it can write many rows
// per statement. tx is the batch's transaction, which also advances the
// checkpoint. A returned error rolls the batch back.
type BatchHandler interface {
	HandleBatch(ctx context.Context, tx pgx.Tx, events []store.Event) error
}

// BatchFinisher is implemented by batch handlers that keep state in memory
// between batches (a cache). FinishBatch is called once after every
// HandleBatch call, with the same tx, once the transaction has ended:
// committed reports whether it committed. A handler must treat an
// uncommitted batch as never applied.
type BatchFinisher interface {
	FinishBatch(tx pgx.Tx, committed bool)
}

// Resetter is implemented by batch handlers that own read-model rows.
// Rebuild calls ResetReadModel in the transaction that resets the
// checkpoint, to delete the rows the projection wrote: those of partition,
// or of every partition when partition is AllPartitions.
type Resetter interface {
	ResetReadModel(ctx context.Context, tx pgx.Tx, partition string) error
}
