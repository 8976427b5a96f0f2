package actor

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	protoactor "github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
)

// ClusterConfig makes a Host a member of a protoactor-go cluster: every
// stream is owned by one member at a time (protoactor's identity placement
// of the grain "tenant/kind/stream"), and Send and State on any member go
// to the owner, which runs the stream actor exactly as a single process
// does. Correctness does not rest on a stream being active on one member
// only: during membership changes two members may briefly both run it, and
// the store's version check and command ids keep every command applied
// once. See docs/cluster.md.
type ClusterConfig struct {
	// Name is the cluster's name; members of other clusters are ignored.
	// Required.
	Name string
	// Address is the "host:port" the member's gRPC listener binds, exactly
	// (an empty host is refused: it would mean every interface). Required.
	Address string
	// AdvertisedAddress is the "host:port" other members dial to reach this
	// one. Defaults to Address.
	AdvertisedAddress string
	// Provider tells the member which members exist. Required: a static
	// list (StaticMembers), the PostgreSQL provider (package
	// actor/pgmembership), or any of protoactor-go's providers (consul,
	// etcd, Kubernetes, ...).
	Provider cluster.ClusterProvider
	// TLS, when set, makes member-to-member gRPC use TLS: the config is the
	// listener's server credentials (Certificates, ClientCAs and ClientAuth
	// for mutual TLS) and the client credentials used to dial the other
	// members (RootCAs, Certificates, ServerName). Every member of a
	// cluster must use TLS or none. Without it the traffic is plaintext
	// (protoactor's default).
	TLS *tls.Config
	// RequestTimeout bounds one attempt to reach a stream's owner and get
	// its answer. Defaults to 5 seconds.
	RequestTimeout time.Duration
	// Retry is how a Send or State retries placement failures: the owner
	// was unreachable, timed out, had no activation for the stream any
	// more, or is leaving the cluster. Commands are retried with the same
	// command id (Send generates one when SendOptions.CommandID is empty),
	// so a retry of a command that was applied returns its original result.
	// Other errors are never retried. After the last attempt the error
	// matches ErrOutcomeUnknown when a request that went out timed out or
	// its member left (the command may have been applied: re-send it with
	// the same command id), store.ErrUnavailable otherwise. Once this host
	// is stopping no new attempt is made (ErrStopped, with
	// ErrOutcomeUnknown as above). The waits between attempts add up to
	// about 5 seconds with the defaults, but each attempt may take up to
	// RequestTimeout: a Send whose context has no deadline may wait
	// MaxAttempts × RequestTimeout plus the delays for an owner that is
	// unreachable and not yet dropped from the membership. Defaults to
	// DefaultClusterRetry.
	Retry retry.Policy
}

// DefaultClusterRetry is the retry policy of placement failures when
// ClusterConfig.Retry leaves a field zero: its delays add up to about 5
// seconds, enough to outlast a member's loss being noticed by the default
// providers (attempts that wait for an answer add their own time, see
// ClusterConfig.Retry).
var DefaultClusterRetry = retry.Policy{MaxAttempts: 12, InitialDelay: 20 * time.Millisecond, MaxDelay: time.Second}

const (
	defaultRequestTimeout = 5 * time.Second
	// streamGrainKind is the protoactor cluster kind of streams.
	streamGrainKind = "troupe.stream"
)

func (c *ClusterConfig) withDefaults() (ClusterConfig, error) {
	out := *c
	if err := out.Retry.Validate("actor.Config.Cluster.Retry"); err != nil {
		return out, invalidConfig("%v", err)
	}
	switch {
	case out.Name == "":
		return out, invalidConfig("actor.Config.Cluster.Name is empty")
	case out.Provider == nil:
		return out, invalidConfig("actor.Config.Cluster.Provider is nil")
	case out.RequestTimeout < 0:
		return out, invalidConfig("actor.Config.Cluster.RequestTimeout is %v, must not be negative", out.RequestTimeout)
	}
	if _, _, err := splitHostPort(out.Address); err != nil {
		return out, invalidConfig("actor.Config.Cluster.Address %q: %v", out.Address, err)
	}
	if out.AdvertisedAddress == "" {
		out.AdvertisedAddress = out.Address
	} else if _, _, err := splitHostPort(out.AdvertisedAddress); err != nil {
		return out, invalidConfig("actor.Config.Cluster.AdvertisedAddress %q: %v", out.AdvertisedAddress, err)
	}
	if out.RequestTimeout == 0 {
		out.RequestTimeout = defaultRequestTimeout
	}
	out.Retry = out.Retry.WithDefaults(DefaultClusterRetry)
	out.Retry.MaxDelay = max(out.Retry.MaxDelay, out.Retry.InitialDelay)
	return out, nil
}

