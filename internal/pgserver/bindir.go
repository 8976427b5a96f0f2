package pgserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrBinariesNotFound is returned (wrapped) when no directory holding the
// PostgreSQL server binaries (initdb and postgres) can be found.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries (initdb, postgres) not found: run scripts/ensure-postgres.sh (or apt-get install -y postgresql)")

// debianRoot is where Debian and Ubuntu install one directory per major
// version, each with a bin/ holding the server binaries.
const debianRoot = "/usr/lib/postgresql"

// FindBinDir returns the directory holding initdb and postgres: the one
// printed by `pg_config --bindir` when pg_config is on PATH and that
// directory has both binaries, else the newest /usr/lib/postgresql/*/bin
// that has them. It returns an error matching [ErrBinariesNotFound] when
// neither exists.
func FindBinDir(ctx context.Context) (string, error) {
	if dir, ok := pgConfigBinDir(ctx); ok {
		return dir, nil
	}
	if dir, ok := newestDebianBinDir(debianRoot); ok {
		return dir, nil
	}
	return "", fmt.Errorf("pgserver: looking for server binaries via pg_config and in %s: %w", debianRoot, ErrBinariesNotFound)
}

// pgConfigBinDir asks pg_config on PATH. Debian's libpq-dev ships a
// pg_config that names a bindir even when no server is installed, hence the
// check for the binaries themselves.
func pgConfigBinDir(ctx context.Context) (string, bool) {
	path, err := exec.LookPath("pg_config")
	if err != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--bindir").Output()
	if err != nil {
		return "", false
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" || !hasServerBinaries(dir) {
		return "", false
	}
	return dir, true
}

// newestDebianBinDir returns root/<major>/bin for the highest numeric major
// version whose bin directory has the server binaries.
func newestDebianBinDir(root string) (string, bool) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return "", false
	}
	type candidate struct {
		version float64
		dir     string
	}
	var found []candidate
	for _, e := range entries {
		v, err := strconv.ParseFloat(e.Name(), 64)
		if err != nil {
			continue
		}
		dir := filepath.Join(root, e.Name(), "bin")
		if hasServerBinaries(dir) {
			found = append(found, candidate{version: v, dir: dir})
		}
	}
	if len(found) == 0 {
		return "", false
	}
	sort.Slice(found, func(i, j int) bool { return found[i].version > found[j].version })
	return found[0].dir, true
}

// hasServerBinaries reports whether dir holds executable initdb and postgres.
func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}
