// Command quickstart is the program of docs/getting-started.md: an account
// aggregate with four commands and four event types on PostgreSQL, a
// tenant, a read model kept by a projection, and a read of one's own write.
// It uses DATABASE_URL, or starts a throwaway PostgreSQL from the local
// binaries when that is unset.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/internal/pgserver"
	"github.com/troupehq/troupe/projection"
	"github.com/troupehq/troupe/projection/readmodel"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// ReadModelSchema is the read model's table: one row per account, keyed
// by exactly the columns ExtractKeys returns, partitioned by tenant like
// Troupe's own tables (rows of tenants without a partition go to the
// DEFAULT one), and registered so dropping a tenant erases its rows.
const ReadModelSchema = `
CREATE TABLE IF NOT EXISTS accounts (
    partition  text   NOT NULL,
    account_id text   NOT NULL,
    owner      text   NOT NULL DEFAULT '',
    status     text   NOT NULL DEFAULT '',
    balance    bigint NOT NULL DEFAULT 0,
    movements  int    NOT NULL DEFAULT 0,
    PRIMARY KEY (partition, account_id)
) PARTITION BY LIST (partition);
CREATE TABLE IF NOT EXISTS accounts_default PARTITION OF accounts DEFAULT;
INSERT INTO tenant_tables (relation) VALUES ('accounts') ON CONFLICT DO NOTHING;`

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
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// 1. The schema: Troupe's tables, the read model's, and a tenant.
	if err := postgres.Migrate(ctx, pool); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, ReadModelSchema); err != nil {
		return err
	}
	tenants, err := tenancy.NewManager(pool, &tenancy.Config{Logger: quiet})
	if err != nil {
		return err
	}
	if _, _, err := tenants.Create(ctx, "acme", "Acme Inc."); err != nil {
		return err
	}
	es, err := postgres.New(pool, nil)
	if err != nil {
		return err
	}

	// 2. The read model: each row holds the fold of the aggregate's own
	// Evolve over the account's events, kept by a continuous projection.
	codec := store.NewJSONCodec().
		MustRegister("AccountOpened", AccountOpened{}).
		MustRegister("Deposited", Deposited{}).
		MustRegister("Withdrawn", Withdrawn{}).
		MustRegister("AccountClosed", AccountClosed{})
	accountsTable, err := readmodel.New(&readmodel.Config[Account]{
		Table:      "accounts",
		Storage:    readmodel.InTable, // the state lives in Troupe's snapshots table
		EventTypes: []string{"AccountOpened", "Deposited", "Withdrawn", "AccountClosed"},
		ExtractKeys: func(e store.Event, partition string) (map[string]any, error) {
			return map[string]any{"partition": partition, "account_id": string(e.StreamID)}, nil
		},
		Evolve: func(s Account, e store.Event) (Account, error) {
			ev, err := codec.Decode(e.Type, e.Data) // the Go value: AccountOpened, Deposited, ...
			if err != nil {
				return s, err
			}
			return Accounts.Evolve(s, ev.(Event)), nil
		},
		Initial: Accounts.InitialState,
		MapToColumns: func(s Account) map[string]any {
			return map[string]any{"owner": s.Owner, "status": s.Status, "balance": s.Balance, "movements": s.Movements}
		},
	})
	if err != nil {
		return err
	}
	proj, err := projection.New(pool, &projection.Config{
		Name: "accounts", Store: es, Logger: quiet,
		BatchHandlers: []projection.BatchHandler{accountsTable},
	})
	if err != nil {
		return err
	}
	if err := proj.Start(ctx); err != nil {
		return err
	}
	defer proj.Stop(ctx)

	// 3. The host: every account stream becomes a cached actor. Route
	// leaves the tenant empty: it comes from the context of each Send.
	host, err := actor.New(es, &actor.Config{Codec: codec, Logger: quiet})
	if err != nil {
		return err
	}
	accounts, err := actor.Register(host, actor.Kind[Command, Event, Account]{
		Name: "account", Decider: Accounts,
		Route: func(c Command) (string, store.StreamID) { return "", store.StreamID(c.AccountID()) },
	})
	if err != nil {
		return err
	}
	if err := host.Start(ctx); err != nil {
		return err
	}
	defer host.Stop(ctx)

	// 4. Commands, for tenant acme: five accepted, three the rules reject.
	acme := store.WithTenant(ctx, "acme")
	var last actor.Result[Event, Account]
	for _, cmd := range []Command{
		OpenAccount{Account: "acc-1", Owner: "Ada"},
		Deposit{Account: "acc-1", Amount: 30},
		Withdraw{Account: "acc-1", Amount: 12},
		Withdraw{Account: "acc-1", Amount: 100},
		Deposit{Account: "acc-1", Amount: -5},
		Deposit{Account: "acc-1", Amount: 7},
		CloseAccount{Account: "acc-1"},
		Deposit{Account: "acc-1", Amount: 1},
	} {
		res, err := accounts.Send(acme, cmd)
		if err != nil {
			fmt.Fprintf(out, "%T: rejected: %v\n", cmd, err)
			continue
		}
		last = res
		fmt.Fprintf(out, "%T: %d event(s), stream version %d\n", cmd, len(res.Events), res.Version)
	}

	// 5. Read your write: wait until the projection has applied it.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := proj.WaitFor(wctx, last.Position); err != nil {
		return err
	}
	var owner, status string
	var balance int64
	var movements int
	err = pool.QueryRow(ctx, `SELECT owner, status, balance, movements FROM accounts WHERE partition = $1 AND account_id = $2`,
		"acme", "acc-1").Scan(&owner, &status, &balance, &movements)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "read model: acc-1 owner=%s status=%s balance=%d movements=%d\n", owner, status, balance, movements)
	return nil
}
