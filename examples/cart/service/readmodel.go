package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/store"
)

// CartView is a cart as the read model shows it: the body of GET
// /api/tenants/{tenantId}/carts/{cartId}. Total and OrderID are set only
// for a checked-out cart.
type CartView struct {
	TenantID     string        `json:"tenantId"`
	CartID       string        `json:"cartId"`
	Currency     string        `json:"currency"`
	Items        []cart.Item   `json:"items"`
	IsCheckedOut bool          `json:"isCheckedOut"`
	IsCancelled  bool          `json:"isCancelled"`
	Total        *cart.Decimal `json:"total,omitempty"`
	OrderID      string        `json:"orderId,omitempty"`
}

// viewOf renders a cart's folded state as the read model shows it.
func viewOf(tenant, cartID string, s cart.State) CartView {
	v := CartView{
		TenantID:     tenant,
		CartID:       cartID,
		Currency:     s.Currency,
		Items:        s.Items,
		IsCheckedOut: s.Status == cart.StatusCheckedOut,
		IsCancelled:  s.Status == cart.StatusCancelled,
	}
	if v.Items == nil {
		v.Items = []cart.Item{}
	}
	if v.IsCheckedOut {
		total := s.Total
		v.Total = &total
		v.OrderID = s.OrderID
	}
	return v
}

// readModel is where reads come from: the carts table kept by a continuous
// projection (PostgreSQL) or an in-process projection (memory).
type readModel interface {
	start(ctx context.Context) error
	stop(ctx context.Context) error
	// waitFor returns once the read model has applied every event up to
	// pos, or ctx's error.
	waitFor(ctx context.Context, pos store.Position) error
	// get returns a tenant's cart; ok is false when the read model has no
	// such cart.
	get(ctx context.Context, tenant, cartID string) (v CartView, ok bool, err error)
	// list returns a tenant's carts ordered by cart id.
	list(ctx context.Context, tenant string) ([]CartView, error)
}

// errReadModelFailed is returned by waitFor when the read model stopped at
// an event it cannot apply.
var errReadModelFailed = errors.New("carts read model stopped at a failing event")

// FormatPosition renders a position in the global log as the token write
// responses carry in "position" and reads accept in ?waitFor:
// "<transaction id>.<global position>".
func FormatPosition(p store.Position) string {
	return strconv.FormatUint(p.TransactionID, 10) + "." + strconv.FormatInt(int64(p.GlobalPosition), 10)
}

// ParsePosition reads a token made by FormatPosition.
func ParsePosition(token string) (store.Position, error) {
	tx, gp, ok := strings.Cut(token, ".")
	bad := func() (store.Position, error) {
		return store.Position{}, fmt.Errorf("%q is not a position token: want <transaction id>.<global position> as returned in \"position\" by a write", token)
	}
	if !ok || !allDigits(tx) || !allDigits(gp) {
		return bad()
	}
	t, err := strconv.ParseUint(tx, 10, 64)
	if err != nil {
		return bad()
	}
	g, err := strconv.ParseInt(gp, 10, 64)
	if err != nil {
		return bad()
	}
	return store.Position{TransactionID: t, GlobalPosition: store.GlobalPosition(g)}, nil
}

func allDigits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
