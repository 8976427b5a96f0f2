#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, postgres) are installed,
# installing Debian's postgresql package when they are not. Idempotent and
# silent when they are already there. Looks where internal/pgserver looks:
# `pg_config --bindir` on PATH, then the newest /usr/lib/postgresql/*/bin.
set -euo pipefail

has_server_binaries() {
	[ -x "$1/initdb" ] && [ -x "$1/postgres" ]
}

find_bindir() {
	local dir
	if command -v pg_config >/dev/null 2>&1; then
		dir="$(pg_config --bindir 2>/dev/null || true)"
		if [ -n "$dir" ] && has_server_binaries "$dir"; then
			echo "$dir"
			return 0
		fi
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5Vr); do
		if has_server_binaries "$dir"; then
			echo "$dir"
			return 0
		fi
	done
	return 1
}

if find_bindir >/dev/null; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "ensure-postgres: no PostgreSQL server binaries found and no apt-get; install PostgreSQL (initdb, postgres) yourself" >&2
	exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "ensure-postgres: no PostgreSQL server binaries found; run as root: apt-get install -y postgresql" >&2
		exit 1
	fi
	sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
install() {
	"${sudo[@]}" apt-get install -y -q --no-install-recommends postgresql >"$log" 2>&1
}
echo "ensure-postgres: installing PostgreSQL with apt-get" >&2
# The package lists are usually there already: refresh them only when the
# install fails without.
if ! install; then
	if ! "${sudo[@]}" apt-get update -q >"$log" 2>&1 || ! install; then
		cat "$log" >&2
		exit 1
	fi
fi

if ! dir="$(find_bindir)"; then
	echo "ensure-postgres: apt-get installed postgresql but no initdb/postgres was found under /usr/lib/postgresql/*/bin" >&2
	exit 1
fi
echo "ensure-postgres: PostgreSQL server binaries in $dir" >&2