// splitHostPort parses "host:port" with a non-empty host and a port in
// 1..65535.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		return "", 0, fmt.Errorf("the host is empty (name the interface to bind)")
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not in 1..65535", p)
	}
	return host, port, nil
}

// StaticMembersConfig is a fixed list of members for StaticMembers.
type StaticMembersConfig struct {
	// Self is this member's health endpoint, "host:port". Only its port is
	// used: protoactor's automanaged provider binds it on EVERY interface
	// (0.0.0.0:port), unlike the member's gRPC listener. Firewall it, or
	// prefer the PostgreSQL provider (actor/pgmembership).
	Self string
	// Members are the health endpoints of every member, this one included.
	Members []string
	// Refresh is how often every member's health endpoint is polled: a
	// member whose endpoint does not answer leaves the cluster at the next
	// poll. Defaults to 1 second.
	Refresh time.Duration
}

// StaticMembers returns protoactor's automanaged provider for a static
// list of members: each member serves a small HTTP health endpoint
// (GET /_health on StaticMembersConfig.Self) and polls every member's.
//
// Beware: the automanaged provider binds its health endpoint on every
// interface (0.0.0.0), whatever host Self names, and serves it over plain
// HTTP without authentication. It reveals the member's address, id and
// kinds. Keep the port behind a firewall or use another provider.
func StaticMembers(cfg StaticMembersConfig) (cluster.ClusterProvider, error) {
	_, port, err := splitHostPort(cfg.Self)
	if err != nil {
		return nil, invalidConfig("actor.StaticMembersConfig.Self %q: %v", cfg.Self, err)
	}
	if len(cfg.Members) == 0 {
		return nil, invalidConfig("actor.StaticMembersConfig.Members is empty")
	}
	for _, m := range cfg.Members {
		if _, _, err := splitHostPort(m); err != nil {
			return nil, invalidConfig("actor.StaticMembersConfig.Members: %q: %v", m, err)
		}
	}
	switch {
	case cfg.Refresh < 0:
		return nil, invalidConfig("actor.StaticMembersConfig.Refresh is %v, must not be negative", cfg.Refresh)
	case cfg.Refresh == 0:
		cfg.Refresh = time.Second
	}
	return automanaged.NewWithConfig(cfg.Refresh, port, cfg.Members...), nil
}

// clusterRuntime is a Host's membership: nil in single-process mode.
type clusterRuntime struct {
	h   *Host
	cfg ClusterConfig
	cl  *cluster.Cluster

	calls   sync.WaitGroup // attempts in flight (each bounded by RequestTimeout)
	serving sync.WaitGroup // requests served for other members
	callers sync.WaitGroup // Sends and States of this host in flight (Add under h.mu, see begin)

	mu          sync.Mutex
	activations map[string]int // grain activations started here, by identity
	live        map[string]int // grains alive here, by identity
	inFlight    map[*inFlight]struct{}
	started     bool
	leaving     bool // serving no more requests (set before serving.Wait)
	failed      bool // a Start failed to join
	topology    *eventstream.Subscription
	// known is the addresses (sorted) of the members of the last topology
	// event, and rdv its placement: protoactor's MemberList.Members reads
	// its set without a lock, so Members and Owner read these instead.
	known []string
	rdv   *cluster.Rendezvous
}

