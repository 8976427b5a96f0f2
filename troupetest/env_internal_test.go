package troupetest

import (
	"testing"

	"github.com/troupehq/troupe/internal/pgtest"
)

// The kit documents the variable internal/pgtest reads.
func TestEnvDatabaseURLIsPgtests(t *testing.T) {
	if EnvDatabaseURL != pgtest.EnvDatabaseURL {
		t.Fatalf("troupetest.EnvDatabaseURL %q, internal/pgtest reads %q", EnvDatabaseURL, pgtest.EnvDatabaseURL)
	}
}
