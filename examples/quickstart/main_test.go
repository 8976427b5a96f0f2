package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/decider"
	"github.com/troupehq/troupe/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	dsn := pgtest.NewDatabase(t)
	require.NoError(t, run(context.Background(), dsn, &out))
	require.Equal(t, "main.OpenAccount: 1 event(s), stream version 1\n"+
		"main.Deposit: 1 event(s), stream version 2\n"+
		"main.Withdraw: 1 event(s), stream version 3\n"+
		"main.Withdraw: rejected: insufficient funds: balance 18, asked 100\n"+
		"main.Deposit: rejected: amount must be positive, got -5\n"+
		"main.Deposit: 1 event(s), stream version 4\n"+
		"main.CloseAccount: 2 event(s), stream version 6\n"+
		"main.Deposit: rejected: account is not open\n"+
		"read model: acc-1 owner=Ada status=closed balance=0 movements=4\n", out.String())

	// The row is in the tenant's partition of the read model, which the
	// tenant's creation made because the table is registered.
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var part string
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT tableoid::regclass::text FROM accounts WHERE account_id = 'acc-1'`).Scan(&part))
	require.Equal(t, "accounts_t_acme", part)
}

// The rules, without a database.
func TestAccountRules(t *testing.T) {
	spec := decider.Spec(Accounts)
	opened := AccountOpened{Owner: "Ada"}
	spec.Given().When(OpenAccount{Account: "a", Owner: "Ada"}).Then(t, opened)
	spec.Given(opened).When(OpenAccount{Account: "a"}).ThenError(t, ErrAlreadyOpen)
	spec.Given().When(Deposit{Account: "a", Amount: 1}).ThenError(t, ErrNotOpen)
	spec.Given(opened, Deposited{Amount: 5}).When(Withdraw{Account: "a", Amount: 6}).ThenError(t, ErrInsufficientFunds)
	spec.Given(opened, Deposited{Amount: 5}).When(CloseAccount{Account: "a"}).Then(t, Withdrawn{Amount: 5}, AccountClosed{})
	spec.Given(opened).When(CloseAccount{Account: "a"}).Then(t, AccountClosed{})
	spec.Given(opened, AccountClosed{}).When(Withdraw{Account: "a", Amount: 1}).ThenError(t, ErrNotOpen)
}
