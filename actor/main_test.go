package actor_test

import (
	"os"
	"testing"

	"github.com/troupehq/troupe/internal/pgtest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(crashChildEnv); mode != "" {
		crashChild(mode) // a child process of TestProcessDiesMidBatch
	}
	code := pgtest.Main(m)
	removeMemberBin()
	os.Exit(code)
}
