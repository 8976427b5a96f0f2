package troupetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// DefaultTimeout bounds each step of a Scenario when Config.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Waiter is what ThenRows waits on before it queries: a read model that
// can tell when it has applied the log up to a position.
// *projection.Projection and *consumer.Consumer are Waiters.
type Waiter interface {
	WaitFor(ctx context.Context, pos store.Position) error
}

// Config configures a Scenario.
type Config struct {
	// Codec encodes the Given events and decodes the events ThenEvents
	// reads. Required.
	Codec store.Codec
	// Store is the event store Given appends to and ThenEvents reads.
	// Defaults to a store/postgres store on the pool.
	Store store.EventStore
	// Projections are started by New and stopped when the test ends;
	// ThenRows waits until each has applied every event in the log.
	// Defaults to none.
	Projections []*projection.Projection
	// WaitFor are waited on by ThenRows like Projections, but neither
	// started nor stopped: read models the code under test runs itself
	// (a service's). Defaults to none.
	WaitFor []Waiter
	// Timeout bounds each step (an append, When, a wait, a query).
	// Defaults to DefaultTimeout.
	Timeout time.Duration
}

// Scenario is a given/when/then test of projections or of a whole
// service against a real database: Given appends events to the store, When
// runs the code under test (a command sent to an actor host, an HTTP
// request…), ThenEvents checks the events appended since Given and
// ThenRows the read model's rows. Steps are chained:
//
//	troupetest.New(t, pool, &troupetest.Config{Codec: codec, Projections: []*projection.Projection{p}}).
//		Given(troupetest.Stream("cart-1", CartCreated{}, ItemAdded{SKU: "a", Qty: 2})).
//		ThenRows(`SELECT cart_id, item_count FROM carts`, troupetest.Rows{{"cart-1", 2}})
//
// A failing Then reports what differs (-want +got) and fails the test
// without stopping it; a step that cannot run (an append, a query)
// stops the test. A Scenario belongs to one test goroutine.
type Scenario struct {
	t       testing.TB
	pool    *pgxpool.Pool
	cfg     Config
	store   store.EventStore
	waiters []Waiter
	head    store.Position              // the log read so far
	given   map[streamKey]store.Version // each stream's version after Given
	whenErr error                       // When's error, until ThenError checks it
	whenRan bool
}

type streamKey struct {
	partition string
	stream    store.StreamID
}

// New returns a scenario on pool, whose database must be migrated (NewPool
// does that), and starts cfg.Projections. A nil cfg or a missing Codec
// fails the test.
func New(t testing.TB, pool *pgxpool.Pool, cfg *Config) *Scenario {
	t.Helper()
	if cfg == nil || cfg.Codec == nil {
		t.Fatalf("troupetest.Config.Codec is nil: the scenario encodes the Given events with it")
		return nil
	}
	if pool == nil {
		t.Fatalf("troupetest.New: pool is nil")
		return nil
	}
	s := &Scenario{t: t, pool: pool, cfg: *cfg, store: cfg.Store, given: map[streamKey]store.Version{}}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = DefaultTimeout
	}
	if s.store == nil {
		pg, err := postgres.New(pool, nil)
		if err != nil {
			t.Fatalf("troupetest: event store: %v", err)
			return nil
		}
		s.store = pg
	}
	for i, p := range cfg.Projections {
		if p == nil {
			t.Fatalf("troupetest.Config.Projections[%d] is nil", i)
			return nil
		}
		ctx, cancel := s.ctx()
		err := p.Start(ctx)
		cancel()
		if err != nil {
			t.Fatalf("troupetest: starting projection %d: %v", i, err)
			return nil
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
			defer cancel()
			if err := p.Stop(ctx); err != nil {
				t.Errorf("troupetest: stopping projection %d: %v", i, err)
			}
		})
		s.waiters = append(s.waiters, p)
	}
	for i, w := range cfg.WaitFor {
		if w == nil {
			t.Fatalf("troupetest.Config.WaitFor[%d] is nil", i)
			return nil
		}
		s.waiters = append(s.waiters, w)
	}
	t.Cleanup(func() {
		if s.whenErr != nil {
			t.Errorf("troupetest: When returned an error that no ThenError checked: %v", s.whenErr)
		}
	})
	return s
}

