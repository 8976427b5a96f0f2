package troupetest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgserver"
)

// fakeAPT puts fake apt-get and sudo on PATH (and nothing else) and makes
// findBinDir find binaries once the fake installed them. mode: ok,
// fail-first (the first install fails, update and the second succeed),
// fail, nobin (succeeds, installs nothing). It returns the file each call
// is logged to.
func fakeAPT(t *testing.T, mode string, uid int, withSudo bool) (calls string) {
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	marker := filepath.Join(dir, "installed")
	script := `#!/bin/sh
PATH=/usr/bin:/bin
echo "$0 $*" | sed "s|^.*/||" >> ` + calls + `
case "$1" in
update) exit 0 ;;
install)
	case "` + mode + `" in
	ok) touch ` + marker + ` ;;
	fail-first)
		if [ -e ` + marker + `.tried ]; then touch ` + marker + `; else touch ` + marker + `.tried; echo "E: Unable to locate package postgresql"; exit 100; fi ;;
	fail) echo "E: Unable to locate package postgresql"; exit 100 ;;
	nobin) ;;
	esac ;;
esac
`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "apt-get"), []byte(script), 0o755))
	if withSudo {
		sudo := "#!/bin/sh\necho \"sudo $*\" >> " + calls + "\nshift\nexec " + dir + "/\"$@\"\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sudo"), []byte(sudo), 0o755))
	}
	t.Setenv("PATH", dir) // only the fakes: never a real sudo or apt-get
	t.Setenv(EnvDatabaseURL, "")
	oldFind, oldUID := findBinDir, getuid
	t.Cleanup(func() { findBinDir, getuid = oldFind, oldUID })
	getuid = func() int { return uid }
	findBinDir = func(context.Context) (string, error) {
		if _, err := os.Stat(marker); err != nil {
			return "", pgserver.ErrBinariesNotFound
		}
		return dir, nil
	}
	return calls
}

func callsOf(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

const installArgs = "install -y -q --no-install-recommends postgresql"

func TestInstallPostgres(t *testing.T) {
	ctx := context.Background()
	t.Run("root installs with apt-get", func(t *testing.T) {
		calls := fakeAPT(t, "ok", 0, false)
		require.NoError(t, ensurePostgres(ctx))
		require.Equal(t, []string{"apt-get " + installArgs}, callsOf(t, calls))
		require.NoError(t, ensurePostgres(ctx))
		require.Len(t, callsOf(t, calls), 1, "installed binaries are found: no second install")
	})
	t.Run("another user installs through sudo -n", func(t *testing.T) {
		calls := fakeAPT(t, "ok", 1000, true)
		require.NoError(t, ensurePostgres(ctx))
		require.Equal(t, []string{"sudo -n apt-get " + installArgs, "apt-get " + installArgs}, callsOf(t, calls))
	})
	t.Run("package lists refreshed after a failed install", func(t *testing.T) {
		calls := fakeAPT(t, "fail-first", 0, false)
		require.NoError(t, ensurePostgres(ctx))
		require.Equal(t, []string{"apt-get " + installArgs, "apt-get update -q", "apt-get " + installArgs}, callsOf(t, calls))
	})
	t.Run("a failing install says what failed", func(t *testing.T) {
		fakeAPT(t, "fail", 0, false)
		err := ensurePostgres(ctx)
		require.ErrorContains(t, err, "apt-get "+installArgs)
		require.ErrorContains(t, err, "E: Unable to locate package postgresql")
	})
	t.Run("an install that leaves no binaries", func(t *testing.T) {
		fakeAPT(t, "nobin", 0, false)
		err := ensurePostgres(ctx)
		require.ErrorIs(t, err, pgserver.ErrBinariesNotFound)
		require.ErrorContains(t, err, "succeeded but the server binaries are still not found")
	})
	t.Run("no sudo for another user", func(t *testing.T) {
		calls := fakeAPT(t, "ok", 1000, false)
		err := ensurePostgres(ctx)
		require.ErrorContains(t, err, "installing them needs root")
		require.ErrorContains(t, err, EnvDatabaseURL)
		require.Empty(t, callsOf(t, calls))
	})
	t.Run("no apt-get", func(t *testing.T) {
		calls := fakeAPT(t, "ok", 0, false)
		t.Setenv("PATH", t.TempDir())
		err := ensurePostgres(ctx)
		require.ErrorContains(t, err, "no apt-get")
		require.Empty(t, callsOf(t, calls))
	})
	t.Run("DATABASE_URL set: nothing installed", func(t *testing.T) {
		calls := fakeAPT(t, "ok", 0, false)
		t.Setenv(EnvDatabaseURL, "postgres://elsewhere/db")
		require.NoError(t, ensurePostgres(ctx))
		require.Empty(t, callsOf(t, calls))
	})
}
