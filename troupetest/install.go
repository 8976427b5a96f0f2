package troupetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/troupehq/troupe/internal/pgserver"
)

// InstallPostgres makes Main install PostgreSQL's server binaries before
// the tests when none are found and DATABASE_URL is unset: Debian's
// postgresql package with apt-get (through sudo -n when not root; the
// package lists are refreshed only when the first attempt fails), the way
// Troupe's own CI gets them. Off by default: a test run installs nothing
// unless asked. Where apt-get is missing, or sudo would ask for a password,
// Main fails before the tests, saying what to install.
func InstallPostgres() MainOption {
	return func(o *mainOptions) { o.install = true }
}

// What ensurePostgres uses, replaced by its tests.
var (
	findBinDir     = pgserver.FindBinDir
	lookPath       = exec.LookPath
	getuid         = os.Getuid
	installTimeout = 10 * time.Minute
)

// ensurePostgres installs the server binaries when they are missing and no
// server is named by DATABASE_URL.
func ensurePostgres(ctx context.Context) error {
	if os.Getenv(EnvDatabaseURL) != "" {
		return nil
	}
	if _, err := findBinDir(ctx); err == nil {
		return nil
	}
	apt, err := aptGet()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	install := append(append([]string{}, apt...), "install", "-y", "-q", "--no-install-recommends", "postgresql")
	if out, err := run(ctx, install); err != nil {
		if out2, err2 := run(ctx, append(append([]string{}, apt...), "update", "-q")); err2 != nil {
			return fmt.Errorf("installing PostgreSQL: %s: %v\n%s\n(and `%s` failed first: %v)",
				strings.Join(apt, " ")+" update -q", err2, tailOf(out2), strings.Join(install, " "), err)
		}
		if out, err = run(ctx, install); err != nil {
			return fmt.Errorf("installing PostgreSQL: %s: %v\n%s", strings.Join(install, " "), err, tailOf(out))
		}
	}
	if _, err := findBinDir(ctx); err != nil {
		return fmt.Errorf("installing PostgreSQL: `%s` succeeded but the server binaries are still not found: %w", strings.Join(install, " "), err)
	}
	return nil
}

// aptGet is the apt-get command to run, prefixed with sudo -n when not
// root.
func aptGet() ([]string, error) {
	const what = "no PostgreSQL server binaries (initdb, postgres) found"
	if _, err := lookPath("apt-get"); err != nil {
		return nil, fmt.Errorf("%s and no apt-get to install them: install PostgreSQL yourself (brew install postgresql@17 and put its bin directory on PATH), or set %s", what, EnvDatabaseURL)
	}
	if getuid() == 0 {
		return []string{"apt-get"}, nil
	}
	if _, err := lookPath("sudo"); err != nil {
		return nil, fmt.Errorf("%s, and installing them needs root: run `apt-get install -y postgresql` as root, or set %s", what, EnvDatabaseURL)
	}
	return []string{"sudo", "-n", "apt-get"}, nil
}

func run(ctx context.Context, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return out.Bytes(), err
}

func tailOf(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
