package cart

import (
	"fmt"

	"github.com/troupehq/troupe/store"
)

// StreamType is the stream type of cart streams. A cart's stream id is its
// cart id and its partition is its tenant id.
const StreamType = "cart"

// RegisterEvents registers every cart event with c under its Type* name.
func RegisterEvents(c *store.JSONCodec) error {
	for _, e := range []Event{CartCreated{}, ItemAddedToCart{}, ItemRemovedFromCart{},
		CartEmptied{}, CartCheckedOut{}, CartCancelled{}} {
		if err := c.Register(e.EventType(), e); err != nil {
			return fmt.Errorf("register cart event %s: %w", e.EventType(), err)
		}
	}
	return nil
}
