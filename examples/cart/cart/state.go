package cart

// Status is where a cart is in its life.
type Status string

// Cart statuses. A cart starts in StatusInit, becomes StatusActive when
// created, and ends checked out or cancelled; both ends are final.
const (
	StatusInit       Status = "init"
	StatusActive     Status = "active"
	StatusCheckedOut Status = "checkedOut"
	StatusCancelled  Status = "cancelled"
)

// State is a cart as its events leave it. It is a value: Evolve never
// modifies the State (or the Items slice) it is given.
type State struct {
	Status   Status `json:"status"`
	TenantID string `json:"tenantId,omitempty"`
	CartID   string `json:"cartId,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Items in the order their SKUs were first added; every quantity is
	// positive. nil when the cart holds nothing.
	Items []Item `json:"items,omitempty"`
	// OrderID and Total are set when the cart is checked out.
	OrderID string  `json:"orderId,omitempty"`
	Total   Decimal `json:"total,omitzero"`
	// CancelReason is set when the cart is cancelled.
	CancelReason string `json:"cancelReason,omitempty"`
}

// InitialState returns the state of a cart that does not exist yet.
func InitialState() State { return State{Status: StatusInit} }

// Item returns the cart's line for sku.
func (s State) Item(sku string) (Item, bool) {
	for _, it := range s.Items {
		if it.SKU == sku {
			return it, true
		}
	}
	return Item{}, false
}

// ItemsTotal returns Σ unit price × quantity over the cart's items (0 for
// an empty cart).
func (s State) ItemsTotal() Decimal {
	var total Decimal
	for _, it := range s.Items {
		total = total.Add(it.Subtotal())
	}
	return total
}

// Evolve returns the state after event e. It never fails: an event that
// cannot follow the state (which Decide never produces, such as an item
// event for a cart that is not active) leaves the state unchanged.
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
		s.Items = nonEmpty(items)
		return s
	case ItemRemovedFromCart:
		if s.Status != StatusActive {
			return s
		}
		items := make([]Item, 0, len(s.Items))
		for _, it := range s.Items {
			if it.SKU == e.EventData.SKU {
				it.Quantity -= e.EventData.Quantity
			}
			if it.Quantity > 0 {
				items = append(items, it)
			}
		}
		s.Items = nonEmpty(items)
		return s
	case CartEmptied:
		if s.Status != StatusActive {
			return s
		}
		s.Items = nil
		return s
	case CartCheckedOut:
		if s.Status != StatusActive {
			return s
		}
		s.Status = StatusCheckedOut
		s.OrderID = e.EventData.OrderID
		s.Total = e.EventData.Total
		return s
	case CartCancelled:
		if s.Status != StatusActive {
			return s
		}
		s.Status = StatusCancelled
		s.CancelReason = e.EventData.Reason
		return s
	}
	return s
}

func nonEmpty(items []Item) []Item {
	if len(items) == 0 {
		return nil
	}
	return items
}
