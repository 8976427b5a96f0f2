package actor

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/store"
)

// Config configures a Host. The zero value of every field but Store is
// valid and means the documented default.
type Config struct {
	// Store is where stream actors read and append events. Required. When
	// it also implements store.SnapshotStore, kinds may take aggregate
	// snapshots.
	Store store.EventStore
	// Codec encodes and decodes the events of every kind that names no
	// codec of its own. Defaults to none: then every Kind must set Codec.
	Codec store.Codec
	// Logger receives the host's logs (and protoactor's warnings and
	// errors). Defaults to slog.Default().
	Logger *slog.Logger
	// TracerProvider creates the tracer of the command, activation and
	// append spans (see docs/telemetry.md). Defaults to
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the host's instruments (see
	// docs/telemetry.md). Defaults to otel.GetMeterProvider().
	MeterProvider metric.MeterProvider

	// MaxActors caps the stream actors alive at once (cached ones plus
	// ones being passivated). When the cap is reached the least recently
	// used actor is passivated and a command for a new stream waits for a
	// slot. Defaults to 10,000.
	MaxActors int
	// IdleTimeout passivates a stream actor that has received no command
	// or state read for this long. Defaults to 5 minutes; a negative value
	// disables idle passivation.
	IdleTimeout time.Duration
	// IdleScanInterval is how often the host looks for idle actors.
	// Defaults to IdleTimeout/4, at most one minute.
	IdleScanInterval time.Duration
	// MaxBatch caps the commands decided together and written as one
	// append (group commit). Defaults to 64; 1 disables batching.
	MaxBatch int
	// Retry is the policy for version conflicts.
	Retry RetryPolicy
	// CommandIDWindow is how many recent command ids each stream actor
	// remembers (with their results) for idempotent re-sends. Defaults to
	// 128.
	CommandIDWindow int
	// ReplayPageSize is how many events are read per round trip when an
	// actor rebuilds its state. Defaults to 1000.
	ReplayPageSize int
	// StoreTimeout bounds every store call a stream actor makes (append,
	// read, snapshot). Defaults to 30 seconds.
	StoreTimeout time.Duration
}

// RetryPolicy says how a stream actor retries a command after a version
// conflict (another process wrote the stream): it waits a jittered delay,
// reads only the tail after its version, re-decides and appends again.
type RetryPolicy struct {
	// MaxAttempts is how many appends one command may try before the
	// conflict is returned to the caller. Defaults to 5; 1 disables
	// retries.
	MaxAttempts int
	// BaseDelay is the upper bound of the random delay before the first
	// retry; it doubles with every further attempt up to MaxDelay.
	// Defaults to 2ms.
	BaseDelay time.Duration
	// MaxDelay caps the delay before a retry. Defaults to 100ms.
	MaxDelay time.Duration
}

const (
	defaultMaxActors       = 10_000
	defaultIdleTimeout     = 5 * time.Minute
	maxIdleScanInterval    = time.Minute
	defaultMaxBatch        = 64
	defaultMaxAttempts     = 5
	defaultBaseDelay       = 2 * time.Millisecond
	defaultMaxDelay        = 100 * time.Millisecond
	defaultCommandIDWindow = 128
	defaultReplayPageSize  = 1000
	defaultStoreTimeout    = 30 * time.Second
)

// withDefaults returns a copy of c with defaults filled in, or an error
// naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	if err := c.validate(); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxActors == 0 {
		c.MaxActors = defaultMaxActors
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.IdleScanInterval == 0 && c.IdleTimeout > 0 {
		c.IdleScanInterval = min(max(c.IdleTimeout/4, time.Millisecond), maxIdleScanInterval)
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = defaultMaxBatch
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = defaultMaxAttempts
	}
	if c.Retry.BaseDelay == 0 {
		c.Retry.BaseDelay = defaultBaseDelay
	}
	if c.Retry.MaxDelay == 0 {
		c.Retry.MaxDelay = max(defaultMaxDelay, c.Retry.BaseDelay)
	}
	if c.CommandIDWindow == 0 {
		c.CommandIDWindow = defaultCommandIDWindow
	}
	if c.ReplayPageSize == 0 {
		c.ReplayPageSize = defaultReplayPageSize
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = defaultStoreTimeout
	}
	return c, nil
}

func (c Config) validate() error {
	switch {
	case c.Store == nil:
		return invalidConfig("Config.Store is nil")
	case c.MaxActors < 0:
		return invalidConfig("Config.MaxActors is %d, must not be negative", c.MaxActors)
	case c.IdleScanInterval < 0:
		return invalidConfig("Config.IdleScanInterval is %v, must not be negative", c.IdleScanInterval)
	case c.MaxBatch < 0:
		return invalidConfig("Config.MaxBatch is %d, must not be negative", c.MaxBatch)
	case c.Retry.MaxAttempts < 0:
		return invalidConfig("Config.Retry.MaxAttempts is %d, must not be negative", c.Retry.MaxAttempts)
	case c.Retry.BaseDelay < 0:
		return invalidConfig("Config.Retry.BaseDelay is %v, must not be negative", c.Retry.BaseDelay)
	case c.Retry.MaxDelay < 0:
		return invalidConfig("Config.Retry.MaxDelay is %v, must not be negative", c.Retry.MaxDelay)
	case c.Retry.MaxDelay > 0 && c.Retry.MaxDelay < c.Retry.BaseDelay:
		return invalidConfig("Config.Retry.MaxDelay (%v) is below Config.Retry.BaseDelay (%v)", c.Retry.MaxDelay, c.Retry.BaseDelay)
	case c.CommandIDWindow < 0:
		return invalidConfig("Config.CommandIDWindow is %d, must not be negative", c.CommandIDWindow)
	case c.ReplayPageSize < 0:
		return invalidConfig("Config.ReplayPageSize is %d, must not be negative", c.ReplayPageSize)
	case c.StoreTimeout < 0:
		return invalidConfig("Config.StoreTimeout is %v, must not be negative", c.StoreTimeout)
	}
	return nil
}
