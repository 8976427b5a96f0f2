// Command cart is Troupe's example service: the shopping-cart API of the
// seed application (tenants, carts, items, checkout) on Troupe's actor
// host, PostgreSQL event store, continuous projection and tenancy manager.
//
//	go run ./examples/cart                  # serve on :8080 (or $PORT, or -addr)
//	go run ./examples/cart -demo            # scripted demo, then exit
//	go run ./examples/cart -store=memory    # no PostgreSQL at all
//	go run ./examples/cart -cluster-demo    # three cluster members on 127.0.0.1, then exit
//	go run ./examples/cart admin --help     # operator commands (package cli)
//
// Without DATABASE_URL it starts a throwaway PostgreSQL from the binaries
// installed on the machine (scripts/ensure-postgres.sh installs them) and
// removes it on exit. With -store=memory, events, tenants and the read
// model live in the process (the read model is an in-process projection of
// the in-memory log, not the actors' state).
//
// Every HTTP request has a deadline (-request-timeout or REQUEST_TIMEOUT,
// default 10s): past it, or when PostgreSQL cannot be reached, the answer
// is 503 with Retry-After. The pool holds -db-max-conns (DB_MAX_CONNS,
// default 20) connections: requests in flight + 2 per projection + 2.
//
// Traces and metrics are exported over OTLP/gRPC when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_/_METRICS_ENDPOINT) variable is
// set. SIGINT or SIGTERM shut it down gracefully: the HTTP server drains,
// the actor host answers the commands it accepted, the projection finishes
// its batch, the throwaway database is stopped.
//
// With -cluster-name (CLUSTER_NAME) and -cluster-addr (CLUSTER_ADDR) the
// binary is a member of a cluster (docs/cluster.md): each cart's stream actor
// runs on the member that owns it, and a request to any member reaches it.
// Membership is kept in the service's PostgreSQL unless -cluster-members and
// -cluster-health (CLUSTER_MEMBERS, CLUSTER_HEALTH) give a static list;
// -cluster-advertise is the address the others dial, -cluster-tls-cert,
// -cluster-tls-key and -cluster-tls-ca make member traffic mutual TLS.
// -cluster-demo starts three members as child processes of this binary
// (CART_MEMBER_BINARY names another) on one PostgreSQL, plays carts through
// every member, checks the answers, the read model and the log, and stops them.
//
// `cart admin` embeds Troupe's operator command line (package cli) with the
// service's "carts" projection registered: `cart admin migrate`, `cart
// admin tenants ...`, `cart admin streams ...`, `cart admin projections
// status` and `cart admin projections rebuild carts`, on the database named
// by --database-url or DATABASE_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/internal/pgserver"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if len(os.Args) > 1 && os.Args[1] == "admin" {
		code := admin(ctx, os.Args[2:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
		stop()
		os.Exit(code)
	}
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "cart:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// shutdownTimeout bounds the graceful shutdown.
const shutdownTimeout = 15 * time.Second

type options struct {
	addr           string
	demo           bool
	store          string
	logLevel       slog.Level
	requestTimeout time.Duration
	maxConns       int
	cluster        clusterOptions
	clusterDemo    bool
}

// defaultMaxConns sizes the pool for defaultConcurrentRequests requests
// in flight (each holds at most one connection at a time: the tenant
// look-up, then its append or read) plus the carts projection (one
// connection per batch, one for its lease and LISTEN) plus headroom for the
// host's reloads and the health checks:
//
//	max conns = concurrent requests + 2 × projections + 2
const (
	defaultConcurrentRequests = 16
	defaultMaxConns           = defaultConcurrentRequests + 2*1 + 2
)

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("cart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./examples/cart [flags]\n       go run ./examples/cart admin <command> (--help lists them)\n\n"+
			"Serves the shopping-cart API of Troupe's example. Without DATABASE_URL a throwaway\n"+
			"PostgreSQL is started from the local binaries and removed on exit.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	defaultAddr := ":8080"
	if p := getenv("PORT"); p != "" {
		defaultAddr = ":" + p
	}
	fs.StringVar(&o.addr, "addr", defaultAddr, "address to serve HTTP on (default from PORT, else :8080)")
	fs.BoolVar(&o.demo, "demo", false, "run a scripted demo (tenant, carts, items, checkout), print the read model and the trace of one command, and exit")
	fs.StringVar(&o.store, "store", "postgres", "event store: postgres (DATABASE_URL, or a throwaway server) or memory")
	requestTimeout := service.DefaultRequestTimeout
	if v := getenv("REQUEST_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "cart: REQUEST_TIMEOUT=%s: want a positive duration such as 10s\n", v)
			return o, errUsage
		}
		requestTimeout = d
	}
	fs.DurationVar(&o.requestTimeout, "request-timeout", requestTimeout,
		"deadline of every HTTP request; past it the answer is 503 with Retry-After (default from REQUEST_TIMEOUT, else 10s)")
	maxConns := defaultMaxConns
	if v := getenv("DB_MAX_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "cart: DB_MAX_CONNS=%s: want a positive integer\n", v)
			return o, errUsage
		}
		maxConns = n
	}
	fs.IntVar(&o.maxConns, "db-max-conns", maxConns,
		"connections in the PostgreSQL pool: requests in flight + 2 per projection + 2 (default from DB_MAX_CONNS, else 20)")
	level := fs.String("log-level", "", "log level: debug, info, warn or error (default info; warn with -demo)")
	clusterOpts := clusterFlags(fs, getenv)
	fs.BoolVar(&o.clusterDemo, "cluster-demo", false,
		"run three members of a cluster on 127.0.0.1 (child processes of this binary) on one PostgreSQL, show that any member serves any cart, stop them and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cart: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return o, errUsage
	}
	if o.requestTimeout <= 0 {
		fmt.Fprintf(stderr, "cart: -request-timeout=%s: want a positive duration\n", o.requestTimeout)
		return o, errUsage
	}
	if o.maxConns < 1 {
		fmt.Fprintf(stderr, "cart: -db-max-conns=%d: want a positive integer\n", o.maxConns)
		return o, errUsage
	}
	if o.store != "postgres" && o.store != "memory" {
		fmt.Fprintf(stderr, "cart: -store=%s: want postgres or memory\n", o.store)
		return o, errUsage
	}
	var err error
	if o.cluster, err = clusterOpts(stderr); err != nil {
		return o, err
	}
	switch {
	case o.cluster.enabled() && o.store == "memory":
		fmt.Fprintln(stderr, "cart: -cluster-name needs -store=postgres: the members of a cluster share one PostgreSQL")
		return o, errUsage
	case o.cluster.enabled() && (o.demo || o.clusterDemo):
		fmt.Fprintln(stderr, "cart: -demo and -cluster-demo start their own members; drop -cluster-name")
		return o, errUsage
	case o.demo && o.clusterDemo:
		fmt.Fprintln(stderr, "cart: -demo or -cluster-demo, not both")
		return o, errUsage
	case o.clusterDemo && o.store == "memory":
		fmt.Fprintln(stderr, "cart: -cluster-demo needs -store=postgres")
		return o, errUsage
	}
	switch {
	case *level != "":
		if err := o.logLevel.UnmarshalText([]byte(*level)); err != nil {
			fmt.Fprintf(stderr, "cart: -log-level=%s: want debug, info, warn or error\n", *level)
			return o, errUsage
		}
	case o.demo, o.clusterDemo:
		o.logLevel = slog.LevelWarn
	default:
		o.logLevel = slog.LevelInfo
	}
	return o, nil
}

