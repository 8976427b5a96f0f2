package benchcart

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/store"
)

// StreamType is the stream type of cart streams. A cart's stream id is its
// cart id and its partition is its tenant id.
const StreamType = "cart"

// Event type names, as stored.
const (
	TypeCartCreated     = "CartCreated"
	TypeItemAddedToCart = "ItemAddedToCart"
	TypeCartCheckedOut  = "CartCheckedOut"
)

// EventSchemaVersion is the version recorded in every event's EventMeta.
const EventSchemaVersion = 1

// Price is an amount in cents. It is stored as a JSON number with at most
// two decimals (19.99, 40), as the cart example stores its prices.
type Price int64

// String returns the amount with its decimals, trailing zeros dropped.
func (p Price) String() string {
	sign := ""
	if p < 0 {
		sign, p = "-", -p
	}
	whole, cents := int64(p)/100, int64(p)%100
	switch {
	case cents == 0:
		return fmt.Sprintf("%s%d", sign, whole)
	case cents%10 == 0:
		return fmt.Sprintf("%s%d.%d", sign, whole, cents/10)
	default:
		return fmt.Sprintf("%s%d.%02d", sign, whole, cents)
	}
}

// MarshalJSON writes the amount as a number.
func (p Price) MarshalJSON() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalJSON reads a number with at most two decimals.
func (p *Price) UnmarshalJSON(data []byte) error {
	s := string(data)
	neg := strings.HasPrefix(s, "-")
	whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if len(frac) > 2 {
		return fmt.Errorf("benchcart: price %s has more than two decimals", s)
	}
	frac += strings.Repeat("0", 2-len(frac))
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return fmt.Errorf("benchcart: price %s: %w", s, err)
	}
	f, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return fmt.Errorf("benchcart: price %s: %w", s, err)
	}
	v := w*100 + f
	if neg {
		v = -v
	}
	*p = Price(v)
	return nil
}

// Item is a line of a cart.
type Item struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	UnitPrice Price  `json:"unitPrice"`
	Quantity  int    `json:"quantity"`
}

// Command is a command for one cart.
type Command interface {
	// Tenant returns the tenant id the command is for.
	Tenant() string
	// Cart returns the id of the cart the command is for.
	Cart() string
}

// CreateCart opens a cart.
type CreateCart struct {
	TenantID, CartID, Currency, CreatedBy string
}

// AddItem adds units of an item to an open cart.
type AddItem struct {
	TenantID, CartID, CreatedBy string
	Item                        Item
}

// CheckoutCart closes an open cart with an order id.
type CheckoutCart struct {
	TenantID, CartID, OrderID, CreatedBy string
}

func (c CreateCart) Tenant() string   { return c.TenantID }
func (c AddItem) Tenant() string      { return c.TenantID }
func (c CheckoutCart) Tenant() string { return c.TenantID }
func (c CreateCart) Cart() string     { return c.CartID }
func (c AddItem) Cart() string        { return c.CartID }
func (c CheckoutCart) Cart() string   { return c.CartID }

// EventMeta is stored with every event under "eventMeta".
type EventMeta struct {
	TenantID  string `json:"tenantId"`
	CartID    string `json:"cartId"`
	CreatedBy string `json:"createdBy"`
	Version   int    `json:"version"`
}

// Event is implemented by every cart event.
type Event interface {
	EventType() string
}

// CartCreated records a new cart.
type CartCreated struct {
	EventData CartCreatedData `json:"eventData"`
	EventMeta EventMeta       `json:"eventMeta"`
}

// CartCreatedData is the body of CartCreated.
type CartCreatedData struct {
	Currency string `json:"currency"`
}

// ItemAddedToCart records units of an item added to the cart.
type ItemAddedToCart struct {
	EventData ItemAddedToCartData `json:"eventData"`
	EventMeta EventMeta           `json:"eventMeta"`
}

// ItemAddedToCartData is the body of ItemAddedToCart.
type ItemAddedToCartData struct {
	Item Item `json:"item"`
}

// CartCheckedOut records a checkout: the order and the cart's total.
type CartCheckedOut struct {
	EventData CartCheckedOutData `json:"eventData"`
	EventMeta EventMeta          `json:"eventMeta"`
}

// CartCheckedOutData is the body of CartCheckedOut.
type CartCheckedOutData struct {
	OrderID string `json:"orderId"`
	Total   Price  `json:"total"`
}

func (CartCreated) EventType() string     { return TypeCartCreated }
func (ItemAddedToCart) EventType() string { return TypeItemAddedToCart }
func (CartCheckedOut) EventType() string  { return TypeCartCheckedOut }

// RegisterEvents registers every cart event with c under its Type* name.
func RegisterEvents(c *store.JSONCodec) error {
	for _, e := range []Event{CartCreated{}, ItemAddedToCart{}, CartCheckedOut{}} {
		if err := c.Register(e.EventType(), e); err != nil {
			return fmt.Errorf("register cart event %s: %w", e.EventType(), err)
		}
	}
	return nil
}

