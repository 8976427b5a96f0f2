package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/store"
)

const cartPath = "/api/tenants/{tenantId}/carts/{cartId}"

// routes builds the API: one handler per method and path (Go 1.22
// patterns), each traced and with its body capped; other methods on a known
// path get a JSON 405 and unknown paths a JSON 404.
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	allow := map[string]string{}
	handle := func(method, path string, h http.HandlerFunc) {
		route := method + " " + path
		mux.HandleFunc(route, traced(s.tracer, route, s.withDeadline(s.limitBody(h))))
		if allow[path] != "" {
			allow[path] += ", "
		}
		allow[path] += method
	}
	handle(http.MethodPost, "/api/tenants", s.createTenant)
	handle(http.MethodGet, "/api/tenants", s.listTenants)
	handle(http.MethodGet, "/api/tenants/{id}", s.getTenant)
	handle(http.MethodPost, "/api/tenants/{tenantId}/carts", s.createCart)
	handle(http.MethodGet, "/api/tenants/{tenantId}/carts", s.listCarts)
	handle(http.MethodGet, cartPath, s.getCart)
	handle(http.MethodPut, cartPath+"/items", s.updateItems)
	handle(http.MethodPut, cartPath+"/empty", s.emptyCart)
	handle(http.MethodPut, cartPath+"/checkout", s.checkoutCart)
	handle(http.MethodPut, cartPath+"/cancel", s.cancelCart)
	if s.cfg.Cluster != nil {
		handle(http.MethodGet, "/api/cluster", s.clusterMembers)
	}
	for path, methods := range allow {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			writeError(w, errorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, path, methods))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("no route for %s %s", r.Method, quoteShort(r.URL.Path)))
	})
	if s.cfg.Cluster == nil {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(MemberHeader, s.host.Member())
		mux.ServeHTTP(w, r)
	})
}

// Headers of the answers of a cluster member.
const (
	// MemberHeader names the member that served the request.
	MemberHeader = "X-Troupe-Member"
	// OwnerHeader names the member that owns the cart a write was for
	// when the command was sent.
	OwnerHeader = "X-Troupe-Owner"
)

// ClusterView is the answer of GET /api/cluster.
type ClusterView struct {
	// Member is the member that answers.
	Member string `json:"member"`
	// Members are the members it knows now, itself included, sorted.
	Members []string `json:"members"`
}

func (s *Service) clusterMembers(w http.ResponseWriter, r *http.Request) {
	members := slices.Clone(s.host.Members())
	slices.Sort(members)
	if members == nil {
		members = []string{}
	}
	writeJSON(w, http.StatusOK, ClusterView{Member: s.host.Member(), Members: members})
}

func (s *Service) limitBody(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		}
		h(w, r)
	}
}

// internal logs err and returns the answer to a failure of the service:
// 503 (with Retry-After) when the database could not serve the request in
// time or at all, else 500.
func (s *Service) internal(ctx context.Context, what string, err error) *apiError {
	if why := unavailability(ctx, err); why != "" {
		s.log.WarnContext(ctx, "cart_api_unavailable", slog.String("operation", what), slog.String("reason", why),
			slog.String("error", err.Error()))
		return s.unavailable(why, what)
	}
	s.log.ErrorContext(ctx, "cart_api_failed", slog.String("operation", what), slog.String("error", err.Error()))
	return errorf(http.StatusInternalServerError, "internal error while %s", what)
}

// Tenants.

