// Package tenancy runs the tenant lifecycle in PostgreSQL: it registers
// tenants and gives each its own partition of every tenant table.
//
// A tenant is an event-store partition: every stream, message, checkpoint,
// aggregate snapshot and partitioned read-model row carries a partition
// value, and the same stream id in two tenants is two independent streams.
// Tenant ids ([store.TenantID], validated by [store.ValidateTenantID]) and
// how they travel through a context ([store.WithTenant]) are defined in the
// backend-neutral store package; single-tenant applications use
// [store.DefaultPartition] and need nothing from this package.
//
// # Partitions
//
// [Manager.Create] gives a tenant its own partition of every table
// partitioned by LIST (partition) (streams, messages, subscriptions,
// aggregate_snapshots, the projection tables, registered read models) in one
// transaction, moving rows the tenant already had in the DEFAULT partitions.
// [Manager.Drop] erases a tenant by dropping those partitions and deleting its
// leftovers in the DEFAULT partitions and its rows in the (unpartitioned)
// read-model snapshots table. Both are idempotent and serialised per
// tenant by an advisory lock; they wait at most Config.LockTimeout for a table
// lock and retry, so other tenants' traffic is never queued behind them for
// long.
//
// Partition names come from [PartitionName]: distinct tenant ids never share
// a name (the escape is injective; ids too long for it get a 64-bit hash and
// a catalog check), names fit PostgreSQL's 63-byte limit, and every name is
// quoted with pgx.Identifier.
//
// # Row-level security
//
// [EnableRowLevelSecurity] adds, as an opt-in second line of defence, a
// policy on the event tables (and opted-in read models) and all their
// partitions that lets a transaction see and write only the rows of the
// tenant set by [SetTenant]; a non-owner application role then cannot reach
// another tenant's rows even with raw SQL. Without a tenant set it sees
// nothing. The PostgreSQL event store sets the tenant of each of its
// statements itself when its Config.RowLevelSecurity is on.
//
// # Failures
//
// Invalid ids match [store.ErrInvalidTenantID]; unknown tenants [ErrTenantNotFound];
// name clashes [ErrPartitionConflict]; unpartitioned registered tables
// [ErrNotPartitioned]; tables kept locked by others past the retry budget
// [ErrBusy]. A failed Create or Drop changes nothing.
package tenancy
