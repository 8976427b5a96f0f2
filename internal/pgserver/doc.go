// Package pgserver starts a throwaway PostgreSQL cluster from the binaries
// installed on the machine, for tests, examples and local tooling.
//
// [Start] runs initdb into a fresh directory (under /dev/shm when it is a
// roomy tmpfs, where creating databases is much faster, else under the
// system temp directory; see [Options].TempDir), starts postgres on 127.0.0.1 with a free port (and a unix socket in its own
// directory), and returns once a connection succeeds. [Server.ConnString]
// names the superuser role "postgres", which may create databases; loopback
// connections use trust authentication. [Server.Stop] requests a fast
// shutdown, waits for the process and removes every directory Start created.
//
// The cluster is tuned for speed, not durability: fsync, synchronous_commit
// and full_page_writes are off. Never keep data in it you want back.
//
// # Guarantees
//
//   - The server listens on 127.0.0.1 and on a unix socket in its private
//     directory only; nothing is reachable from other machines.
//   - PostgreSQL refuses to run as root: when this process's effective user
//     is root, initdb and postgres run as an unprivileged user (the
//     "postgres" system user if it exists, else "nobody") that owns the
//     server's directories.
//   - Readiness is a successful connection, polled until the context's
//     deadline (or a one-minute default); there are no fixed sleeps.
//   - On Linux the server gets SIGQUIT (immediate shutdown) if the process
//     that started it dies, so a killed test binary does not leave a
//     postgres running (strictly: if the OS thread that started it exits,
//     which Go does only for a goroutine that ends while locked to its
//     thread). Its directory is then left behind until a later Start in the
//     same temp directory removes it, an hour on.
//
// # Failures
//
// When no server binaries are found, Start returns an error matching
// [ErrBinariesNotFound] that says to run scripts/ensure-postgres.sh (or
// apt-get install -y postgresql). When initdb or postgres fails, the error
// includes the tail of their output or of the server log, and the
// directories are removed. A server that exits before accepting connections
// gives an error matching [ErrExited].
package pgserver
