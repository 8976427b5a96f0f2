package actor

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
)

// Config configures a Host. A nil *Config, and the zero value of every
// field, means the documented default.
type Config struct {
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
	// MaxAppendBatch caps the streams whose appends the host writes
	// together, in one store round trip and one commit (cross-stream group
	// commit), when the store implements store.BatchAppender. While
	// AppendBatchesInFlight batches are being written, the appends that
	// become ready wait and go out together in the next batch; a lone
	// append goes out at once, so a single sender waits for nothing.
	// Defaults to 64; 1 writes every stream's append on its own.
	MaxAppendBatch int
	// MaxAppendBatchBytes caps the event data in one cross-stream batch
	// (an append larger than this goes alone). Defaults to 4 MiB.
	MaxAppendBatchBytes int
	// AppendBatchesInFlight is how many cross-stream batches may be
	// written at once. Defaults to 2.
	AppendBatchesInFlight int
	// Retry is how a stream actor retries a command after a version
	// conflict (another process wrote the stream): it waits a jittered
	// delay, reads only the tail after its version, decides again and
	// appends again; after MaxAttempts appends the conflict is returned to
	// the caller. Defaults to DefaultRetry (5 attempts, 2ms doubling up to
	// 100ms).
	Retry retry.Policy
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

	// Cluster, when set, makes the host a member of a cluster: every
	// stream is owned by one member, and Send and State on any member go
	// to it (see ClusterConfig). Nil means a single process: no listener,
	// no extra cost.
	Cluster *ClusterConfig
}

// DefaultRetry is the retry policy of version conflicts when Config.Retry
// leaves a field zero.
var DefaultRetry = retry.Policy{MaxAttempts: 5, InitialDelay: 2 * time.Millisecond, MaxDelay: 100 * time.Millisecond}

const (
	defaultMaxActors       = 10_000
	defaultIdleTimeout     = 5 * time.Minute
	maxIdleScanInterval    = time.Minute
	defaultMaxBatch        = 64
	defaultCommandIDWindow = 128

	defaultMaxAppendBatch        = 64
	defaultMaxAppendBatchBytes   = 4 << 20
	defaultAppendBatchesInFlight = 2
	defaultReplayPageSize        = 1000
	defaultStoreTimeout          = 30 * time.Second
)

// withDefaults returns a copy of cfg (nil allowed) with defaults filled
// in, or an error naming the first invalid field.
func withDefaults(cfg *Config) (Config, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
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
	def := DefaultRetry
	def.MaxDelay = max(def.MaxDelay, c.Retry.InitialDelay)
	c.Retry = c.Retry.WithDefaults(def)
	if c.MaxAppendBatch == 0 {
		c.MaxAppendBatch = defaultMaxAppendBatch
	}
	if c.MaxAppendBatchBytes == 0 {
		c.MaxAppendBatchBytes = defaultMaxAppendBatchBytes
	}
	if c.AppendBatchesInFlight == 0 {
		c.AppendBatchesInFlight = defaultAppendBatchesInFlight
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
	if err := c.Retry.Validate("actor.Config.Retry"); err != nil {
		return invalidConfig("%v", err)
	}
	switch {
	case c.MaxActors < 0:
		return invalidConfig("actor.Config.MaxActors is %d, must not be negative", c.MaxActors)
	case c.IdleScanInterval < 0:
		return invalidConfig("actor.Config.IdleScanInterval is %v, must not be negative", c.IdleScanInterval)
	case c.MaxBatch < 0:
		return invalidConfig("actor.Config.MaxBatch is %d, must not be negative", c.MaxBatch)
	case c.MaxAppendBatch < 0:
		return invalidConfig("actor.Config.MaxAppendBatch is %d, must not be negative", c.MaxAppendBatch)
	case c.MaxAppendBatchBytes < 0:
		return invalidConfig("actor.Config.MaxAppendBatchBytes is %d, must not be negative", c.MaxAppendBatchBytes)
	case c.AppendBatchesInFlight < 0:
		return invalidConfig("actor.Config.AppendBatchesInFlight is %d, must not be negative", c.AppendBatchesInFlight)
	case c.CommandIDWindow < 0:
		return invalidConfig("actor.Config.CommandIDWindow is %d, must not be negative", c.CommandIDWindow)
	case c.ReplayPageSize < 0:
		return invalidConfig("actor.Config.ReplayPageSize is %d, must not be negative", c.ReplayPageSize)
	case c.StoreTimeout < 0:
		return invalidConfig("actor.Config.StoreTimeout is %v, must not be negative", c.StoreTimeout)
	}
	return nil
}
