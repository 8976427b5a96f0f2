package pgserver

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSweepStaleRemovesOnlyAbandonedOldDirs(t *testing.T) {
	t.Parallel()
	temp := t.TempDir()
	old := time.Now().Add(-2 * staleAfter)

	// A pid that surely belongs to no process: one that has exited.
	done := exec.Command("true")
	require.NoError(t, done.Run())
	deadPid := done.ProcessState.Pid()

	mk := func(name string, pid int, mtime time.Time) string {
		dir := filepath.Join(temp, name)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o700))
		if pid != 0 {
			content := strconv.Itoa(pid) + "\n/some/data\n"
			require.NoError(t, os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(content), 0o600))
		}
		require.NoError(t, os.Chtimes(dir, mtime, mtime))
		return dir
	}
	abandoned := mk(dirPrefix+"abandoned", 0, old)
	crashed := mk(dirPrefix+"crashed", deadPid, old)
	running := mk(dirPrefix+"running", os.Getpid(), old)
	young := mk(dirPrefix+"young", 0, time.Now())
	foreign := mk("other-old", 0, old)

	sweepStale(context.Background(), temp, slog.Default())

	require.NoDirExists(t, abandoned)
	require.NoDirExists(t, crashed)
	require.DirExists(t, running, "a directory with a live postmaster was removed")
	require.DirExists(t, young, "a directory possibly being set up was removed")
	require.DirExists(t, foreign, "a directory Start did not create was removed")
}
