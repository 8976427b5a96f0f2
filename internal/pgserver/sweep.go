package pgserver

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dirPrefix starts the name of every directory Start creates.
const dirPrefix = "troupe-pg-"

// staleAfter is how old a server directory without a running postmaster
// must be before Start removes it. Young ones may belong to a Start still
// running initdb.
const staleAfter = time.Hour

// sweepStale removes server directories under tempDir left behind by
// processes that died without calling Stop (killed test binaries), so that
// they do not pile up, in memory when tempDir is /dev/shm. A directory is
// removed only when it is older than staleAfter and its postmaster.pid is
// missing or names a process that no longer exists. Best effort: failures
// are logged at debug level and otherwise ignored.
func sweepStale(ctx context.Context, tempDir string, logger *slog.Logger) {
	entries, err := os.ReadDir(tempDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(tempDir, e.Name())
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleAfter || postmasterAlive(filepath.Join(dir, "data")) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			logger.DebugContext(ctx, "pgserver_sweep_failed", slog.String("dir", dir), slog.String("error", err.Error()))
			continue
		}
		logger.DebugContext(ctx, "pgserver_swept_stale_dir", slog.String("dir", dir))
	}
}

// postmasterAlive reports whether dataDir's postmaster.pid names a live
// process. A pid reused by an unrelated process counts as alive, which errs
// on the side of keeping the directory.
func postmasterAlive(dataDir string) bool {
	f, err := os.Open(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
