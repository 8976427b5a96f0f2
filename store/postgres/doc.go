// Package postgres is Troupe's PostgreSQL event store on pgx/v5: the
// [store.EventStore] and [store.SnapshotStore] of a production deployment,
// with its schema as embedded, numbered migrations.
//
// # Use
//
//	if err := postgres.Migrate(ctx, pool); err != nil { ... }
//	es, err := postgres.New(pool, nil)
//	res, err := es.AppendToStream(ctx, "cart-1", events,
//		store.AppendOptions{Partition: "tenant-a", ExpectedVersion: store.Exact(3)})
//
// [New], [Migrate] and [MigrateStatus] take a [DB]: a *pgxpool.Pool, a
// *pgx.Conn or a pgx.Tx. To join a transaction of your own, pass it to New
// or use [Store.WithTx]; to let the store open one, use [Store.WithSession].
//
// # Tenant tables
//
// The schema records which tables hold tenants' rows in the tenant_tables
// registry (migration 005): each migration registers the tables it creates,
// with their partition column, whether they are partitioned by tenant, the
// order tenant lifecycle operations lock them in, whether row-level
// security covers them (since migration 006 every table of the migrations
// that holds tenants' rows) and an optional scope column the policy also
// keys on. The tenancy package's Manager and
// [EnableRowLevelSecurity] read it; applications register their read-model
// tables in it from their own migrations (docs/tenancy.md).
//
// # Keys of data subjects
//
// [KeyStore] is the store/shred key store: one row per data subject and
// partition in subject_keys (migration 009), a tenant table, so dropping a
// tenant drops its subjects' keys (docs/erasure.md).
//
// # Row-level security
//
// With Config.RowLevelSecurity on, the store scopes every transaction it
// runs for a partition to that partition ([SetTenantSQL], queued in
// the same pgx.Batch as the statement, so still one round trip), for the
// policies of [EnableRowLevelSecurity]: a pool connected as a
// non-owner application role then reaches the rows of the partition each
// call names and nothing else, and raw SQL in a transaction the store has
// scoped sees only that tenant. ReadAll without a partition sets no tenant
// and returns only what the role may see (nothing, on the pool): read the
// whole log as the tables' owner. Off (the default), nothing is added.
//
// Under the policies a tenant-scoped role reaches its own partition's rows
// of every tenant table: events, aggregate snapshots, checkpoints,
// projection statuses and dead letters of projections limited to its
// partition, read-model snapshots. Rows of projections over every
// partition (partition or scope '*') are visible to no tenant. The
// projection package's runtimes (projections, consumers, the per-stream
// runner) write checkpoints and statuses outside any tenant's scope: run
// them as the owner. [UnprotectedTenantTables] lists, from the catalogue,
// the tables with a partition column that row-level security leaves
// uncovered; run it in a test of your deployment.
//
// # Notifications
//
// By default each append statement calls pg_notify, so its notification is
// sent exactly when it commits. PostgreSQL serialises the commits of
// notifying transactions on one cluster-wide lock, which caps and roughly
// halves the append throughput of many concurrent writers. With a
// [Notifier] in Config.Notifier, appends on the pool run without pg_notify
// and poke the Notifier after they commit; it sends at most one statement
// per NotifierConfig.Interval (default 5ms) with one notification per
// partition written, carrying the highest global position poked, in the
// same payload format. The trade-off: listeners hear of an append up to one
// Interval (plus a round trip) later, and appends go much faster (see
// BenchmarkAppendParallel). Appends in a caller's transaction (WithTx,
// WithSession) still notify from their statement, so no notification
// precedes a commit. A Notifier's failed statement is logged and dropped,
// and positions poked after its Stop are never sent; a process that
// crashes between an append's commit and the next flush sends nothing for
// it. Listeners must poll as a fallback in any case.
//
// # Upcasting
//
// With Config.Upcaster (usually the service's store.JSONCodec), ReadStream
// and ReadAll return every event at the current schema of its type:
// renamed, upcast, split or dropped as registered; the rows are never
// changed. See docs/evolution.md.
//
// # Guarantees
//
//   - An append is one SQL statement, so one round trip on the success path:
//     it checks the expected version in SQL while creating or advancing the
//     stream's row, inserts every event at contiguous positions and sends
//     the notification. It commits all its events or none, also when its
//     context is cancelled mid-way. On the pool its statements only write
//     (INSERT … ON CONFLICT on streams, INSERT on messages), so PostgreSQL
//     routes them to the tenant's partition at run time and even a cached
//     generic plan locks no other tenant's partitions: append latency does
//     not grow with the number of tenants (docs/tenancy.md).
//   - Every failed expected-version check is a *[store.VersionConflictError],
//     including two writers racing to create the same stream (the loser
//     waits for the winner and then finds the stream). Two unchecked ([store.Any])
//     appends racing on one stream both succeed at contiguous positions.
//   - Re-sending an append whose message ids are stored, in the same order
//     at contiguous positions of the same stream (right after version n for
//     Exact(n)), returns the original result and writes nothing. Reusing
//     message ids any other way returns an error matching
//     [store.ErrDuplicateMessageID] naming the id. Message ids are unique per
//     partition, archived events included.
//   - [Store.ReadAll] reads the global log in (transaction id, global
//     position) order and returns only events of transactions older than
//     every transaction still in flight that could write to this database
//     (the snapshot's in-flight list, the reader's own transaction
//     included), so a checkpoint never passes an event that commits later.
//     Transactions that pg_stat_activity shows in other databases of the
//     cluster are left out of that horizon; any other long-running writing
//     transaction (a prepared one, a bulk load) holds the global log back
//     until it ends.
//   - A stream's type is set by the append that creates it and never
//     changes. Events carry the database clock in Created and their own
//     schema version.
//   - Every append notifies [NotifyChannel] when its transaction commits:
//     from its own statement by default, or, with Config.Notifier, through
//     the [Notifier] right after the commit (see Notifications).
//   - [Migrate] is idempotent and safe to run from several processes at
//     once (a transaction-scoped advisory lock serialises them).
//   - Identifiers are never built from input: partitions are bind
//     parameters and every statement is a constant.
//
// # Failures
//
//   - Bad input (see [store.PrepareAppend]) returns an error matching
//     [store.ErrInvalidArgument] before any SQL runs; a value PostgreSQL
//     itself refuses (a JSON string holding \u0000, which jsonb cannot
//     store) also matches it.
//   - On the pool, a refused append (an idempotent retry whose events are
//     stored, a reused message id, an expected version of an existing stream
//     for a missing one) is a statement that fails in the database, rolls
//     back and is followed by a look-up; the caller gets the result or error
//     described above, and the server log shows the statement's unique or
//     NOT NULL violation. In a caller's transaction such appends return no
//     row instead, so the transaction stays usable.
//   - Inside a caller's transaction, an append that loses a race against an
//     identical append (same message ids, committed first) fails with an
//     error matching [store.ErrDuplicateMessageID], and PostgreSQL aborts
//     the transaction. The common retry, after the first append committed,
//     fails nothing.
//   - Database errors are returned wrapped (errors.As finds the
//     *pgconn.PgError) with what the store was doing. Some failures are
//     ambiguous: a connection lost during commit, or a context cancelled
//     while the append runs (pgx stops waiting, but unless the pool is
//     configured to send cancel requests PostgreSQL finishes the statement
//     and commits it). The append then either stored all its events or
//     none; re-sending it with the same message ids is safe and tells
//     which.
//   - [Store.ArchiveStream] deletes the stream's aggregate snapshots with
//     it; the next stream with the same id is a new incarnation (the global
//     position of its first event, streams.incarnation since schema v7).
//     Archiving a missing stream returns an error matching
//     [store.ErrStreamNotFound]. A stream keeps at most one archived
//     incarnation: archiving a stream that was archived, recreated and
//     written again deletes the older archived events (logged at Info).
package postgres