// run is the program: it returns when ctx is cancelled (serve mode) or the
// demo is done, after shutting everything down.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) (err error) {
	o, err := parseFlags(args, stderr, getenv)
	if err != nil {
		return err
	}
	logger := slog.New(telemetry.NewLogHandler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})))

	// Everything started is stopped in reverse order on the way out.
	var cleanups []func(context.Context) error
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		for i := len(cleanups) - 1; i >= 0; i-- {
			err = errors.Join(err, cleanups[i](sctx))
		}
	}()

	obs, err := setupObservability(ctx, getenv, o.demo, stderr)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, obs.close)

	var pool *pgxpool.Pool
	var dbURL string
	storeInfo := "in memory: nothing survives the process"
	if o.store == "postgres" {
		var info string
		var closeDB func(context.Context) error
		pool, dbURL, info, closeDB, err = openDatabase(ctx, getenv, o.maxConns, obs, logger, stdout)
		if closeDB != nil {
			cleanups = append(cleanups, closeDB)
		}
		if err != nil {
			return err
		}
		storeInfo = info
	}
	if o.clusterDemo {
		return runClusterDemo(ctx, stdout, clusterDemoEnv{dbURL: dbURL, storeInfo: storeInfo, pool: pool,
			bin: getenv("CART_MEMBER_BINARY")})
	}
	clusterCfg, clusterInfo, err := joinCluster(o.cluster, pool, logger)
	if err != nil {
		return err
	}

	svc, err := service.New(ctx, service.Config{Pool: pool, Logger: logger, RequestTimeout: o.requestTimeout,
		TracerProvider: obs.tracerProvider, MeterProvider: obs.meterProvider, Cluster: clusterCfg})
	if err != nil {
		return err
	}
	if err := svc.Start(ctx); err != nil {
		return err
	}
	cleanups = append(cleanups, svc.Stop)

	addr := o.addr
	if o.demo {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	cleanups = append(cleanups, func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	})
	base := baseURL(ln.Addr())

	if o.demo {
		return runDemo(ctx, stdout, demoEnv{base: base, storeInfo: storeInfo, pool: pool, spans: obs.spans})
	}
	printBanner(stdout, base, storeInfo, obs.describe(), clusterInfo)
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "Shutting down…")
		return nil
	case err := <-served:
		served <- err // for the cleanup
		return fmt.Errorf("serve HTTP: %w", err)
	}
}