func (s *Service) createTenant(w http.ResponseWriter, r *http.Request) {
	in, aerr := parseCreateTenant(r.Body)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	t, created, err := s.tenants.create(r.Context(), store.TenantID(in.TenantID), in.Name)
	if err != nil {
		if errors.Is(err, store.ErrInvalidTenantID) {
			writeError(w, badRequest("field \"tenantId\": %v", validateTenantID(in.TenantID)))
			return
		}
		writeError(w, s.internal(r.Context(), "creating a tenant", err))
		return
	}
	s.tenantIdx.add(t)
	if !created {
		writeError(w, errorf(http.StatusConflict, "tenant %q already exists", in.TenantID))
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Service) listTenants(w http.ResponseWriter, r *http.Request) {
	ts, err := s.tenants.list(r.Context())
	if err != nil {
		writeError(w, s.internal(r.Context(), "listing tenants", err))
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Service) getTenant(w http.ResponseWriter, r *http.Request) {
	t, aerr := s.tenant(r.Context(), r.PathValue("id"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// tenant resolves a path id (a tenantId or a tenant's UUID) to a
// registered tenant.
func (s *Service) tenant(ctx context.Context, id string) (TenantView, *apiError) {
	if aerr := tenantSyntax(id); aerr != nil {
		return TenantView{}, aerr
	}
	t, err := s.tenantIdx.find(ctx, s.tenants, id)
	if errors.Is(err, errTenantNotFound) {
		return TenantView{}, notFound("tenant %q not found", id)
	}
	if err != nil {
		return TenantView{}, s.internal(ctx, "looking the tenant up", err)
	}
	return t, nil
}

// Carts: reads.

func (s *Service) listCarts(w http.ResponseWriter, r *http.Request) {
	t, aerr := s.tenant(r.Context(), r.PathValue("tenantId"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if aerr := s.waitForReadModel(r); aerr != nil {
		writeError(w, aerr)
		return
	}
	carts, err := s.rm.list(r.Context(), t.TenantID)
	if err != nil {
		writeError(w, s.internal(r.Context(), "listing carts", err))
		return
	}
	writeJSON(w, http.StatusOK, carts)
}

func (s *Service) getCart(w http.ResponseWriter, r *http.Request) {
	cartID, aerr := parseUUID("cart id", r.PathValue("cartId"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	t, aerr := s.tenant(r.Context(), r.PathValue("tenantId"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if aerr := s.waitForReadModel(r); aerr != nil {
		writeError(w, aerr)
		return
	}
	v, ok, err := s.rm.get(r.Context(), t.TenantID, cartID)
	if err != nil {
		writeError(w, s.internal(r.Context(), "reading the cart", err))
		return
	}
	if !ok {
		writeError(w, notFound("cart %s not found in tenant %q", cartID, t.TenantID))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// waitForReadModel honours ?waitFor=<position token>&timeout=<duration>.
func (s *Service) waitForReadModel(r *http.Request) *apiError {
	q := r.URL.Query()
	token := q.Get("waitFor")
	if token == "" {
		return nil
	}
	pos, err := ParsePosition(token)
	if err != nil {
		return badRequest("query parameter waitFor: %v", err)
	}
	timeout := s.cfg.WaitTimeout
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d <= 0:
			return badRequest("query parameter timeout: %s is not a positive duration such as 2s or 500ms", quoteShort(v))
		case d > s.cfg.MaxWaitTimeout:
			return badRequest("query parameter timeout: %s is longer than the maximum, %s", d, s.cfg.MaxWaitTimeout)
		}
		timeout = d
	}
	// The wait is also bounded by the request's deadline.
	if dl, ok := r.Context().Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl).Round(time.Millisecond), 0)
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	err = s.rm.waitFor(ctx, pos)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errReadModelFailed):
		return s.internal(r.Context(), "waiting for the read model", err)
	case ctx.Err() != nil:
		return errorf(http.StatusServiceUnavailable, "the read model has not reached position %s within %s; try again", token, timeout)
	}
	return s.internal(r.Context(), "waiting for the read model", err)
}

// Carts: writes.

// writeAnswer is the body of a successful write: the seed's message, plus
// where the write landed. Pass Position as ?waitFor to a read to see it.
type writeAnswer struct {
	Message        string        `json:"message"`
	CartID         string        `json:"cartId,omitempty"`
	OrderID        string        `json:"orderId,omitempty"`
	Total          *cart.Decimal `json:"total,omitempty"`
	Version        int64         `json:"version"`
	GlobalPosition int64         `json:"globalPosition"`
	Position       string        `json:"position"`
}

func answer(msg string, res actor.Result[cart.Event, cart.State]) writeAnswer {
	return writeAnswer{Message: msg, Version: int64(res.Version), GlobalPosition: int64(res.GlobalPosition),
		Position: FormatPosition(res.Position)}
}

// cartTarget checks the path of a cart write: a cart UUID and a
// registered tenant.
func (s *Service) cartTarget(r *http.Request) (cartID string, aerr *apiError) {
	if cartID, aerr = parseUUID("cart id", r.PathValue("cartId")); aerr != nil {
		return "", aerr
	}
	if aerr := tenantSyntax(r.PathValue("tenantId")); aerr != nil {
		return "", aerr
	}
	return cartID, nil
}

// tenantSyntax rejects a path tenant that can be neither a tenantId nor a
// UUID, before the body is read.
func tenantSyntax(id string) *apiError {
	if store.ValidateTenantID(id) != nil {
		if _, err := parseCanonicalUUID(id); err != nil {
			return badRequest("tenant id %s is neither a tenant id (%v) nor a tenant's UUID",
				quoteShort(id), validateTenantID(id))
		}
	}
	return nil
}

// send hands cmd to its cart's stream actor (on the member that owns the
// cart, in a cluster: the answer then names it in X-Troupe-Owner) and turns
// a failure into the answer for the client.
func (s *Service) send(ctx context.Context, w http.ResponseWriter, cmd cart.Command) (actor.Result[cart.Event, cart.State], *apiError) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	if s.cfg.Cluster != nil {
		if owner, err := s.host.Owner(KindName, cmd.Tenant(), store.StreamID(cmd.Cart())); err == nil && owner != "" {
			w.Header().Set(OwnerHeader, owner)
		}
	}
	res, err := s.carts.Send(ctx, cmd)
	if err == nil {
		return res, nil
	}
	return res, s.commandError(ctx, cmd, err)
}

// valueRules are the cart rules about a command's values alone (422);
// every other rule depends on the cart's state (409).
var valueRules = []error{cart.ErrQuantityNotPositive, cart.ErrMissingSKU, cart.ErrNegativePrice,
	cart.ErrPriceOutOfRange, cart.ErrMissingCurrency, cart.ErrMissingReason, cart.ErrMissingOrderID,
	cart.ErrMissingTenantID, cart.ErrMissingCartID}

func (s *Service) commandError(ctx context.Context, cmd cart.Command, err error) *apiError {
	switch {
	case errors.Is(err, decider.ErrRejected):
		if errors.Is(err, cart.ErrCartNotActive) {
			// A cart that was never created is not inactive: it is not
			// there (also when it is another tenant's). The look-up
			// shares the request's deadline.
			st, _, serr := s.carts.State(ctx, cmd.Tenant(), store.StreamID(cmd.Cart()))
			if serr == nil && st.Status == cart.StatusInit {
				return notFound("cart %s not found in tenant %q", cmd.Cart(), cmd.Tenant())
			}
		}
		for _, rule := range valueRules {
			if errors.Is(err, rule) {
				return errorf(http.StatusUnprocessableEntity, "%s", err.Error())
			}
		}
		return errorf(http.StatusConflict, "%s", err.Error())
	case errors.Is(err, store.ErrVersionConflict):
		return errorf(http.StatusConflict, "the cart was changed by someone else at the same time; try again")
	case errors.Is(err, store.ErrInvalidArgument):
		// The store refused the command's events before writing anything
		// (a value PostgreSQL cannot hold): the request's values are bad.
		return errorf(http.StatusBadRequest, "the store refused the command's values: %s", err.Error())
	case errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "the database is unavailable; nothing was written, try again")
	case errors.Is(err, actor.ErrStopped), errors.Is(err, actor.ErrNotStarted):
		return errorf(http.StatusServiceUnavailable, "the service is not running (shutting down?); try again")
	case errors.Is(err, actor.ErrOutcomeUnknown):
		s.log.WarnContext(ctx, "cart_command_outcome_unknown", slog.String("cart_id", cmd.Cart()), slog.String("error", err.Error()))
		return errorf(http.StatusServiceUnavailable, "the outcome of the command is unknown (the database connection failed); read the cart before trying again")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorf(http.StatusServiceUnavailable, "the command did not finish in time; read the cart before trying again")
	}
	return s.internal(ctx, fmt.Sprintf("handling %s", commandName(cmd)), err)
}

func (s *Service) createCart(w http.ResponseWriter, r *http.Request) {
	if aerr := tenantSyntax(r.PathValue("tenantId")); aerr != nil {
		writeError(w, aerr)
		return
	}
	currency, aerr := parseCreateCart(r.Body)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	t, aerr := s.tenant(r.Context(), r.PathValue("tenantId"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	cartID := uuid.NewString()
	res, aerr := s.send(r.Context(), w, cart.CreateCart{TenantID: t.TenantID, CartID: cartID, Currency: currency})
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	a := answer("Created!", res)
	a.CartID = cartID
	writeJSON(w, http.StatusCreated, a)
}

// cartWrite runs the common steps of a write to an existing cart: check
// the path, decode the body with parse, find the tenant, send the command
// made by mk and answer 201 with msg.
func (s *Service) cartWrite(w http.ResponseWriter, r *http.Request, msg string,
	mk func(cartID string) (cart.Command, *apiError), decorate func(*writeAnswer, actor.Result[cart.Event, cart.State])) {
	cartID, aerr := s.cartTarget(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	// The body is decoded by mk before the tenant is looked up, so a bad
	// body costs no database round trip.
	cmd, aerr := mk(cartID)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	t, aerr := s.tenant(r.Context(), r.PathValue("tenantId"))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	cmd = withTenant(cmd, t.TenantID)
	res, aerr := s.send(r.Context(), w, cmd)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	a := answer(msg, res)
	if decorate != nil {
		decorate(&a, res)
	}
	writeJSON(w, http.StatusCreated, a)
}

// withTenant returns cmd addressed to tenant.
func withTenant(cmd cart.Command, tenant string) cart.Command {
	switch c := cmd.(type) {
	case cart.AddItem:
		c.TenantID = tenant
		return c
	case cart.RemoveItem:
		c.TenantID = tenant
		return c
	case cart.EmptyCart:
		c.TenantID = tenant
		return c
	case cart.CheckoutCart:
		c.TenantID = tenant
		return c
	case cart.CancelCart:
		c.TenantID = tenant
		return c
	}
	return cmd
}

func (s *Service) updateItems(w http.ResponseWriter, r *http.Request) {
	s.cartWrite(w, r, "OK", func(cartID string) (cart.Command, *apiError) {
		in, aerr := parseItems(r.Body)
		if aerr != nil {
			return nil, aerr
		}
		if in.Remove {
			return cart.RemoveItem{CartID: cartID, SKU: in.SKU, Quantity: in.Qty}, nil
		}
		return cart.AddItem{CartID: cartID, Item: in.Item}, nil
	}, nil)
}

func (s *Service) emptyCart(w http.ResponseWriter, r *http.Request) {
	s.cartWrite(w, r, "Emptied", func(cartID string) (cart.Command, *apiError) {
		if aerr := parseEmpty(r.Body); aerr != nil {
			return nil, aerr
		}
		return cart.EmptyCart{CartID: cartID}, nil
	}, nil)
}

func (s *Service) checkoutCart(w http.ResponseWriter, r *http.Request) {
	s.cartWrite(w, r, "Checked out", func(cartID string) (cart.Command, *apiError) {
		orderID, aerr := parseCheckout(r.Body)
		if aerr != nil {
			return nil, aerr
		}
		if orderID == "" {
			orderID = uuid.NewString()
		}
		return cart.CheckoutCart{CartID: cartID, OrderID: orderID}, nil
	}, func(a *writeAnswer, res actor.Result[cart.Event, cart.State]) {
		for _, e := range res.Events {
			if c, ok := e.(cart.CartCheckedOut); ok {
				total := c.EventData.Total
				a.OrderID, a.Total = c.EventData.OrderID, &total
			}
		}
	})
}

func (s *Service) cancelCart(w http.ResponseWriter, r *http.Request) {
	s.cartWrite(w, r, "Cancelled", func(cartID string) (cart.Command, *apiError) {
		reason, aerr := parseCancel(r.Body)
		if aerr != nil {
			return nil, aerr
		}
		return cart.CancelCart{CartID: cartID, Reason: reason}, nil
	}, nil)
}
