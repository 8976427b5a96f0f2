package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/troupehq/troupe/projection"
)

// ErrInvalidConfig matches every rejected Config; the message names the
// field.
var ErrInvalidConfig = errors.New("invalid bench config")

func configError(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
}

// Config configures a benchmark run. Zero fields take the full run's
// defaults; Quick returns the quick preset.
type Config struct {
	// DatabaseURL names a server on which the benchmark creates (and
	// drops) its scratch databases; its role needs CREATEDB. Defaults to
	// "": a throwaway server is started.
	DatabaseURL string

	// Tenants is T. Defaults to 4.
	Tenants int
	// Carts is N, the carts each tenant keeps open. Defaults to 64.
	Carts int
	// Items is K, the AddItem commands per cart. Defaults to 5.
	Items int

	// Concurrency lists the sender counts C measured, each in both modes.
	// Defaults to 1, 8, 64.
	Concurrency []int
	// Runs is how many times the highest concurrency is measured per mode
	// (the report gives medians); the others run once. Defaults to 3.
	Runs int
	// Duration is the measured part of a throughput run. Defaults to 10s.
	Duration time.Duration
	// Warmup runs before the measured part and is not counted. Defaults
	// to 1s.
	Warmup time.Duration

	// PoolSize caps the connections of each mode's pool, the same for both
	// modes. Defaults to 0: one per sender plus 8, so no command waits for
	// a connection.
	PoolSize int

	// ProjectionBatches are the batch sizes the projection's throughput
	// from cold is measured at, each over the same log; the first is also
	// the lag measurement's. Defaults to 500 (projection.DefaultBatchSize)
	// and 2000.
	ProjectionBatches []int
	// LagRate is the command rate of the end-to-end lag measurement, per
	// second. Defaults to 1000.
	LagRate int
	// LagDuration is how long commands are sent at LagRate. Defaults to
	// 10s.
	LagDuration time.Duration

	// MemoryStreams is M, the stream actors activated to measure the heap
	// per actor. Defaults to 10,000.
	MemoryStreams int

	// StreamLengths are the stream lengths (in events) at which one
	// command's latency is measured, cached and stateless. Defaults to 10,
	// 1,000 and 10,000.
	StreamLengths []int
	// LengthSamples is how many commands are timed per length and mode.
	// Defaults to 50.
	LengthSamples int

	// PgbenchSeconds is pgbench's -T; 0 takes the default and a negative
	// value skips the pgbench ceiling. Defaults to 20.
	PgbenchSeconds int
	// PgbenchClients is pgbench's -c. Defaults to 64.
	PgbenchClients int
	// PgbenchThreads is pgbench's -j. Defaults to 2.
	PgbenchThreads int

	// Progress receives one line per step while the benchmark runs.
	// Defaults to io.Discard.
	Progress io.Writer
	// Logger receives the logs of the host, store and projection.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// Quick returns the quick preset: every measurement, at sizes that finish
// in well under a minute.
func Quick() Config {
	return Config{
		Tenants:        2,
		Carts:          32,
		Items:          5,
		Concurrency:    []int{1, 8, 64},
		Runs:           1,
		Duration:       2 * time.Second,
		Warmup:         500 * time.Millisecond,
		LagRate:        1000,
		LagDuration:    3 * time.Second,
		MemoryStreams:  2000,
		StreamLengths:  []int{10, 1000, 10000},
		LengthSamples:  10,
		PgbenchSeconds: 3,
	}
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Tenants, 4)
	def(&c.Carts, 64)
	def(&c.Items, 5)
	def(&c.Runs, 3)
	def(&c.LagRate, 1000)
	def(&c.MemoryStreams, 10000)
	def(&c.LengthSamples, 50)
	def(&c.PgbenchSeconds, 20)
	def(&c.PgbenchClients, 64)
	def(&c.PgbenchThreads, 2)
	if len(c.Concurrency) == 0 {
		c.Concurrency = []int{1, 8, 64}
	}
	c.Concurrency = slices.Clone(c.Concurrency)
	slices.Sort(c.Concurrency)
	c.Concurrency = slices.Compact(c.Concurrency)
	if len(c.ProjectionBatches) == 0 {
		c.ProjectionBatches = []int{projection.DefaultBatchSize, 2000}
	}
	c.ProjectionBatches = slices.Clone(c.ProjectionBatches)
	if len(c.StreamLengths) == 0 {
		c.StreamLengths = []int{10, 1000, 10000}
	}
	c.StreamLengths = slices.Clone(c.StreamLengths)
	slices.Sort(c.StreamLengths)
	c.StreamLengths = slices.Compact(c.StreamLengths)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	if c.LagDuration == 0 {
		c.LagDuration = 10 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate names the first unusable field of c (after withDefaults).
func (c Config) validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"Tenants", c.Tenants}, {"Carts", c.Carts}, {"Items", c.Items}, {"Runs", c.Runs},
		{"LagRate", c.LagRate}, {"MemoryStreams", c.MemoryStreams},
		{"LengthSamples", c.LengthSamples}, {"PgbenchClients", c.PgbenchClients}, {"PgbenchThreads", c.PgbenchThreads},
	}
	for _, p := range positive {
		if p.v < 0 {
			return configError(p.name, "must be positive, got %d", p.v)
		}
	}
	for _, n := range c.Concurrency {
		if n <= 0 {
			return configError("Concurrency", "every value must be positive, got %d", n)
		}
	}
	for _, n := range c.ProjectionBatches {
		if n <= 0 {
			return configError("ProjectionBatches", "every batch size must be positive, got %d", n)
		}
	}
	for _, n := range c.StreamLengths {
		if n < 2 {
			return configError("StreamLengths", "every length must be at least 2 (a create and an add), got %d", n)
		}
	}
	if c.Duration < 0 || c.Warmup < 0 || c.LagDuration < 0 {
		return configError("Duration/Warmup/LagDuration", "must not be negative")
	}
	if c.Tenants > 1000 {
		return configError("Tenants", "at most 1000, got %d", c.Tenants)
	}
	return nil
}
