package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/actor/pgmembership"
	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// MemberCommand is the first argument that makes the troupe binary a
// cluster benchmark member (RunMember) instead of the command line: the
// cluster benchmark starts its members as child processes of its own
// binary. It is not a command users type.
const MemberCommand = "__bench-member"

// Placements of the commands a member sends in a latency run.
const (
	PlacementAny    = "any"    // any cart (the workload)
	PlacementLocal  = "local"  // carts this member owns
	PlacementRemote = "remote" // carts another member owns
	PlacementIdle   = "idle"   // no command: only the CPU time of the window
)

// loadRequest is what the driver asks a member to run.
type loadRequest struct {
	// Placement: PlacementAny runs the workload (T×N carts, create, K
	// adds, checkout); local and remote send AddItem commands to carts the
	// member owns, or does not.
	Placement   string        `json:"placement"`
	Prefix      string        `json:"prefix"`
	Tenants     int           `json:"tenants"`
	Carts       int           `json:"carts"`
	Items       int           `json:"items"`
	Concurrency int           `json:"concurrency"`
	Warmup      time.Duration `json:"warmup"`
	Duration    time.Duration `json:"duration"`
}

// loadResult is what a member measured.
type loadResult struct {
	Commands   int64   `json:"commands"`
	Errors     int64   `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
	Seconds    float64 `json:"seconds"`
	// Nanos are the latencies of the commands answered in the window.
	Nanos []int64 `json:"nanos"`
	// CPUSeconds is the member's CPU time (user + system) in the window.
	CPUSeconds float64 `json:"cpuSeconds"`
}

// memberStatus is a member's answer to GET /status.
type memberStatus struct {
	Member  string   `json:"member"`
	Members []string `json:"members"`
	// CPUSeconds is the process's user + system CPU time so far.
	CPUSeconds float64 `json:"cpuSeconds"`
}

// member is a running benchmark member: an actor host in cluster mode
// with the bench cart kind, and its control API.
type member struct {
	host  *actor.Host
	carts *actor.Aggregate[benchcart.Command, benchcart.Event, benchcart.State]
}

// RunMember runs a member until ctx ends (SIGTERM) and returns the exit
// status. args: -database-url, -cluster-name, -cluster-addr, -control
// (host:port of the control API), -members (a static list; empty: the
// PostgreSQL membership provider), -pool-size.
func RunMember(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(MemberCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", "", "the scratch database")
	name := fs.String("cluster-name", "", "cluster name")
	addr := fs.String("cluster-addr", "", "cluster listener host:port")
	control := fs.String("control", "", "control API host:port")
	members := fs.String("members", "", "health endpoints of a static member list, comma-separated (empty: PostgreSQL membership)")
	health := fs.String("health", "", "this member's health endpoint in -members")
	poolSize := fs.Int("pool-size", 40, "connections")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := runMember(ctx, *dbURL, *name, *addr, *control, *members, *health, *poolSize, logger); err != nil {
		fmt.Fprintln(stderr, "bench member:", err)
		return 1
	}
	return 0
}

func runMember(ctx context.Context, dbURL, name, addr, control, members, health string, poolSize int, logger *slog.Logger) error {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	cfg.MaxConns = int32(poolSize)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	es, err := postgres.New(pool, &postgres.Config{Logger: logger})
	if err != nil {
		return err
	}
	cc := &actor.ClusterConfig{Name: name, Address: addr}
	if members != "" {
		if cc.Provider, err = actor.StaticMembers(actor.StaticMembersConfig{Self: health, Members: strings.Split(members, ",")}); err != nil {
			return err
		}
	} else if cc.Provider, err = pgmembership.New(pool, &pgmembership.Config{Logger: logger}); err != nil {
		return err
	}
	codec, err := benchcart.NewCodec()
	if err != nil {
		return err
	}
	if err := benchcart.RegisterCommands(codec); err != nil {
		return err
	}
	h, err := actor.New(es, &actor.Config{Codec: codec, Logger: logger, IdleTimeout: -1, Cluster: cc})
	if err != nil {
		return err
	}
	carts, err := actor.Register(h, actor.Kind[benchcart.Command, benchcart.Event, benchcart.State]{
		Name: "cart", StreamType: benchcart.StreamType, Decider: benchcart.Decider(),
		Route:       func(c benchcart.Command) (string, store.StreamID) { return c.Tenant(), store.StreamID(c.Cart()) },
		CommandName: commandName, Errors: benchcart.Rules(),
	})
	if err != nil {
		return err
	}
	if err := h.Start(ctx); err != nil {
		return err
	}
	m := &member{host: h, carts: carts}
	ln, err := net.Listen("tcp", control)
	if err != nil {
		_ = h.Stop(context.WithoutCancel(ctx))
		return err
	}
	srv := &http.Server{Handler: m.routes(ctx), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(sctx), h.Stop(sctx))
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (m *member) routes(ctx context.Context) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(memberStatus{Member: m.host.Member(), Members: m.host.Members(), CPUSeconds: processCPU()})
	})
	mux.HandleFunc("POST /load", func(w http.ResponseWriter, r *http.Request) {
		var req loadRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := m.load(r.Context(), req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(res)
	})
	return mux
}

// processCPU is this process's user + system CPU time in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// load runs req's senders for req.Warmup + req.Duration and returns what
// was answered in the measured window.
func (m *member) load(ctx context.Context, req loadRequest) (loadResult, error) {
	var res loadResult
	if req.Duration <= 0 || (req.Concurrency <= 0 && req.Placement != PlacementIdle) {
		return res, errors.New("concurrency and duration must be positive")
	}
	var next func(ctx context.Context, sender int, rng *rand.Rand) (benchcart.Command, func(failed bool), bool)
	switch req.Placement {
	case PlacementAny:
		wl := newWorkload(req.Tenants, req.Carts, req.Items, req.Prefix)
		defer wl.close()
		next = func(ctx context.Context, _ int, rng *rand.Rand) (benchcart.Command, func(bool), bool) {
			cmd, tok, ok := wl.next(ctx, rng)
			return cmd, func(failed bool) { wl.done(tok, failed) }, ok
		}
		stop := time.AfterFunc(req.Warmup+req.Duration, wl.close)
		defer stop.Stop()
	case PlacementIdle:
		req.Concurrency = 0
	case PlacementLocal, PlacementRemote:
		carts, err := m.placedCarts(ctx, req)
		if err != nil {
			return res, err
		}
		next = func(ctx context.Context, sender int, rng *rand.Rand) (benchcart.Command, func(bool), bool) {
			mine := carts[sender]
			c := mine[rng.IntN(len(mine))]
			return benchcart.AddItem{TenantID: TenantID(0), CartID: c, CreatedBy: "bench", Item: benchcart.Item{
				SKU: "sku-1", Name: "Item 1", UnitPrice: 199, Quantity: 1}}, func(bool) {}, ctx.Err() == nil
		}
	default:
		return res, fmt.Errorf("unknown placement %q", req.Placement)
	}
	start := time.Now()
	t0, t1 := start.Add(req.Warmup), start.Add(req.Warmup+req.Duration)
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the CPU time of the measured window
		defer wg.Done()
		if waitUntil(ctx, t0) != nil {
			return
		}
		c0 := processCPU()
		if waitUntil(ctx, t1) != nil {
			return
		}
		c1 := processCPU()
		mu.Lock()
		res.CPUSeconds = c1 - c0
		mu.Unlock()
	}()
	for i := range req.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			var nanos []int64
			var n, errs int64
			var first error
			for {
				cmd, done, ok := next(ctx, i, rng)
				if !ok {
					break
				}
				sent := time.Now()
				_, err := m.carts.Send(ctx, cmd)
				end := time.Now()
				done(err != nil)
				if end.After(t0) && !end.After(t1) {
					if err != nil {
						errs++
						if first == nil {
							first = err
						}
					} else {
						n++
						nanos = append(nanos, int64(end.Sub(sent)))
					}
				}
				if end.After(t1) {
					break
				}
			}
			mu.Lock()
			res.Commands += n
			res.Errors += errs
			res.Nanos = append(res.Nanos, nanos...)
			if first != nil && res.FirstError == "" {
				res.FirstError = first.Error()
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Seconds = req.Duration.Seconds()
	return res, ctx.Err()
}

// placedCarts creates req.Carts carts per sender in tenant 0 whose owner is
// this member (PlacementLocal) or another one (PlacementRemote).
func (m *member) placedCarts(ctx context.Context, req loadRequest) ([][]string, error) {
	self := m.host.Member()
	out := make([][]string, req.Concurrency)
	tenant := TenantID(0)
	for s := range out {
		for i := 0; len(out[s]) < req.Carts; i++ {
			if i > 100*req.Carts {
				return nil, fmt.Errorf("found no %s cart among %d candidates (members %v)", req.Placement, i, m.host.Members())
			}
			id := fmt.Sprintf("%s-s%d-%d", req.Prefix, s, i)
			owner, err := m.host.Owner("cart", tenant, store.StreamID(id))
			if err != nil {
				return nil, err
			}
			if (owner == self) != (req.Placement == PlacementLocal) {
				continue
			}
			if _, err := m.carts.Send(ctx, benchcart.CreateCart{TenantID: tenant, CartID: id, Currency: "EUR", CreatedBy: "bench"}); err != nil {
				return nil, fmt.Errorf("create cart %s: %w", id, err)
			}
			out[s] = append(out[s], id)
		}
	}
	return out, nil
}
