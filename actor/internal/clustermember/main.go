// Command clustermember is the cluster member the actor package's cluster
// tests run as child processes (built without -race: protoactor-go's
// cluster and remoting code has data races of its own). It joins a
// cluster, hosts a small counter kind on PostgreSQL, and is driven over
// HTTP on 127.0.0.1:
//
//	POST /send        {"tenant","stream","op","by","commandId"} -> outcome (see sendReply)
//	GET  /state       ?tenant=&stream=                          -> {"count","events","version"}
//	GET  /activations                                            -> this member's grain activations per stream
//	GET  /owner       ?tenant=&stream=                          -> {"owner"}
//	GET  /members                                                -> {"member","members"}
//
// SIGTERM (or SIGINT) leaves the cluster gracefully: the HTTP server stops,
// then the host hands its streams over and stops.
//
// Other parts of the member (a membership provider, a projection) plug in
// through the hooks of hooks.go: a file of this package registers a
// provider under a -provider name, or a setup hook that adds flags, HTTP
// endpoints and components started and stopped with the member.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// options are the member's flags.
type options struct {
	name           string
	addr           string
	provider       string
	health         string
	members        string
	refresh        time.Duration
	db             string
	migrate        bool
	httpAddr       string
	requestTimeout time.Duration
	idle           time.Duration
	retryAttempts  int
	retryMaxDelay  time.Duration
	faults         bool
	tlsCert        string
	tlsKey         string
	tlsCA          string
	logLevel       string
}

func main() {
	if err := run(); err != nil {
		slog.Error("clustermember_failed", slog.Any("error", err))
		panic(err) // exit status 2
	}
}

func run() error {
	var o options
	fs := flag.NewFlagSet("clustermember", flag.ContinueOnError)
	fs.StringVar(&o.name, "cluster", "troupe-test", "cluster name")
	fs.StringVar(&o.addr, "addr", "", "member gRPC address host:port (bound exactly)")
	fs.StringVar(&o.provider, "provider", "static", "membership provider: "+strings.Join(providerNames(), ", "))
	fs.StringVar(&o.health, "health", "", "static provider: this member's health endpoint host:port")
	fs.StringVar(&o.members, "members", "", "static provider: comma-separated health endpoints of every member")
	fs.DurationVar(&o.refresh, "refresh", 300*time.Millisecond, "static provider: health poll interval")
	fs.StringVar(&o.db, "db", "", "PostgreSQL connection string")
	fs.BoolVar(&o.migrate, "migrate", false, "apply the migrations first")
	fs.StringVar(&o.httpAddr, "http", "", "HTTP control address (127.0.0.1 only)")
	fs.DurationVar(&o.requestTimeout, "request-timeout", time.Second, "actor.ClusterConfig.RequestTimeout")
	fs.DurationVar(&o.idle, "idle", time.Minute, "actor.Config.IdleTimeout (also the grains' idle timeout)")
	fs.IntVar(&o.retryAttempts, "retry-attempts", 20, "actor.ClusterConfig.Retry.MaxAttempts")
	fs.DurationVar(&o.retryMaxDelay, "retry-max-delay", 500*time.Millisecond, "actor.ClusterConfig.Retry.MaxDelay")
	fs.BoolVar(&o.faults, "faults", false, "inject store failures on streams named fault-<kind>-... (see faults.go)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate for member-to-member TLS")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM key for member-to-member TLS")
	fs.StringVar(&o.tlsCA, "tls-ca", "", "PEM CA that signs every member's certificate")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	for _, h := range hooks {
		if h.Flags != nil {
			h.Flags(fs)
		}
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	if err := loopbackOnly(o.httpAddr); err != nil {
		return fmt.Errorf("-http: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	pool, err := pgxpool.New(ctx, o.db)
	if err != nil {
		return fmt.Errorf("connect to -db: %w", err)
	}
	defer pool.Close()
	if o.migrate {
		if err := postgres.Migrate(ctx, pool); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	pg, err := postgres.New(pool, &postgres.Config{Logger: log})
	if err != nil {
		return err
	}
	var st store.EventStore = pg
	if o.faults {
		st = faultStore{EventStore: pg}
	}
	m := &Member{Options: &o, Pool: pool, Logger: log, Mux: http.NewServeMux()}
	newProvider, ok := providers[o.provider]
	if !ok {
		return fmt.Errorf("-provider %q: not one of %s", o.provider, strings.Join(providerNames(), ", "))
	}
	prov, err := newProvider(m)
	if err != nil {
		return fmt.Errorf("-provider %s: %w", o.provider, err)
	}
	tlsCfg, err := loadTLS(o)
	if err != nil {
		return err
	}
	m.Host, err = actor.New(st, &actor.Config{
		Codec:       codec(),
		Logger:      log,
		IdleTimeout: o.idle,
		Cluster: &actor.ClusterConfig{
			Name:           o.name,
			Address:        o.addr,
			Provider:       prov,
			TLS:            tlsCfg,
			RequestTimeout: o.requestTimeout,
			Retry:          retry.Policy{MaxAttempts: o.retryAttempts, InitialDelay: 10 * time.Millisecond, MaxDelay: o.retryMaxDelay},
		},
	})
	if err != nil {
		return err
	}
	m.Counters, err = actor.Register(m.Host, counterKind())
	if err != nil {
		return err
	}
	routes(m)
	for _, h := range hooks {
		if h.Setup != nil {
			if err := h.Setup(ctx, m); err != nil {
				return fmt.Errorf("setup %s: %w", h.Name, err)
			}
		}
	}
	if err := m.Host.Start(ctx); err != nil {
		return err
	}
	for _, f := range m.starts {
		if err := f(ctx); err != nil {
			return err
		}
	}

	l, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("-http: %w", err)
	}
	srv := &http.Server{Handler: m.Mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	log.Info("clustermember_ready", slog.String("member", m.Host.Member()), slog.String("http", l.Addr().String()))

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("HTTP server: %w", err)
	}
	// Graceful leave: stop serving HTTP, then the components, then hand
	// the streams over.
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := []error{srv.Shutdown(stopCtx)}
	for i := len(m.stops) - 1; i >= 0; i-- {
		errs = append(errs, m.stops[i](stopCtx))
	}
	errs = append(errs, m.Host.Stop(stopCtx))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("clustermember_left", slog.String("member", m.Host.Member()))
	return nil
}

// loopbackOnly refuses an HTTP control address off 127.0.0.1 / ::1.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

// loadTLS builds the member-to-member TLS config (mutual TLS: every member
// presents its certificate, signed by -tls-ca), or nil without -tls-cert.
func loadTLS(o options) (*tls.Config, error) {
	if o.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
	}
	ca, err := os.ReadFile(o.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("-tls-ca %s: no PEM certificate", o.tlsCA)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
