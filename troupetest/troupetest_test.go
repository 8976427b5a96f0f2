package troupetest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/troupetest"
)

// A small bank: accounts opened, credited and debited.

type Opened struct {
	Owner string `json:"owner"`
}
type Deposited struct {
	Amount int `json:"amount"`
}
type Withdrawn struct {
	Amount int `json:"amount"`
}

type Withdraw struct {
	Account string
	Amount  int
}

var ErrInsufficientFunds = errors.New("insufficient funds")

type account struct{ Balance int }

func bank() decider.Decider[Withdraw, any, account] {
	return decider.Decider[Withdraw, any, account]{
		Decide: func(c Withdraw, s account) ([]any, error) {
			if c.Amount > s.Balance {
				return nil, ErrInsufficientFunds
			}
			return []any{Withdrawn{Amount: c.Amount}}, nil
		},
		Evolve: func(s account, e any) account {
			switch e := e.(type) {
			case Deposited:
				s.Balance += e.Amount
			case Withdrawn:
				s.Balance -= e.Amount
			}
			return s
		},
		InitialState: func() account { return account{} },
	}
}

func codec() *store.JSONCodec {
	return store.NewJSONCodec().
		MustRegister("Opened", Opened{}).
		MustRegister("Deposited", Deposited{}).
		MustRegister("Withdrawn", Withdrawn{})
}

type balance struct {
	Owner   string `json:"owner"`
	Balance int    `json:"balance"`
}

// balances is the read model under test: one row per account.
func balances(t testing.TB, pool *pgxpool.Pool, c store.Codec) *projection.Projection {
	t.Helper()
	_, err := pool.Exec(context.Background(), `CREATE TABLE balances (
    account_id text NOT NULL, partition text NOT NULL, owner text, balance int,
    PRIMARY KEY (account_id, partition))`)
	require.NoError(t, err)
	rm, err := readmodel.New(&readmodel.Config[balance]{
		Table:   "balances",
		Storage: readmodel.InTable,
		Codec:   c,
		Evolvers: []readmodel.Evolver[balance]{
			readmodel.On(func(s balance, e Opened, _ store.Event) (balance, error) { s.Owner = e.Owner; return s, nil }),
			readmodel.On(func(s balance, e Deposited, _ store.Event) (balance, error) { s.Balance += e.Amount; return s, nil }),
			readmodel.On(func(s balance, e Withdrawn, _ store.Event) (balance, error) { s.Balance -= e.Amount; return s, nil }),
		},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"account_id": string(e.StreamID), "partition": partition}, nil
		},
		Initial:      func() balance { return balance{} },
		MapToColumns: func(s balance) map[string]any { return map[string]any{"owner": s.Owner, "balance": s.Balance} },
	})
	require.NoError(t, err)
	p, err := projection.New(pool, &projection.Config{Name: "balances", BatchHandlers: []projection.BatchHandler{rm},
		PollInterval: 100 * time.Millisecond, LeaseRetryInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return p
}

func TestProjectionScenario(t *testing.T) {
	t.Parallel()
	pool := troupetest.NewPool(t)
	c := codec()
	troupetest.New(t, pool, &troupetest.Config{Codec: c, Projections: []*projection.Projection{balances(t, pool, c)}}).
		Given(
			troupetest.Stream("acc-1", Opened{Owner: "ann"}, Deposited{Amount: 5}, Deposited{Amount: 7}),
			troupetest.Stream("acc-2", Opened{Owner: "bob"}).In("tenant-b"),
		).
		ThenRows(`SELECT account_id, partition, owner, balance FROM balances ORDER BY account_id`, troupetest.Rows{
			{"acc-1", store.DefaultPartition, "ann", 12},
			{"acc-2", "tenant-b", "bob", 0},
		}).
		Given(troupetest.Stream("acc-2", Withdrawn{Amount: 1}).In("tenant-b")).
		ThenRows(`SELECT balance FROM balances WHERE account_id = $1`, troupetest.Rows{{-1}}, "acc-2")
}

// newBank starts an actor host with the bank kind on the scenario's store.
func newBank(t testing.TB, s *troupetest.Scenario, c store.Codec) *actor.Aggregate[Withdraw, any, account] {
	t.Helper()
	host, err := actor.New(s.Store(), &actor.Config{Codec: c})
	require.NoError(t, err)
	accounts, err := actor.Register(host, actor.Kind[Withdraw, any, account]{
		Name:    "account",
		Decider: bank(),
		Route:   func(c Withdraw) (string, store.StreamID) { return "", store.StreamID(c.Account) },
	})
	require.NoError(t, err)
	require.NoError(t, host.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, host.Stop(context.Background())) })
	return accounts
}

func TestServiceScenario(t *testing.T) {
	t.Parallel()
	pool := troupetest.NewPool(t)
	c := codec()
	s := troupetest.New(t, pool, &troupetest.Config{Codec: c, Projections: []*projection.Projection{balances(t, pool, c)}})
	accounts := newBank(t, s, c)
	s.Given(troupetest.Stream("acc-1", Opened{Owner: "ann"}, Deposited{Amount: 10}).OfType("account")).
		When(troupetest.Send(accounts, Withdraw{Account: "acc-1", Amount: 4})).
		ThenEvents(troupetest.Stream("acc-1", Withdrawn{Amount: 4})).
		ThenRows(`SELECT owner, balance FROM balances`, troupetest.Rows{{"ann", 6}}).
		When(troupetest.Send(accounts, Withdraw{Account: "acc-1", Amount: 7})).
		ThenError(ErrInsufficientFunds).
		ThenEvents(troupetest.Stream("acc-1", Withdrawn{Amount: 4})).
		ThenRows(`SELECT owner, balance FROM balances`, troupetest.Rows{{"ann", 6}})
}

