package consumer_test

import (
	"os"
	"testing"

	"github.com/troupehq/troupe/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
