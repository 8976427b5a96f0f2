package cart

import (
	"bytes"
	"fmt"
)

// Event type names, as stored in the event log and registered by
// RegisterEvents.
const (
	TypeCartCreated         = "CartCreated"
	TypeItemAddedToCart     = "ItemAddedToCart"
	TypeItemRemovedFromCart = "ItemRemovedFromCart"
	TypeCartEmptied         = "CartEmptied"
	TypeCartCheckedOut      = "CartCheckedOut"
	TypeCartCancelled       = "CartCancelled"
)

// EventSchemaVersion is the version recorded in every event's EventMeta.
const EventSchemaVersion = 1

// Event is implemented by every cart event. Each is stored as
// {"eventData": {...}, "eventMeta": {...}}, the seed application's shape.
type Event interface {
	// EventType returns the registered type name (TypeCartCreated, ...).
	EventType() string
	// Meta returns the event's metadata.
	Meta() EventMeta
	isEvent()
}

// EventMeta is stored with every cart event under "eventMeta".
type EventMeta struct {
	TenantID string `json:"tenantId"`
	CartID   string `json:"cartId"`
	// CreatedBy names who sent the command; empty when unknown.
	CreatedBy string `json:"createdBy"`
	// Version is the event's schema version, EventSchemaVersion.
	Version int `json:"version"`
}

// Item is a line of a cart: a SKU, its name and unit price, and a quantity.
type Item struct {
	SKU       string  `json:"sku"`
	Name      string  `json:"name"`
	UnitPrice Decimal `json:"unitPrice"`
	Quantity  int     `json:"quantity"`
}

// Subtotal returns UnitPrice × Quantity.
func (i Item) Subtotal() Decimal { return i.UnitPrice.MulInt(int64(i.Quantity)) }

// CartCreated records a new cart.
type CartCreated struct {
	EventData CartCreatedData `json:"eventData"`
	EventMeta EventMeta       `json:"eventMeta"`
}

// CartCreatedData is the body of CartCreated.
type CartCreatedData struct {
	Currency string `json:"currency"`
}

// ItemAddedToCart records units of an item added to the cart. When the SKU
// is already in the cart only its quantity grows; the first name and unit
// price are kept.
type ItemAddedToCart struct {
	EventData ItemAddedToCartData `json:"eventData"`
	EventMeta EventMeta           `json:"eventMeta"`
}

// ItemAddedToCartData is the body of ItemAddedToCart.
type ItemAddedToCartData struct {
	Item Item `json:"item"`
}

// ItemRemovedFromCart records units of a SKU taken out of the cart.
type ItemRemovedFromCart struct {
	EventData ItemRemovedFromCartData `json:"eventData"`
	EventMeta EventMeta               `json:"eventMeta"`
}

// ItemRemovedFromCartData is the body of ItemRemovedFromCart.
type ItemRemovedFromCartData struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// CartEmptied records that every item was taken out of the cart. Its
// eventData is JSON null, as in the seed application.
type CartEmptied struct {
	EventData NoData    `json:"eventData"`
	EventMeta EventMeta `json:"eventMeta"`
}

// NoData is the body of an event that carries none. It is written as JSON
// null and reads null or an empty object.
type NoData struct{}

// MarshalJSON writes null.
func (NoData) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// UnmarshalJSON accepts null or an object (whose fields are ignored).
func (*NoData) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) || bytes.HasPrefix(data, []byte("{")) {
		return nil
	}
	return fmt.Errorf("cart: event data must be null or an object, got %.40s", data)
}

// CartCheckedOut records a checkout: the order created and the cart's total.
type CartCheckedOut struct {
	EventData CartCheckedOutData `json:"eventData"`
	EventMeta EventMeta          `json:"eventMeta"`
}

// CartCheckedOutData is the body of CartCheckedOut.
type CartCheckedOutData struct {
	OrderID string  `json:"orderId"`
	Total   Decimal `json:"total"`
}

// CartCancelled records a cancelled cart.
type CartCancelled struct {
	EventData CartCancelledData `json:"eventData"`
	EventMeta EventMeta         `json:"eventMeta"`
}

// CartCancelledData is the body of CartCancelled.
type CartCancelledData struct {
	Reason string `json:"reason"`
}

func (CartCreated) EventType() string         { return TypeCartCreated }
func (ItemAddedToCart) EventType() string     { return TypeItemAddedToCart }
func (ItemRemovedFromCart) EventType() string { return TypeItemRemovedFromCart }
func (CartEmptied) EventType() string         { return TypeCartEmptied }
func (CartCheckedOut) EventType() string      { return TypeCartCheckedOut }
func (CartCancelled) EventType() string       { return TypeCartCancelled }

func (e CartCreated) Meta() EventMeta         { return e.EventMeta }
func (e ItemAddedToCart) Meta() EventMeta     { return e.EventMeta }
func (e ItemRemovedFromCart) Meta() EventMeta { return e.EventMeta }
func (e CartEmptied) Meta() EventMeta         { return e.EventMeta }
func (e CartCheckedOut) Meta() EventMeta      { return e.EventMeta }
func (e CartCancelled) Meta() EventMeta       { return e.EventMeta }

func (CartCreated) isEvent()         {}
func (ItemAddedToCart) isEvent()     {}
func (ItemRemovedFromCart) isEvent() {}
func (CartEmptied) isEvent()         {}
func (CartCheckedOut) isEvent()      {}
func (CartCancelled) isEvent()       {}
