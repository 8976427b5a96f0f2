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

// Command type names, as registered by RegisterCommands: a command crosses
// the wire between cluster members through the codec.
const (
	TypeCreateCart   = "CreateCart"
	TypeAddItem      = "AddItem"
	TypeRemoveItem   = "RemoveItem"
	TypeEmptyCart    = "EmptyCart"
	TypeCheckoutCart = "CheckoutCart"
	TypeCancelCart   = "CancelCart"
)

// RegisterCommands registers every cart command with c under its Type*
// name. A host in cluster mode sends a command to the member that owns its
// cart through the codec, so it needs them; a single process does not.
func RegisterCommands(c *store.JSONCodec) error {
	for name, cmd := range map[string]Command{TypeCreateCart: CreateCart{}, TypeAddItem: AddItem{},
		TypeRemoveItem: RemoveItem{}, TypeEmptyCart: EmptyCart{}, TypeCheckoutCart: CheckoutCart{},
		TypeCancelCart: CancelCart{}} {
		if err := c.Register(name, cmd); err != nil {
			return fmt.Errorf("register cart command %s: %w", name, err)
		}
	}
	return nil
}
