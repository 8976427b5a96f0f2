package postgres_test

import (
	"context"
	"log/slog"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
	"github.com/troupehq/troupe/tenancy"
)

// The internal tests create tenants through tenancy.Manager, which they
// can't import themselves.
func init() {
	postgres.SetCreateTenant(func(ctx context.Context, db postgres.DB, id string) error {
		mgr, err := tenancy.NewManager(db, &tenancy.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		_, _, err = mgr.Create(ctx, store.TenantID(id), "")
		return err
	})
}
