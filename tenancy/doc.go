// Package tenancy runs the tenant lifecycle in PostgreSQL: it registers
// tenants and gives each its own partition of every tenant table.
//
// A tenant is an event-store partition: every stream, message, checkpoint,
// aggregate snapshot and partitioned read-model row carries a partition
// value, and the same stream id in two tenants is two independent streams.
// Tenant ids ([store.TenantID], validated by [store.ValidateTenantID]) and
// how they travel through a context ([store.WithTenant]) are defined in the
// backend-neutral store package; single-tenant applications use
// [store.DefaultPartition] and need nothing from this package; that
// partition is not a tenant, and the Manager refuses to create or drop it
// ([ErrReservedTenantID]).
//
// # Tenant tables
//
// The tables that hold tenants' rows are declared in the database, not in
// Go: the tenant_tables registry (migration 005 of store/postgres) has a
// row per table with its partition column, whether it is partitioned by
// tenant, its lock order and whether row-level security covers it. The
// migrations register their own tables
// (the event tables, the projection tables, the read-model snapshots
// table); applications register their read models from their own
// migrations. Tables of the Manager's schema partitioned by LIST
// (partition), and the tables of Config.Tables, count too.
//
// # Partitions
//
// [Manager.Create] gives a tenant its own partition of every partitioned
// tenant table in one transaction, moving rows the tenant already had in the
// DEFAULT partitions. [Manager.Drop] erases a tenant by dropping those
// partitions, deleting its leftovers in the DEFAULT partitions and its rows
// in the registry's unpartitioned tables (the read-model snapshots table).
// Both are idempotent and serialised per tenant by an advisory lock; they
// lock tables in the registry's lock order, wait at most Config.LockTimeout
// for a table lock and retry, so other tenants' traffic is never queued
// behind them for long.
//
// Partition names come from [PartitionName]: distinct tenant ids never share
// a name (the escape is injective; ids too long for it get a 64-bit hash and
// a catalog check), names fit PostgreSQL's 63-byte limit, and every name is
// quoted with pgx.Identifier.
//
// # Row-level security
//
// Row-level security is in store/postgres ([postgres.EnableRowLevelSecurity],
// [postgres.SetTenant]). Partitions created by [Manager.Create] of a table
// under it get the same policy.
//
// # Failures
//
// Invalid ids match [store.ErrInvalidTenantID]; store.DefaultPartition
// [ErrReservedTenantID]; unknown tenants [ErrTenantNotFound];
// name clashes [ErrPartitionConflict]; unpartitioned registered tables
// [ErrNotPartitioned]; tables kept locked by others past the retry budget
// [ErrBusy]. A failed Create or Drop changes nothing.
package tenancy
