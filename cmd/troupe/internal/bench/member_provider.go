package bench

import (
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/actor"
)

// postgresMembership sets cc's provider to membership in the scratch
// database.
func postgresMembership(cc *actor.ClusterConfig, pool *pgxpool.Pool, logger *slog.Logger) error {
	return errors.New("the PostgreSQL membership provider is not available: use a static member list")
}
