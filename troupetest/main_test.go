package troupetest_test

import (
	"os"
	"testing"

	"github.com/troupehq/troupe/troupetest"
)

func TestMain(m *testing.M) { os.Exit(troupetest.Main(m, troupetest.NoGoroutineLeaks())) }
