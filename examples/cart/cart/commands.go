package cart

// Command is implemented by every cart command. Each names the tenant
// (the event-store partition) and the cart (the stream id) it is for, so a
// host can route it to the right stream.
type Command interface {
	// Tenant returns the tenant id the command is for.
	Tenant() string
	// Cart returns the cart id the command is for.
	Cart() string
	isCommand()
}

// CreateCart starts a new cart.
type CreateCart struct {
	TenantID string
	CartID   string
	Currency string
	// CreatedBy names who sends the command (recorded in EventMeta);
	// optional.
	CreatedBy string
}

// AddItem adds Item.Quantity units of Item.SKU. When the SKU is already in
// the cart only the quantity grows; the cart keeps the first name and price.
type AddItem struct {
	TenantID  string
	CartID    string
	Item      Item
	CreatedBy string
}

// RemoveItem takes Quantity units of SKU out of the cart.
type RemoveItem struct {
	TenantID  string
	CartID    string
	SKU       string
	Quantity  int
	CreatedBy string
}

// EmptyCart takes every item out of the cart.
type EmptyCart struct {
	TenantID  string
	CartID    string
	CreatedBy string
}

// CheckoutCart turns the cart into order OrderID. The caller generates the
// order id (for example a random UUID) so that Decide stays pure and a
// retried command produces the same event.
type CheckoutCart struct {
	TenantID  string
	CartID    string
	OrderID   string
	CreatedBy string
}

// CancelCart cancels the cart.
type CancelCart struct {
	TenantID  string
	CartID    string
	Reason    string
	CreatedBy string
}

func (c CreateCart) Tenant() string   { return c.TenantID }
func (c AddItem) Tenant() string      { return c.TenantID }
func (c RemoveItem) Tenant() string   { return c.TenantID }
func (c EmptyCart) Tenant() string    { return c.TenantID }
func (c CheckoutCart) Tenant() string { return c.TenantID }
func (c CancelCart) Tenant() string   { return c.TenantID }

func (c CreateCart) Cart() string   { return c.CartID }
func (c AddItem) Cart() string      { return c.CartID }
func (c RemoveItem) Cart() string   { return c.CartID }
func (c EmptyCart) Cart() string    { return c.CartID }
func (c CheckoutCart) Cart() string { return c.CartID }
func (c CancelCart) Cart() string   { return c.CartID }

func (CreateCart) isCommand()   {}
func (AddItem) isCommand()      {}
func (RemoveItem) isCommand()   {}
func (EmptyCart) isCommand()    {}
func (CheckoutCart) isCommand() {}
func (CancelCart) isCommand()   {}
