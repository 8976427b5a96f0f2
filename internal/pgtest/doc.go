// Package pgtest gives tests real PostgreSQL databases: one server per test
// binary, one fresh database per test.
//
// A package's TestMain hands control to [Main]:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// and each test asks for an empty database ([NewDatabase], a connection
// string) or a pool on one ([NewPool]), then migrates it itself.
//
// # Guarantees
//
//   - The server is DATABASE_URL when it is set (its role must be allowed to
//     CREATE DATABASE; scripts/with-postgres.sh sets it so that all packages
//     of a `go test ./...` share one server), else a throwaway server from
//     internal/pgserver, started on first use and stopped by Main. A package
//     whose tests never ask for a database starts nothing.
//   - Every database has a unique name (test_<test name>_<random>) and is
//     dropped WITH (FORCE) when its test finishes, after the pool NewPool
//     opened on it is closed. Tests calling NewDatabase or NewPool may run
//     in parallel.
//   - After the tests pass, Main fails the run if goroutines are left
//     running (goleak), so packages whose code starts goroutines are checked
//     for leaks without further setup.
//
// # Failures
//
// When no server can be reached or started, NewDatabase, NewPool and
// AdminConnString fail the calling test (t.Fatal) with the reason, e.g.
// that the PostgreSQL binaries are missing and scripts/ensure-postgres.sh
// installs them; tests never skip for lack of a database. Without Main, a
// lazily started server is never stopped: it dies with the test binary and
// leaves its directory behind.
package pgtest