func newClusterRuntime(h *Host, c *ClusterConfig) (*clusterRuntime, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	host, port, _ := splitHostPort(cfg.Address)
	opts := []remote.ConfigOption{remote.WithAdvertisedHost(cfg.AdvertisedAddress)}
	if cfg.TLS != nil {
		opts = append(opts,
			remote.WithServerOptions(grpc.Creds(credentials.NewTLS(cfg.TLS))),
			remote.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS))))
	} else {
		opts = append(opts, remote.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	r := &clusterRuntime{h: h, cfg: cfg, activations: map[string]int{}, live: map[string]int{}, inFlight: map[*inFlight]struct{}{}}
	kind := cluster.NewKind(streamGrainKind, protoactor.PropsFromProducer(func() protoactor.Actor { return &streamGrain{r: r} }))
	cc := cluster.Configure(cfg.Name, cfg.Provider, disthash.New(), remote.Configure(host, port, opts...),
		cluster.WithKinds(kind), cluster.WithRequestTimeout(cfg.RequestTimeout))
	r.cl = cluster.New(h.system, cc)
	return r, nil
}

// addGrainKind adds a cluster kind whose grains are placed by identity
// like the streams' (for parts of this package that need one active
// instance per identity across the cluster); requests reach them through
// attempt. Call it before Start.
func (r *clusterRuntime) addGrainKind(name string, producer protoactor.Producer) {
	r.cl.Config.Kinds[name] = cluster.NewKind(name, protoactor.PropsFromProducer(producer))
}

// start joins the cluster. protoactor panics when it cannot listen or the
// provider fails to start; the panic becomes an error.
func (r *clusterRuntime) start() (err error) {
	// Listen first: a clear error for an address in use, instead of
	// protoactor's panic.
	if r.failed {
		return fmt.Errorf("actor: join cluster %q: an earlier Start failed to join; a host that failed to join can only be stopped: make a new one", r.cfg.Name)
	}
	l, lerr := net.Listen("tcp", r.cfg.Address)
	if lerr != nil {
		return fmt.Errorf("actor: join cluster %q: listen on actor.Config.Cluster.Address: %w", r.cfg.Name, lerr)
	}
	_ = l.Close()
	defer func() {
		if p := recover(); p != nil {
			r.abortStart()
			err = fmt.Errorf("actor: join cluster %q at %s: %v", r.cfg.Name, r.cfg.Address, p)
		}
	}()
	r.topology = r.cl.ActorSystem.EventStream.Subscribe(func(evt any) {
		t, ok := evt.(*cluster.ClusterTopology)
		if !ok {
			return
		}
		rdv := cluster.NewRendezvous()
		rdv.UpdateMembers(t.Members)
		addrs := make([]string, 0, len(t.Members))
		for _, m := range t.Members {
			addrs = append(addrs, m.Address())
		}
		slices.Sort(addrs)
		r.mu.Lock()
		r.known, r.rdv = addrs, rdv
		r.mu.Unlock()
		if len(t.Left) > 0 {
			left := make(map[string]bool, len(t.Left))
			for _, m := range t.Left {
				left[m.Address()] = true
			}
			r.membersLeft(left)
		}
	})
	r.cl.StartMember()
	r.mu.Lock()
	r.started = true
	r.mu.Unlock()
	r.h.log.Info("actor_cluster_joined", slog.String("cluster", r.cfg.Name), slog.String("member", r.member()))
	return nil
}

// abortStart shuts down what protoactor started before the join failed
// (the gRPC listener, gossip, the placement), so that the address is free
// again and no goroutine of the failed join outlives the host's Stop.
func (r *clusterRuntime) abortStart() {
	r.failed = true
	if r.topology != nil {
		r.cl.ActorSystem.EventStream.Unsubscribe(r.topology)
		r.topology = nil
	}
	if r.cl.Remote == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			r.h.log.Warn("actor_cluster_abort_start", slog.Any("panic", p))
		}
	}()
	r.cl.Gossip.Shutdown()
	r.cl.IdentityLookup.Shutdown()
	r.stopRemote(func() { r.cl.Remote.Shutdown(true) })
}

// stopRemote runs shutdown, a graceful stop of protoactor's remoting (or
// of the whole cluster member, which ends with it). protoactor's endpoint
// manager may panic there ("send on closed channel": an inbound stream
// that failed closes its channel while the manager's stop still sends on
// it); the member has handed everything over by then, so the panic is
// logged and the gRPC server stopped without the graceful part.
func (r *clusterRuntime) stopRemote(shutdown func()) {
	defer func() {
		if p := recover(); p != nil {
			r.h.log.Warn("actor_cluster_shutdown_panic", slog.Any("panic", p))
			defer func() { _ = recover() }()
			r.cl.Remote.Shutdown(false)
		}
	}()
	shutdown()
}

