// Command quickstart is the program of docs/getting-started.md: one
// aggregate on PostgreSQL, a read model kept by a snapshot projection, and a
// read of one's own write. It uses DATABASE_URL, or starts a throwaway
// PostgreSQL from the local binaries when that is unset.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/internal/pgserver"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// Deposit is the one command: put money into an account.
type Deposit struct {
	Tenant  string
	Account string
	Amount  int64
}

// Deposited is the one event.
type Deposited struct {
	Amount int64 `json:"amount"`
}

// Balance is the account's state.
type Balance struct {
	Total    int64 `json:"total"`
	Deposits int   `json:"deposits"`
}

// Accounts is the account aggregate: pure functions, no I/O.
var Accounts = decider.Decider[Deposit, Deposited, Balance]{
	Decide: func(c Deposit, s Balance) ([]Deposited, error) {
		if c.Amount <= 0 {
			return nil, decider.Rejectf("amount must be positive, got %d", c.Amount)
		}
		return []Deposited{{Amount: c.Amount}}, nil
	},
	Evolve: func(s Balance, e Deposited) Balance {
		return Balance{Total: s.Total + e.Amount, Deposits: s.Deposits + 1}
	},
	InitialState: func() Balance { return Balance{} },
}

const readModel = `CREATE TABLE IF NOT EXISTS balances (
	partition text NOT NULL,
	account_id text NOT NULL,
	total bigint NOT NULL DEFAULT 0,
	deposits int NOT NULL DEFAULT 0,
	PRIMARY KEY (partition, account_id))`

func main() {
	if err := run(context.Background(), os.Getenv("DATABASE_URL"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dsn string, out io.Writer) error {
	if dsn == "" {
		srv, err := pgserver.Start(ctx, pgserver.Options{})
		if err != nil {
			return err
		}
		defer srv.Stop()
		dsn = srv.ConnString()
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()

	// 1. The schema: Troupe's tables, then the read model's.
	if err := postgres.Migrate(ctx, pool); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, readModel); err != nil {
		return err
	}
	es, err := postgres.New(pool, nil)
	if err != nil {
		return err
	}

	// 2. The read model: one row per account, folded with the same evolve.
	balances, err := readmodel.New(&readmodel.Config[Balance]{
		Table:      "balances",
		Storage:    readmodel.InTable,
		EventTypes: []string{"Deposited"},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"partition": partition, "account_id": string(e.StreamID)}, nil
		},
		Evolve: func(s Balance, e store.Event) (Balance, error) {
			var d Deposited
			err := json.Unmarshal(e.Data, &d)
			return Accounts.Evolve(s, d), err
		},
		Initial: Accounts.InitialState,
		MapToColumns: func(s Balance) map[string]any {
			return map[string]any{"total": s.Total, "deposits": s.Deposits}
		},
	})
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	proj, err := projection.New(pool, &projection.Config{
		Name: "balances", Store: es, Logger: quiet,
		BatchHandlers: []projection.BatchHandler{balances},
	})
	if err != nil {
		return err
	}
	if err := proj.Start(ctx); err != nil {
		return err
	}
	defer proj.Stop(ctx)

	// 3. The host: every account stream becomes a cached actor.
	codec := store.NewJSONCodec().MustRegister("Deposited", Deposited{})
	host, err := actor.New(es, &actor.Config{Codec: codec, Logger: quiet})
	if err != nil {
		return err
	}
	accounts, err := actor.Register(host, actor.Kind[Deposit, Deposited, Balance]{
		Name: "account", StreamType: "account", Decider: Accounts,
		Route: func(c Deposit) (string, store.StreamID) { return c.Tenant, store.StreamID(c.Account) },
	})
	if err != nil {
		return err
	}
	if err := host.Start(ctx); err != nil {
		return err
	}
	defer host.Stop(ctx)

	// 4. Commands: two deposits and one the domain rejects.
	var last actor.Result[Deposited, Balance]
	for _, amount := range []int64{30, 12, -5} {
		res, err := accounts.Send(ctx, Deposit{Tenant: "acme", Account: "acc-1", Amount: amount})
		if err != nil {
			fmt.Fprintf(out, "deposit %d: rejected: %v\n", amount, err)
			continue
		}
		last = res
		fmt.Fprintf(out, "deposit %d: stream version %d\n", amount, res.Version)
	}

	// 5. Read your write: wait until the projection has applied it.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := proj.WaitFor(wctx, last.Position); err != nil {
		return err
	}
	var total int64
	var deposits int
	err = pool.QueryRow(ctx, `SELECT total, deposits FROM balances WHERE partition = $1 AND account_id = $2`,
		"acme", "acc-1").Scan(&total, &deposits)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "read model: acc-1 total=%d deposits=%d\n", total, deposits)
	return nil
}
