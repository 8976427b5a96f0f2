package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/actor"
)

// Member is what a hook sees of the running member.
type Member struct {
	Options  *options
	Pool     *pgxpool.Pool
	Logger   *slog.Logger
	Mux      *http.ServeMux // add HTTP endpoints here (127.0.0.1 only)
	Host     *actor.Host    // set before Setup hooks run; started after them
	Counters *counterAgg

	starts []func(context.Context) error
	stops  []func(context.Context) error
}

// OnStart runs f after the host has started (joined the cluster).
func (m *Member) OnStart(f func(context.Context) error) { m.starts = append(m.starts, f) }

// OnStop runs f when the member leaves, after the HTTP server stopped and
// before the host stops (in reverse order of registration).
func (m *Member) OnStop(f func(context.Context) error) { m.stops = append(m.stops, f) }

// Hook extends the member: Flags adds flags (called before parsing), Setup
// runs once the host exists and the counter kind is registered, before
// the host starts (register kinds or projections there, add endpoints to
// Mux, and OnStart/OnStop for what runs with the member).
type Hook struct {
	Name  string
	Flags func(fs *flag.FlagSet)
	Setup func(ctx context.Context, m *Member) error
}

var hooks []Hook

// RegisterHook adds a hook; call it from an init function.
func RegisterHook(h Hook) { hooks = append(hooks, h) }

// providers are the membership providers by -provider name. The static
// one (protoactor's automanaged provider) is built in; another file adds
// e.g. "postgres" in its init function with RegisterProvider (its own
// flags come through a Hook).
var providers = map[string]func(m *Member) (cluster.ClusterProvider, error){
	"static": staticProvider,
}

// RegisterProvider makes a membership provider selectable with
// -provider=name.
func RegisterProvider(name string, f func(m *Member) (cluster.ClusterProvider, error)) {
	providers[name] = f
}

func providerNames() []string {
	names := make([]string, 0, len(providers))
	for n := range providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func staticProvider(m *Member) (cluster.ClusterProvider, error) {
	o := m.Options
	if o.health == "" || o.members == "" {
		return nil, fmt.Errorf("-health and -members are required")
	}
	return actor.StaticMembers(actor.StaticMembersConfig{Self: o.health, Members: strings.Split(o.members, ","), Refresh: o.refresh})
}