// Store returns the event store the scenario appends to.
func (s *Scenario) Store() store.EventStore { return s.store }

// Pool returns the scenario's pool.
func (s *Scenario) Pool() *pgxpool.Pool { return s.pool }

func (s *Scenario) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.Timeout)
}

// Events are events of one stream, for Given and ThenEvents. Make them
// with Stream.
type Events struct {
	Partition  string
	Stream     store.StreamID
	StreamType string
	// Values are Go event values, encoded with the scenario's codec; a
	// store.EventData is appended as it is (to store an event the codec
	// would refuse).
	Values []any
}

// Stream returns events of stream id in the default partition.
func Stream(id string, values ...any) Events {
	return Events{Stream: store.StreamID(id), Values: values}
}

// In returns the events in partition (a tenant) instead.
func (e Events) In(partition string) Events { e.Partition = partition; return e }

// OfType returns the events with their stream's type set, recorded when
// Given creates the stream (an actor host's kind expects its StreamType).
func (e Events) OfType(streamType string) Events { e.StreamType = streamType; return e }

func (e Events) key() streamKey { return streamKey{store.Partition(e.Partition), e.Stream} }

func (e Events) String() string {
	if e.Partition == "" {
		return fmt.Sprintf("stream %q", e.Stream)
	}
	return fmt.Sprintf("stream %q of partition %q", e.Stream, e.Partition)
}

// Given appends each stream's events to the store, one append per stream,
// in order. A failed append stops the test.
func (s *Scenario) Given(streams ...Events) *Scenario {
	s.t.Helper()
	for _, e := range streams {
		data, err := s.encode(e.Values)
		if err != nil {
			s.t.Fatalf("troupetest: Given %s: %v", e, err)
			return s
		}
		if len(data) == 0 {
			continue
		}
		ctx, cancel := s.ctx()
		res, err := s.store.AppendToStream(ctx, e.Stream, data, store.AppendOptions{Partition: e.Partition, StreamType: e.StreamType})
		cancel()
		if err != nil {
			s.t.Fatalf("troupetest: Given %s: %v", e, err)
			return s
		}
		s.given[e.key()] = res.NextExpectedVersion
	}
	return s
}

func (s *Scenario) encode(values []any) ([]store.EventData, error) {
	out := make([]store.EventData, 0, len(values))
	for i, v := range values {
		if d, ok := v.(store.EventData); ok {
			out = append(out, d)
			continue
		}
		if _, _, err := s.cfg.Codec.Encode(v); err != nil {
			return nil, fmt.Errorf("event %d (%T): %w", i, v, err)
		}
		// Through store.Encode, so the event carries whatever the codec
		// says besides its type and body (its schema version).
		data, err := store.Encode(s.cfg.Codec, v)
		if err != nil {
			return nil, fmt.Errorf("event %d (%T): %w", i, v, err)
		}
		out = append(out, data...)
	}
	return out, nil
}

// When runs fn, the code under test, with a context bounded by the
// scenario's timeout. An error fails the next Then step (and the test, if
// none follows) unless that step is ThenError.
func (s *Scenario) When(fn func(ctx context.Context) error) *Scenario {
	s.t.Helper()
	s.checkWhen("When")
	ctx, cancel := s.ctx()
	defer cancel()
	s.whenErr, s.whenRan = fn(ctx), true
	return s
}

// checkWhen stops the test when the last When failed and step is not
// ThenError.
func (s *Scenario) checkWhen(step string) {
	s.t.Helper()
	if s.whenErr != nil {
		err := s.whenErr
		s.whenErr = nil
		s.t.Fatalf("troupetest: %s after When, which failed: %v", step, err)
	}
}

// ThenError checks that When returned an error matching target
// (errors.Is).
func (s *Scenario) ThenError(target error) *Scenario {
	s.t.Helper()
	err := s.whenErr
	s.whenErr = nil
	switch {
	case !s.whenRan:
		s.t.Errorf("troupetest: ThenError without a When")
	case err == nil:
		s.t.Errorf("troupetest: When succeeded; want an error matching %v", target)
	case !errors.Is(err, target):
		s.t.Errorf("troupetest: When returned %v; want an error matching %v", err, target)
	}
	return s
}

