#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at one throwaway PostgreSQL
# server that lives as long as the command, e.g.
#
#	scripts/with-postgres.sh go test -race -count=1 ./...
#
# so that every test package shares that server instead of starting its own.
# The server comes from internal/pgserver (via the pgrun command); the
# command's exit status is passed through and signals are forwarded to it.
# When DATABASE_URL is already set, the command simply runs against it.
# Set PGRUN_LOG=FILE to keep the server log.
set -euo pipefail

if [ "$#" -eq 0 ]; then
	echo "usage: scripts/with-postgres.sh COMMAND [ARG...]" >&2
	exit 2
fi
if [ -n "${DATABASE_URL:-}" ]; then
	exec "$@"
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Build pgrun (cheap when the build cache is warm) to a per-user, per-checkout
# path; the rename makes concurrent runs safe. Running the binary rather
# than `go run` keeps the command's exit status.
key="$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
bindir="${TMPDIR:-/tmp}/troupe-pgrun-$(id -u)"
mkdir -p "$bindir"
bin="$bindir/pgrun-$key"
(cd "$root" && go build -o "$bin.$$" ./internal/pgserver/cmd/pgrun)
mv -f "$bin.$$" "$bin"

args=()
if [ -n "${PGRUN_LOG:-}" ]; then
	args+=(-log "$PGRUN_LOG")
fi
exec "$bin" "${args[@]}" -- "$@"