// leave waits for the requests this member is serving and shuts the
// member down (protoactor's graceful cluster shutdown, which also shuts
// the actor system down: it reports whether it did). Called by Host.Stop
// after the host stopped accepting and drained.
func (r *clusterRuntime) leave() bool {
	r.mu.Lock()
	started := r.started
	r.leaving = true
	r.mu.Unlock()
	r.serving.Wait()
	if r.topology != nil {
		r.cl.ActorSystem.EventStream.Unsubscribe(r.topology)
	}
	if started {
		r.stopRemote(func() { r.cl.Shutdown(true) })
	}
	r.calls.Wait()
	return started
}

// announceLeaving tells the other members this one is going, so they route
// its streams elsewhere while it drains.
func (r *clusterRuntime) announceLeaving() {
	r.mu.Lock()
	started := r.started
	r.mu.Unlock()
	if !started {
		return
	}
	r.cl.Gossip.SetState(cluster.GracefullyLeftKey, &emptypb.Empty{})
	if err := r.cfg.Provider.Shutdown(true); err != nil {
		r.h.log.Warn("actor_cluster_provider_shutdown", slog.Any("error", err))
	}
}

func (r *clusterRuntime) member() string { return r.cl.ActorSystem.Address() }

func (r *clusterRuntime) members() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.known)
}

func (r *clusterRuntime) owner(k key) string {
	r.mu.Lock()
	rdv := r.rdv
	r.mu.Unlock()
	if rdv == nil {
		return ""
	}
	return rdv.GetByClusterIdentity(cluster.NewClusterIdentity(identityOf(k), streamGrainKind))
}

// identityOf is a stream's grain identity. Tenant ids hold no "/"; a kind
// name or stream id with one may share an identity with another stream,
// which only means that both are placed on the same member.
func identityOf(k key) string { return k.tenant + "/" + k.kind + "/" + string(k.stream) }

// Activations returns how many stream grains this member has activated
// (since New) per grain identity "tenant/kind/stream"; it is empty in
// single-process mode. Meant for tests and diagnostics.
func (h *Host) Activations() map[string]int {
	out := map[string]int{}
	if h.cluster == nil {
		return out
	}
	h.cluster.mu.Lock()
	defer h.cluster.mu.Unlock()
	for id, n := range h.cluster.activations {
		out[id] = n
	}
	return out
}

// Member returns this member's advertised address ("" in single-process
// mode).
func (h *Host) Member() string {
	if h.cluster == nil {
		return ""
	}
	return h.cluster.cfg.AdvertisedAddress
}

// Members returns the addresses of the members this one currently knows,
// sorted, itself included once it has joined (nil in single-process mode).
func (h *Host) Members() []string {
	if h.cluster == nil || !h.clusterStarted() {
		return nil
	}
	return h.cluster.members()
}

// Owner returns the address of the member that owns a stream of kind now,
// as this member sees the cluster. In single-process mode it returns "" and
// no error. It fails when the kind is not registered, the stream id or
// tenant is invalid, or no member is known.
func (h *Host) Owner(kind, tenant string, stream store.StreamID) (string, error) {
	h.kindsMu.RLock()
	_, ok := h.kinds[kind]
	h.kindsMu.RUnlock()
	if !ok {
		return "", fmt.Errorf("actor: owner of %s stream %q: %w: %q", kind, stream, ErrUnknownKind, kind)
	}
	p, err := store.ValidatePartition(tenant)
	if err != nil {
		return "", fmt.Errorf("actor: owner of %s stream %q: %w", kind, stream, err)
	}
	if err := store.ValidateStreamID(stream); err != nil {
		return "", fmt.Errorf("actor: owner of %s stream: %w", kind, err)
	}
	if h.cluster == nil {
		return "", nil
	}
	if !h.clusterStarted() {
		return "", fmt.Errorf("actor: owner of %s stream %q: %w", kind, stream, ErrNotStarted)
	}
	o := h.cluster.owner(key{tenant: p, kind: kind, stream: stream})
	if o == "" {
		return "", fmt.Errorf("actor: owner of %s stream %q: no member of cluster %q is known", kind, stream, h.cluster.cfg.Name)
	}
	return o, nil
}

func (h *Host) clusterStarted() bool {
	h.cluster.mu.Lock()
	defer h.cluster.mu.Unlock()
	return h.cluster.started
}

// passivateKey passivates the cached stream actor of k, if any: it
// finishes the commands it has and stops, and the next command for the
// stream loads it again from the store.
func (h *Host) passivateKey(k key, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.cache.Peek(k); ok {
		h.evict(reason, func() { h.cache.Remove(k) })
	}
}