// openDatabase connects to DATABASE_URL with a pool of maxConns
// connections, or starts a throwaway server when it is unset, and migrates
// the schema.
func openDatabase(ctx context.Context, getenv func(string) string, maxConns int, obs *observability, logger *slog.Logger,
	stdout io.Writer) (pool *pgxpool.Pool, url, info string, closeDB func(context.Context) error, err error) {
	var closers []func(context.Context) error
	closeAll := func(ctx context.Context) error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i](ctx))
		}
		return errors.Join(errs...)
	}
	url = getenv("DATABASE_URL")
	info = "PostgreSQL at DATABASE_URL"
	if url == "" {
		fmt.Fprintln(stdout, "DATABASE_URL is not set: starting a throwaway PostgreSQL from the local binaries…")
		began := time.Now()
		srv, err := pgserver.Start(ctx, pgserver.Options{Logger: logger})
		if err != nil {
			return nil, "", "", nil, fmt.Errorf("start a throwaway PostgreSQL: %w", err)
		}
		closers = append(closers, func(context.Context) error { return srv.Stop() })
		url = srv.ConnString()
		info = fmt.Sprintf("throwaway PostgreSQL on 127.0.0.1:%d, removed on exit", srv.Port())
		fmt.Fprintf(stdout, "PostgreSQL is up on 127.0.0.1:%d (%s).\n", srv.Port(), time.Since(began).Round(time.Millisecond))
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, "", "", closeAll, fmt.Errorf("DATABASE_URL: %w", err)
	}
	// Set explicitly: pgxpool's default (4, or the number of CPUs) lets the
	// projection and one stalled query starve the appends.
	cfg.MaxConns = int32(min(maxConns, math.MaxInt32))
	if obs.tracerProvider != nil || obs.meterProvider != nil {
		// A client span per statement under the span in the query's context
		// (the append, the projection batch), and the db.client.* metrics.
		// Pool acquire spans are left out to keep the trees short.
		opts := []otelpgx.Option{otelpgx.WithDisableAcquireTracer()}
		if obs.tracerProvider != nil {
			opts = append(opts, otelpgx.WithTracerProvider(obs.tracerProvider))
		}
		if obs.meterProvider != nil {
			opts = append(opts, otelpgx.WithMeterProvider(obs.meterProvider))
		}
		cfg.ConnConfig.Tracer = otelpgx.NewTracer(opts...)
	}
	pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", "", closeAll, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	closers = append(closers, func(context.Context) error { pool.Close(); return nil })
	if err := pool.Ping(ctx); err != nil {
		return nil, "", "", closeAll, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		return nil, "", "", closeAll, fmt.Errorf("migrate the event store schema: %w", err)
	}
	return pool, url, info, closeAll, nil
}

// baseURL is the URL clients on this machine reach the listener at.
func baseURL(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String()
	}
	host := "localhost"
	if !tcp.IP.IsUnspecified() && !tcp.IP.IsLoopback() {
		host = tcp.IP.String()
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	} else if tcp.IP.IsLoopback() && tcp.IP.To4() != nil {
		host = tcp.IP.String()
	}
	return fmt.Sprintf("http://%s:%d", host, tcp.Port)
}

func printBanner(w io.Writer, base, storeInfo, telemetryInfo, clusterInfo string) {
	if clusterInfo != "" {
		clusterInfo = "\n  cluster:   " + clusterInfo
	}
	fmt.Fprintf(w, `
Troupe cart service listening on %[1]s
  events:    %[2]s
  telemetry: %[3]s%[4]s

Try it:
  curl -s -X POST %[1]s/api/tenants -d '{"tenantId":"acme","name":"Acme Inc."}'
  CART=$(curl -s -X POST %[1]s/api/tenants/acme/carts -d '{"currency":"USD"}' | sed -E 's/.*"cartId":"([^"]+)".*/\1/')
  curl -s -X PUT %[1]s/api/tenants/acme/carts/$CART/items -d '{"action":"add","item":{"sku":"SKU-123","name":"Item 123","unitPrice":25,"quantity":2}}'
  curl -s -X PUT %[1]s/api/tenants/acme/carts/$CART/items -d '{"action":"remove","sku":"SKU-123","quantity":1}'
  POS=$(curl -s -X PUT %[1]s/api/tenants/acme/carts/$CART/checkout | sed -E 's/.*"position":"([^"]+)".*/\1/')
  curl -s "%[1]s/api/tenants/acme/carts/$CART?waitFor=$POS"    # read your own write
  curl -s %[1]s/api/tenants/acme/carts

Stop with Ctrl+C.
`, base, storeInfo, telemetryInfo, clusterInfo)
}
