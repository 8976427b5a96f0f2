package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/examples/cart/cart"
	"github.com/troupehq/troupe/internal/otelwire"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/memory"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// KindName is the aggregate kind carts are registered under on the actor
// host; command spans are named "cart.<Command>".
const KindName = "cart"

// ScopeName is the instrumentation scope of the service's HTTP spans.
const ScopeName = "github.com/troupehq/troupe/examples/cart"

// Service is the cart HTTP service. Create it with New, Start it, serve
// Handler, and Stop it.
type Service struct {
	cfg       Config
	log       *slog.Logger
	tracer    trace.Tracer
	es        store.EventStore
	host      *actor.Host
	carts     *actor.Aggregate[cart.Command, cart.Event, cart.State]
	tenants   tenantRegistry
	tenantIdx tenantIndex
	rm        readModel
	handler   http.Handler

	mu       sync.Mutex
	started  bool
	stopped  bool
	stopErr  error
	stopDone chan struct{}
}

// New builds the service for cfg: with Config.Pool it creates the carts
// table if missing and wires the PostgreSQL event store, tenancy.Manager
// and the carts projection; without, their in-memory counterparts. It
// starts nothing; call Start.
func New(ctx context.Context, cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	codec := store.NewJSONCodec()
	if err := cart.RegisterEvents(codec); err != nil {
		return nil, err
	}
	if cfg.Cluster != nil {
		// Commands travel to the member owning their cart.
		if err := cart.RegisterCommands(codec); err != nil {
			return nil, err
		}
	}
	s := &Service{cfg: cfg, log: cfg.Logger, tracer: tp.Tracer(ScopeName)}

	if cfg.Pool != nil {
		if err := EnsureSchema(ctx, cfg.Pool); err != nil {
			return nil, err
		}
		pg, err := postgres.New(cfg.Pool, &postgres.Config{Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("postgres event store: %w", err)
		}
		m, err := tenancy.NewManager(cfg.Pool, &tenancy.Config{Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("tenancy manager: %w", err)
		}
		rm, err := newPGReadModel(cfg.Pool, pg, codec, tp, cfg)
		if err != nil {
			return nil, err
		}
		s.es, s.tenants, s.rm = pg, pgTenants{m: m}, rm
	} else {
		// The in-memory read model records its batches as the projections
		// do, with Troupe's own (internal) instrumentation.
		tel, err := otelwire.New(&otelwire.Config{TracerProvider: tp, MeterProvider: cfg.MeterProvider})
		if err != nil {
			return nil, fmt.Errorf("cart service telemetry: %w", err)
		}
		mem := memory.New()
		s.es, s.tenants = mem, newMemTenants()
		s.rm = newMemReadModel(mem, codec, tel, cfg.ProjectionName, cfg.Logger)
	}

	host, err := actor.New(s.es, &actor.Config{Codec: codec, Logger: cfg.Logger,
		TracerProvider: tp, MeterProvider: cfg.MeterProvider, Cluster: cfg.Cluster})
	if err != nil {
		return nil, fmt.Errorf("actor host: %w", err)
	}
	carts, err := actor.Register(host, actor.Kind[cart.Command, cart.Event, cart.State]{
		Name:       KindName,
		StreamType: cart.StreamType,
		Decider:    cart.Decider(),
		Route: func(c cart.Command) (string, store.StreamID) {
			return c.Tenant(), store.StreamID(c.Cart())
		},
		CommandName: commandName,
		// A rule broken on another member arrives as the same error.
		Errors: cart.Rules(),
	})
	if err != nil {
		return nil, fmt.Errorf("register the cart aggregate: %w", err)
	}
	if pg, ok := s.rm.(*pgReadModel); ok && cfg.Cluster != nil {
		// In a cluster the host runs the carts projection as an actor
		// placed by its name: one runner across the members (its lease
		// stays the guarantee of a single writer), moved to a survivor
		// when its member dies. ?waitFor works on every member: it
		// watches the stored checkpoint.
		if err := host.RunProjection(cfg.ProjectionName, pg.proj, nil); err != nil {
			return nil, fmt.Errorf("run the carts projection on the host: %w", err)
		}
		pg.byHost = true
	}
	s.host, s.carts = host, carts
	s.handler = s.routes()
	return s, nil
}

func commandName(c cart.Command) string {
	switch c.(type) {
	case cart.CreateCart:
		return "CreateCart"
	case cart.AddItem:
		return "AddItem"
	case cart.RemoveItem:
		return "RemoveItem"
	case cart.EmptyCart:
		return "EmptyCart"
	case cart.CheckoutCart:
		return "CheckoutCart"
	case cart.CancelCart:
		return "CancelCart"
	}
	return "Unknown"
}

// Start starts the actor host and the read model's projection.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("cart service: start after stop")
	}
	if s.started {
		return nil
	}
	if err := s.host.Start(ctx); err != nil {
		return fmt.Errorf("start the actor host: %w", err)
	}
	if err := s.rm.start(ctx); err != nil {
		_ = s.host.Stop(ctx)
		return fmt.Errorf("start the carts read model: %w", err)
	}
	s.started = true
	return nil
}

// Stop stops the actor host (answering every command it accepted) and
// then the projection (after its batch in flight). Stop the HTTP server
// first (http.Server.Shutdown), so no request arrives meanwhile. Calling
// Stop again returns the first call's result.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopDone != nil {
		done := s.stopDone
		s.mu.Unlock()
		<-done
		return s.stopErr
	}
	s.stopped = true
	s.stopDone = make(chan struct{})
	started := s.started
	s.mu.Unlock()
	var err error
	if started {
		err = errors.Join(s.host.Stop(ctx), s.rm.stop(ctx))
	}
	s.stopErr = err
	close(s.stopDone)
	return err
}

// Handler returns the HTTP API.
func (s *Service) Handler() http.Handler { return s.handler }

// Member returns this member's advertised cluster address, "" without
// Config.Cluster.
func (s *Service) Member() string { return s.host.Member() }

// Members returns the addresses of the cluster members this member knows
// now, nil without Config.Cluster.
func (s *Service) Members() []string { return s.host.Members() }

// Owner returns the member that owns a cart's stream now ("" without
// Config.Cluster).
func (s *Service) Owner(tenant, cartID string) (string, error) {
	if s.cfg.Cluster == nil {
		return "", nil
	}
	return s.host.Owner(KindName, tenant, store.StreamID(cartID))
}

// Store returns the event store the service appends to.
func (s *Service) Store() store.EventStore { return s.es }

// WaitFor waits until the carts read model has applied the log up to pos
// (what a read with ?waitFor does), e.g. for a test's troupetest.Config.WaitFor.
func (s *Service) WaitFor(ctx context.Context, pos store.Position) error {
	return s.rm.waitFor(ctx, pos)
}
