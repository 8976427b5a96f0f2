package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/tenancy"
)

// TenantView is a tenant as the API shows it.
type TenantView struct {
	// ID is the tenant's UUID, TenantUUID(TenantID).
	ID       string `json:"id"`
	TenantID string `json:"tenantId"`
	Name     string `json:"name"`
}

// tenantNamespace is the UUID namespace of TenantUUID.
var tenantNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/troupehq/troupe/examples/cart/tenants"))

// TenantUUID returns the UUID the API gives the tenant with this tenantId
// (a name-based, SHA-1 UUID): the same in every process and run, so it
// needs no storage of its own.
func TenantUUID(tenantID string) string {
	return uuid.NewSHA1(tenantNamespace, []byte(tenantID)).String()
}

func tenantView(id store.TenantID, name string) TenantView {
	return TenantView{ID: TenantUUID(string(id)), TenantID: string(id), Name: name}
}

var errTenantNotFound = errors.New("tenant not found")

// tenantRegistry creates, finds and lists tenants.
type tenantRegistry interface {
	// create registers a tenant (and, with PostgreSQL, its partitions);
	// created is false when it already existed.
	create(ctx context.Context, id store.TenantID, name string) (t TenantView, created bool, err error)
	// get returns a tenant or errTenantNotFound.
	get(ctx context.Context, id store.TenantID) (TenantView, error)
	// list returns every tenant ordered by tenantId.
	list(ctx context.Context) ([]TenantView, error)
}

// tenantIndex maps tenant UUIDs to tenantIds. A UUID is derived from its
// tenantId, so an entry never goes stale; whether the tenant still exists is
// asked of the registry every time.
type tenantIndex struct{ byUUID sync.Map } // string → store.TenantID

func (x *tenantIndex) add(t TenantView) { x.byUUID.Store(t.ID, store.TenantID(t.TenantID)) }

// find resolves a path id that is a tenantId or a tenant's UUID.
func (x *tenantIndex) find(ctx context.Context, reg tenantRegistry, id string) (TenantView, error) {
	if store.ValidateTenantID(id) == nil {
		t, err := reg.get(ctx, store.TenantID(id))
		if !errors.Is(err, errTenantNotFound) {
			return t, err
		}
	}
	want, err := parseCanonicalUUID(id)
	if err != nil {
		return TenantView{}, errTenantNotFound
	}
	if tid, ok := x.byUUID.Load(want); ok {
		return reg.get(ctx, tid.(store.TenantID))
	}
	all, err := reg.list(ctx)
	if err != nil {
		return TenantView{}, err
	}
	for _, t := range all {
		x.add(t)
		if t.ID == want {
			return t, nil
		}
	}
	return TenantView{}, errTenantNotFound
}

// pgTenants is the tenant registry of PostgreSQL: tenancy.Manager, which
// also gives every new tenant its partitions (carts included).
type pgTenants struct{ m *tenancy.Manager }

func (p pgTenants) create(ctx context.Context, id store.TenantID, name string) (TenantView, bool, error) {
	t, created, err := p.m.Create(ctx, id, name)
	if err != nil {
		return TenantView{}, false, fmt.Errorf("create tenant %s: %w", id, err)
	}
	return tenantView(t.ID, t.Name), created, nil
}

func (p pgTenants) get(ctx context.Context, id store.TenantID) (TenantView, error) {
	t, err := p.m.Get(ctx, id)
	if errors.Is(err, tenancy.ErrTenantNotFound) {
		return TenantView{}, errTenantNotFound
	}
	if err != nil {
		return TenantView{}, fmt.Errorf("get tenant %s: %w", id, err)
	}
	return tenantView(t.ID, t.Name), nil
}

func (p pgTenants) list(ctx context.Context) ([]TenantView, error) {
	ts, err := p.m.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out := make([]TenantView, len(ts))
	for i, t := range ts {
		out[i] = tenantView(t.ID, t.Name)
	}
	return out, nil
}

// memTenants is the in-process tenant registry of -store=memory.
type memTenants struct {
	mu      sync.Mutex
	tenants map[store.TenantID]tenancy.Tenant
}

func newMemTenants() *memTenants { return &memTenants{tenants: map[store.TenantID]tenancy.Tenant{}} }

func (m *memTenants) create(_ context.Context, id store.TenantID, name string) (TenantView, bool, error) {
	if err := id.Validate(); err != nil {
		return TenantView{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.tenants[id]; ok {
		return tenantView(t.ID, t.Name), false, nil
	}
	m.tenants[id] = tenancy.Tenant{ID: id, Name: name, Created: time.Now()}
	return tenantView(id, name), true, nil
}

func (m *memTenants) get(_ context.Context, id store.TenantID) (TenantView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[id]
	if !ok {
		return TenantView{}, errTenantNotFound
	}
	return tenantView(t.ID, t.Name), nil
}

func (m *memTenants) list(context.Context) ([]TenantView, error) {
	m.mu.Lock()
	out := make([]TenantView, 0, len(m.tenants))
	for _, t := range m.tenants {
		out = append(out, tenantView(t.ID, t.Name))
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b TenantView) int { return strings.Compare(a.TenantID, b.TenantID) })
	return out, nil
}