// fakeTB records what the kit reports instead of failing the real test.
// Fatal ends the step's goroutine, as testing does.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	fatal    bool
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.mu.Lock()
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errs) > 0
}

// runFake runs fn against a fake testing.TB in a goroutine of its own
// (Fatalf ends it), then the fake's cleanups, and returns the fake.
func runFake(t *testing.T, fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f
}

// TestKitReportsFailures runs scenarios whose Then steps are wrong
// against a fake testing.TB and checks that the kit reports each with a
// diff, and that a right scenario reports nothing.
func TestKitReportsFailures(t *testing.T) {
	t.Parallel()
	pool := troupetest.NewPool(t)
	c := codec()
	p := balances(t, pool, c)
	var accounts *actor.Aggregate[Withdraw, any, account]
	var s *troupetest.Scenario
	ok := runFake(t, func(tb testing.TB) {
		s = troupetest.New(tb, pool, &troupetest.Config{Codec: c, Projections: []*projection.Projection{p}})
		accounts = newBank(t, s, c)
		s.Given(troupetest.Stream("acc-1", Opened{Owner: "ann"}, Deposited{Amount: 10}).OfType("account")).
			When(troupetest.Send(accounts, Withdraw{Account: "acc-1", Amount: 4})).
			ThenEvents(troupetest.Stream("acc-1", Withdrawn{Amount: 4})).
			ThenRows(`SELECT owner, balance FROM balances`, troupetest.Rows{{"ann", 6}})
	})
	require.Empty(t, ok.errs, "a right scenario reports nothing")
	require.False(t, ok.fatal)

	rows := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c, WaitFor: []troupetest.Waiter{p}}).
			ThenRows(`SELECT owner, balance FROM balances`, troupetest.Rows{{"ann", 5}, {"bob", 1}})
	})
	require.False(t, rows.fatal)
	require.Len(t, rows.errs, 1)
	require.Contains(t, rows.errs[0], "ThenRows SELECT owner, balance FROM balances: rows differ (-want +got):\n- ann | 5\n- bob | 1\n+ ann | 6\n")

	events := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).
			ThenEvents(troupetest.Stream("acc-1", Opened{Owner: "ann"}, Deposited{Amount: 10}, Withdrawn{Amount: 5}))
	})
	require.Len(t, events.errs, 1)
	require.Contains(t, events.errs[0], `ThenEvents stream "acc-1": events appended after Given differ (-want +got):
  Opened {"owner":"ann"}
  Deposited {"amount":10}
- Withdrawn {"amount":5}
+ Withdrawn {"amount":4}
`)

	// An error of When that no ThenError checks fails the test at its end;
	// a ThenError that does not match fails it too.
	unchecked := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).
			When(troupetest.Send(accounts, Withdraw{Account: "acc-1", Amount: 100}))
	})
	require.Len(t, unchecked.errs, 1)
	require.Contains(t, unchecked.errs[0], "When returned an error that no ThenError checked: insufficient funds")
	wrongErr := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).
			When(troupetest.Send(accounts, Withdraw{Account: "acc-1", Amount: 100})).
			ThenError(context.DeadlineExceeded)
	})
	require.Len(t, wrongErr.errs, 1)
	require.Contains(t, wrongErr.errs[0], "When returned insufficient funds; want an error matching context deadline exceeded")
	noErr := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).
			When(func(context.Context) error { return nil }).
			ThenError(ErrInsufficientFunds)
	})
	require.Len(t, noErr.errs, 1)
	require.Contains(t, noErr.errs[0], "When succeeded; want an error matching insufficient funds")

	// A Then after a failed When stops the test; so does a bad query.
	after := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).
			When(func(context.Context) error { return errors.New("boom") }).
			ThenRows(`SELECT 1`, troupetest.Rows{{1}})
	})
	require.True(t, after.fatal)
	require.Contains(t, after.errs[0], "ThenRows after When, which failed: boom")
	bad := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).ThenRows(`SELECT nope FROM nowhere`, nil)
	})
	require.True(t, bad.fatal)
	require.Contains(t, bad.errs[0], `relation "nowhere" does not exist`)

	// A Go value the codec does not know cannot be given.
	unknown := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).Given(troupetest.Stream("x", struct{ A int }{1}))
	})
	require.True(t, unknown.fatal)
	require.Contains(t, unknown.errs[0], `Given stream "x": event 0 (struct { A int }): unknown event type`)
	require.True(t, strings.HasPrefix(unknown.errs[0], "troupetest: "))
}

// TestValueText: values compare by their text, so a Go int matches an
// int4, an int8 and a numeric, a string matches a numeric's text, nil
// matches NULL, a map matches a jsonb with the same JSON.
func TestValueText(t *testing.T) {
	t.Parallel()
	pool := troupetest.NewPool(t)
	c := codec()
	f := runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).
			ThenRows(`SELECT 2::int4, 2::int8, 2.50::numeric, NULL::text, '{"b":[1,2],"a":"x"}'::jsonb, true, 1.5::float8,
       '2026-01-02 03:04:05+00'::timestamptz, '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid`,
				troupetest.Rows{{2, int64(2), "2.50", nil, map[string]any{"a": "x", "b": []int{1, 2}}, true, 1.5,
					time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}})
	})
	require.Empty(t, f.errs)
	f = runFake(t, func(tb testing.TB) {
		troupetest.New(tb, pool, &troupetest.Config{Codec: c}).ThenRows(`SELECT NULL::int`, troupetest.Rows{{0}})
	})
	require.Len(t, f.errs, 1)
	require.Contains(t, f.errs[0], "- 0\n+ NULL\n")
}
