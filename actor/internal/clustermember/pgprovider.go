package main

import (
	"flag"
	"time"

	"github.com/asynkron/protoactor-go/cluster"

	"github.com/troupehq/troupe/actor/pgmembership"
)

// -provider=postgres: the membership lives in the -db database
// (actor/pgmembership); -health and -members are not used.
func init() {
	var heartbeat, ttl time.Duration
	RegisterHook(Hook{Name: "pgmembership", Flags: func(fs *flag.FlagSet) {
		fs.DurationVar(&heartbeat, "heartbeat", 0, "postgres provider: pgmembership.Config.HeartbeatInterval (0: its default)")
		fs.DurationVar(&ttl, "ttl", 0, "postgres provider: pgmembership.Config.TTL (0: its default)")
	}})
	RegisterProvider("postgres", func(m *Member) (cluster.ClusterProvider, error) {
		return pgmembership.New(m.Pool, &pgmembership.Config{HeartbeatInterval: heartbeat, TTL: ttl, Logger: m.Logger})
	})
}
