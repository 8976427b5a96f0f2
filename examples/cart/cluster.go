package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/actor/pgmembership"
	"github.com/troupehq/troupe/retry"
)

// clusterOptions are the flags that make the binary a cluster member.
type clusterOptions struct {
	name      string   // -cluster-name, CLUSTER_NAME: "" = one process
	addr      string   // -cluster-addr, CLUSTER_ADDR: the gRPC listener
	advertise string   // -cluster-advertise, CLUSTER_ADVERTISE: what other members dial
	members   []string // -cluster-members, CLUSTER_MEMBERS: health endpoints of a static list; empty = PostgreSQL provider
	health    string   // -cluster-health, CLUSTER_HEALTH: this member's health endpoint in the static list
	tlsCert   string   // -cluster-tls-cert, CLUSTER_TLS_CERT
	tlsKey    string   // -cluster-tls-key, CLUSTER_TLS_KEY
	tlsCA     string   // -cluster-tls-ca, CLUSTER_TLS_CA
}

func (c clusterOptions) enabled() bool { return c.name != "" }

// clusterFlags declares the cluster flags on fs, each defaulting to its
// environment variable, and returns a function that checks and collects
// them once fs is parsed.
func clusterFlags(fs *flag.FlagSet, getenv func(string) string) func(stderr io.Writer) (clusterOptions, error) {
	var c clusterOptions
	fs.StringVar(&c.name, "cluster-name", getenv("CLUSTER_NAME"),
		"join the cluster of this name (default from CLUSTER_NAME; empty: one process, no cluster)")
	fs.StringVar(&c.addr, "cluster-addr", getenv("CLUSTER_ADDR"),
		"host:port this member's cluster listener binds, exactly (default from CLUSTER_ADDR; required with -cluster-name)")
	fs.StringVar(&c.advertise, "cluster-advertise", getenv("CLUSTER_ADVERTISE"),
		"host:port the other members dial to reach this one (default from CLUSTER_ADVERTISE, else -cluster-addr)")
	members := fs.String("cluster-members", getenv("CLUSTER_MEMBERS"),
		"comma-separated health endpoints (host:port) of every member, this one included: a static member list, protoactor's automanaged provider (default from CLUSTER_MEMBERS; empty: membership in PostgreSQL, the better choice)")
	fs.StringVar(&c.health, "cluster-health", getenv("CLUSTER_HEALTH"),
		"with -cluster-members: this member's health endpoint, one of the list; its port is bound on EVERY interface (default from CLUSTER_HEALTH)")
	fs.StringVar(&c.tlsCert, "cluster-tls-cert", getenv("CLUSTER_TLS_CERT"),
		"PEM certificate this member presents to the others (default from CLUSTER_TLS_CERT; empty: plaintext between members)")
	fs.StringVar(&c.tlsKey, "cluster-tls-key", getenv("CLUSTER_TLS_KEY"), "PEM key of -cluster-tls-cert (default from CLUSTER_TLS_KEY)")
	fs.StringVar(&c.tlsCA, "cluster-tls-ca", getenv("CLUSTER_TLS_CA"),
		"PEM CA bundle a member's certificate must chain to (default from CLUSTER_TLS_CA)")
	return func(stderr io.Writer) (clusterOptions, error) {
		for _, m := range strings.Split(*members, ",") {
			if m = strings.TrimSpace(m); m != "" {
				c.members = append(c.members, m)
			}
		}
		bad := func(format string, args ...any) (clusterOptions, error) {
			fmt.Fprintf(stderr, "cart: "+format+"\n", args...)
			return c, errUsage
		}
		if !c.enabled() {
			if c.addr != "" || c.advertise != "" || len(c.members) > 0 || c.health != "" || c.tlsCert != "" || c.tlsKey != "" || c.tlsCA != "" {
				return bad("-cluster-addr, -cluster-advertise, -cluster-members, -cluster-health and -cluster-tls-* need -cluster-name (or CLUSTER_NAME)")
			}
			return c, nil
		}
		if c.addr == "" {
			return bad("-cluster-name=%s needs -cluster-addr (or CLUSTER_ADDR): the host:port of this member's cluster listener", c.name)
		}
		if (len(c.members) > 0) != (c.health != "") || (c.health != "" && !slices.Contains(c.members, c.health)) {
			return bad("-cluster-members and -cluster-health go together, and the list holds -cluster-health")
		}
		for _, a := range append([]string{c.addr, c.advertise}, c.members...) {
			if a == "" {
				continue
			}
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return bad("cluster address %q: want host:port", a)
			}
		}
		if (c.tlsCert == "") != (c.tlsKey == "") || (c.tlsCert == "") != (c.tlsCA == "") {
			return bad("-cluster-tls-cert, -cluster-tls-key and -cluster-tls-ca go together")
		}
		return c, nil
	}
}

// The cart's placement timeout and retries (see clusterConfig).
var (
	clusterRequestTimeout = 2 * time.Second
	clusterRetry          = retry.Policy{MaxAttempts: 16, InitialDelay: 20 * time.Millisecond, MaxDelay: time.Second}
)

// tlsConfig loads the member's certificate and the CA its peers' must chain
// to: every member both presents its certificate and checks the other's.
func (c clusterOptions) tlsConfig() (*tls.Config, error) {
	if c.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS certificate: %w", err)
	}
	pem, err := os.ReadFile(c.tlsCA)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("cluster TLS CA: " + c.tlsCA + " holds no PEM certificate")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// clusterConfig is the host's cluster configuration for c: the static
// member list when -cluster-members names one, else membership in the
// service's PostgreSQL (setProvider sets that one).
func (c clusterOptions) clusterConfig(setProvider func(*actor.ClusterConfig) error) (*actor.ClusterConfig, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	cfg := &actor.ClusterConfig{Name: c.name, Address: c.addr, AdvertisedAddress: c.advertise, TLS: tlsCfg,
		// A request already sent to a member that died waits this long;
		// the retries (same command id) then outlast the PostgreSQL
		// provider's detection of the loss (TTL 5 s plus a heartbeat),
		// within the service's 10 s command deadline.
		RequestTimeout: clusterRequestTimeout, Retry: clusterRetry}
	if len(c.members) > 0 {
		if cfg.Provider, err = actor.StaticMembers(actor.StaticMembersConfig{Self: c.health, Members: c.members}); err != nil {
			return nil, err
		}
		return cfg, nil
	}
	if err := setProvider(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// joinCluster returns the service's cluster configuration for c (nil
// without -cluster-name) and the banner's line about it.
func joinCluster(c clusterOptions, pool *pgxpool.Pool, logger *slog.Logger) (*actor.ClusterConfig, string, error) {
	if !c.enabled() {
		return nil, "", nil
	}
	cfg, err := c.clusterConfig(func(cfg *actor.ClusterConfig) error {
		p, err := pgmembership.New(pool, &pgmembership.Config{Logger: logger})
		if err != nil {
			return fmt.Errorf("PostgreSQL membership: %w", err)
		}
		cfg.Provider = p
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	member := c.advertise
	if member == "" {
		member = c.addr
	}
	provider := "members in PostgreSQL"
	if len(c.members) > 0 {
		provider = "static members " + strings.Join(c.members, ",") + ", health on " + c.health
	}
	security := "plaintext"
	if cfg.TLS != nil {
		security = "TLS"
	}
	return cfg, fmt.Sprintf("member %s of %q (%s, %s between members)", member, c.name, provider, security), nil
}
