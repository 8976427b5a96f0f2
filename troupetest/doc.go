// Package troupetest is Troupe's test kit for the users' own tests: a
// throwaway PostgreSQL database per test, migrated, and given/when/then
// scenarios for projections (given events, then read-model rows) and for
// whole services (given events in the store, when a command is sent, then
// the events appended and the read model).
//
//	func TestMain(m *testing.M) { os.Exit(troupetest.Main(m)) }
//
//	func TestBalances(t *testing.T) {
//		pool := troupetest.NewPool(t)
//		_, err := pool.Exec(context.Background(), `CREATE TABLE balances (…)`)
//		…
//		troupetest.New(t, pool, &troupetest.Config{Codec: codec, Projections: []*projection.Projection{p}}).
//			Given(troupetest.Stream("acc-1", Opened{Owner: "ann"}, Deposited{Amount: 5})).
//			ThenRows(`SELECT account_id, balance FROM balances`, troupetest.Rows{{"acc-1", 5}})
//	}
//
// # Databases
//
// [NewPool] and [NewDatabase] create a database with a unique name for the
// calling test, apply Troupe's migrations to it and drop it when the test
// ends; parallel tests each get their own. The server is the one the
// DATABASE_URL environment variable names (its role must be allowed to
// CREATE DATABASE), or else a throwaway server started on first use from
// the PostgreSQL binaries installed on the machine (initdb and postgres,
// found with pg_config on PATH or under /usr/lib/postgresql/<version>/bin),
// tuned for speed, listening on 127.0.0.1 only, and stopped by [Main].
// docs/testing.md says how to install them.
//
// # Scenarios
//
// [New] returns a [Scenario] on a pool: [Scenario.Given] appends events
// (Go values encoded with the scenario's codec) to streams,
// [Scenario.When] runs the code under test ([Send] sends a command through
// an actor host), [Scenario.ThenEvents] checks what was appended after the
// given events, [Scenario.ThenRows] waits for the scenario's projections
// to apply the whole log and checks a query's rows, [Scenario.ThenError]
// checks When's error.
//
// # Failures
//
// A Then step that does not hold reports a line diff (-want +got) with
// t.Errorf and the scenario goes on, so one run shows every difference; a
// step that cannot run (the database unreachable, an append refused, a
// query that fails, a projection that stopped on an event) stops the test
// with t.Fatalf, as does a Then step after a When that failed.
package troupetest