// NewCodec returns a JSON codec with every cart event registered.
func NewCodec() (*store.JSONCodec, error) {
	c := store.NewJSONCodec()
	if err := RegisterEvents(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Status is where a cart is in its life.
type Status string

// Cart statuses.
const (
	StatusInit       Status = "init"
	StatusActive     Status = "active"
	StatusCheckedOut Status = "checkedOut"
)

// State is a cart as its events leave it. Evolve never modifies the State
// (or the Items slice) it is given.
type State struct {
	Status   Status `json:"status"`
	TenantID string `json:"tenantId,omitempty"`
	CartID   string `json:"cartId,omitempty"`
	Currency string `json:"currency,omitempty"`
	Items    []Item `json:"items,omitempty"`
	OrderID  string `json:"orderId,omitempty"`
	Total    Price  `json:"total,omitzero"`
}

// InitialState returns the state of a cart that does not exist yet.
func InitialState() State { return State{Status: StatusInit} }

// Evolve returns the state after event e.
func Evolve(s State, e Event) State {
	switch e := e.(type) {
	case CartCreated:
		if s.Status != StatusInit {
			return s
		}
		return State{Status: StatusActive, TenantID: e.EventMeta.TenantID, CartID: e.EventMeta.CartID,
			Currency: e.EventData.Currency}
	case ItemAddedToCart:
		if s.Status != StatusActive {
			return s
		}
		add := e.EventData.Item
		items := make([]Item, 0, len(s.Items)+1)
		found := false
		for _, it := range s.Items {
			if it.SKU == add.SKU {
				it.Quantity += add.Quantity
				found = true
			}
			items = append(items, it)
		}
		if !found {
			items = append(items, add)
		}
		s.Items = items
		return s
	case CartCheckedOut:
		if s.Status != StatusActive {
			return s
		}
		s.Status, s.OrderID, s.Total = StatusCheckedOut, e.EventData.OrderID, e.EventData.Total
		return s
	}
	return s
}

// The rules Decide enforces.
var (
	ErrCartExists          = errors.New("cart already exists")
	ErrCartNotActive       = errors.New("cart is not active")
	ErrQuantityNotPositive = errors.New("quantity must be positive")
	ErrMissingSKU          = errors.New("item needs a SKU")
	ErrMissingOrderID      = errors.New("checkout needs an order id")
	ErrUnknownCommand      = errors.New("unknown cart command")
)

// Decide returns the events cmd produces for a cart in state s, or the
// broken rule marked with decider.Rejected.
func Decide(cmd Command, s State) ([]Event, error) {
	reject := func(err error) ([]Event, error) { return nil, decider.Rejected(err) }
	if _, ok := cmd.(CreateCart); !ok && s.Status != StatusActive {
		return reject(ErrCartNotActive)
	}
	switch c := cmd.(type) {
	case CreateCart:
		if s.Status != StatusInit {
			return reject(ErrCartExists)
		}
		return []Event{CartCreated{EventData: CartCreatedData{Currency: c.Currency}, EventMeta: meta(c, c.CreatedBy)}}, nil
	case AddItem:
		switch {
		case c.Item.Quantity <= 0:
			return reject(ErrQuantityNotPositive)
		case c.Item.SKU == "":
			return reject(ErrMissingSKU)
		}
		return []Event{ItemAddedToCart{EventData: ItemAddedToCartData{Item: c.Item}, EventMeta: meta(c, c.CreatedBy)}}, nil
	case CheckoutCart:
		if c.OrderID == "" {
			return reject(ErrMissingOrderID)
		}
		var total Price
		for _, it := range s.Items {
			total += it.UnitPrice * Price(it.Quantity)
		}
		return []Event{CartCheckedOut{EventData: CartCheckedOutData{OrderID: c.OrderID, Total: total},
			EventMeta: meta(c, c.CreatedBy)}}, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnknownCommand, cmd)
}

func meta(c Command, createdBy string) EventMeta {
	return EventMeta{TenantID: c.Tenant(), CartID: c.Cart(), CreatedBy: createdBy, Version: EventSchemaVersion}
}

// Decider returns the cart aggregate.
func Decider() decider.Decider[Command, Event, State] {
	return decider.Decider[Command, Event, State]{Decide: Decide, Evolve: Evolve, InitialState: InitialState}
}

// RegisterCommands registers every cart command with c: a host in cluster
// mode sends a command to the member owning its cart through the codec.
func RegisterCommands(c *store.JSONCodec) error {
	for name, cmd := range map[string]Command{"CreateCart": CreateCart{}, "AddItem": AddItem{}, "CheckoutCart": CheckoutCart{}} {
		if err := c.Register(name, cmd); err != nil {
			return fmt.Errorf("register cart command %s: %w", name, err)
		}
	}
	return nil
}

// Rules are the rules Decide enforces (actor.Kind.Errors in cluster mode).
func Rules() []error {
	return []error{ErrCartExists, ErrCartNotActive, ErrQuantityNotPositive, ErrMissingSKU, ErrMissingOrderID}
}
