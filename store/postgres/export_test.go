package postgres

import "context"

// ParseMigrations exposes the migration file parser to the external tests.
var ParseMigrations = parseMigrations

// createTenant gives tenant id its partitions. The internal tests need
// tenants but can't import tenancy (it imports this package), so
// tenants_external_test.go sets it with SetCreateTenant from an init.
var createTenant func(ctx context.Context, db DB, id string) error

// SetCreateTenant sets createTenant.
func SetCreateTenant(f func(ctx context.Context, db DB, id string) error) { createTenant = f }