// ThenEvents checks, for each stream, the events appended to it after the
// events Given appended to it (all of its events when Given did not name
// it): their types and bodies, decoded and re-encoded with the codec, in
// order. Pass no values to check that nothing was appended.
func (s *Scenario) ThenEvents(streams ...Events) *Scenario {
	s.t.Helper()
	s.checkWhen("ThenEvents")
	for _, e := range streams {
		want := make([]string, 0, len(e.Values))
		for i, v := range e.Values {
			line, err := s.render(v)
			if err != nil {
				s.t.Fatalf("troupetest: ThenEvents %s: want event %d: %v", e, i, err)
				return s
			}
			want = append(want, line)
		}
		ctx, cancel := s.ctx()
		res, err := s.store.ReadStream(ctx, e.Stream, store.ReadOptions{Partition: e.Partition, From: s.given[e.key()] + 1})
		cancel()
		if err != nil {
			s.t.Fatalf("troupetest: ThenEvents %s: %v", e, err)
			return s
		}
		got := make([]string, 0, len(res.Events))
		for _, ev := range res.Events {
			v, err := store.Decode(s.cfg.Codec, ev)
			if err != nil {
				got = append(got, fmt.Sprintf("%s %s (does not decode: %v)", ev.Type, ev.Data, err))
				continue
			}
			line, err := s.render(v)
			if err != nil {
				got = append(got, fmt.Sprintf("%s %s (does not encode again: %v)", ev.Type, ev.Data, err))
				continue
			}
			got = append(got, line)
		}
		if d := diff(want, got); d != "" {
			s.t.Errorf("troupetest: ThenEvents %s: events appended after Given differ (-want +got):\n%s", e, d)
		}
	}
	return s
}

// render is an event's line in ThenEvents' comparison: its type name and
// its body as the codec writes them.
func (s *Scenario) render(v any) (string, error) {
	if d, ok := v.(store.EventData); ok {
		return d.Type + " " + string(d.Data), nil
	}
	typ, data, err := s.cfg.Codec.Encode(v)
	if err != nil {
		return "", fmt.Errorf("%T: %w", v, err)
	}
	return typ + " " + string(data), nil
}

// Rows are the rows a query should return, in order, each value in column
// order.
type Rows [][]any

// ThenRows waits until every projection of the scenario (Projections and
// WaitFor) has applied the last event committed to the pool's database,
// runs query with args on the pool and checks that it returns
// want, in order (give the query an ORDER BY). Values compare by their
// text: 2 matches an int, bigint or numeric 2, "2.50" a numeric 2.50, nil
// a NULL, a time.Time an equal timestamp, a map or slice a json/jsonb
// value with the same JSON.
func (s *Scenario) ThenRows(query string, want Rows, args ...any) *Scenario {
	s.t.Helper()
	s.checkWhen("ThenRows")
	if err := s.waitForProjections(); err != nil {
		s.t.Fatalf("troupetest: ThenRows: %v", err)
		return s
	}
	got, err := queryRows(s.pool, s.cfg.Timeout, query, args...)
	if err != nil {
		s.t.Fatalf("troupetest: ThenRows: %v", err)
		return s
	}
	if d := diff(renderRows(want), got); d != "" {
		s.t.Errorf("troupetest: ThenRows %s: rows differ (-want +got):\n%s", oneLine(query), d)
	}
	return s
}

// waitForProjections finds the last event committed to the log in the
// pool's database and waits until each waiter has applied it. (Reading
// the log with ReadAll to an empty page would not do: the gap-free read
// holds committed events back while an older transaction is in flight.)
func (s *Scenario) waitForProjections() error {
	if len(s.waiters) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	st, err := projection.LoadStatus(ctx, s.pool, "troupetest", projection.AllPartitions)
	if err != nil {
		return fmt.Errorf("finding the end of the log: %w", err)
	}
	if st.LastEvent == (store.Position{}) {
		return nil
	}
	for i, w := range s.waiters {
		if err := w.WaitFor(ctx, st.LastEvent); err != nil {
			return fmt.Errorf("waiting for read model %d to apply the log up to %v: %w", i, st.LastEvent, err)
		}
	}
	return nil
}

func oneLine(q string) string { return strings.Join(strings.Fields(q), " ") }
