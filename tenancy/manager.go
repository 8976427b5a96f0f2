package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/retry"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// DefaultLockTimeout is the default of Config.LockTimeout.
const DefaultLockTimeout = 500 * time.Millisecond

// DefaultRetry is the retry policy of lock timeouts when Config.Retry
// leaves a field zero: 20 attempts, 10ms doubling up to 320ms.
var DefaultRetry = retry.Policy{MaxAttempts: 20, InitialDelay: 10 * time.Millisecond, MaxDelay: 320 * time.Millisecond}

// Config configures a [Manager].
type Config struct {
	// Logger receives one Info record per tenant created or dropped and
	// Debug records for lock retries. Defaults to slog.Default().
	Logger *slog.Logger
	// Schema is where the event-store tables, the tenants registry
	// (migration 003) and the tenant-table registry (tenant_tables,
	// migration 005) live. Every table registered in tenant_tables, and
	// every other table in Schema partitioned by LIST (partition), gets a
	// partition per tenant. Defaults to the connection's current_schema().
	Schema string
	// Tables adds tables, by name ("carts") or schema-qualified name
	// ("readmodels.carts"), that must be partitioned by LIST (partition) and
	// get a partition per tenant too: read models outside Schema, say.
	// Names are taken literally (quoted, so case-sensitive), not parsed as
	// SQL. Tables registered in the database's tenant_tables, and tables in
	// Schema partitioned by LIST (partition), are found without listing
	// them here; registering a table in tenant_tables (from the migration
	// that creates it) is the way to also give it a lock order, a partition
	// column other than "partition", or to have Drop delete its rows from an
	// unpartitioned table. Defaults to none.
	Tables []string
	// LockTimeout bounds each wait for a table lock during Create and Drop.
	// Attaching or dropping a partition briefly locks the parent table;
	// a short timeout keeps a lifecycle operation from queueing other
	// tenants' statements behind it for long. On timeout the transaction
	// is rolled back and retried after a short pause. Keep it below the
	// server's deadlock_timeout (1s by default) so that in a lock cycle it
	// is the lifecycle operation, not the application's transaction, that
	// gives up. Defaults to DefaultLockTimeout (500ms).
	LockTimeout time.Duration
	// Retry is how often Create and Drop try, and how long they pause
	// between tries, before returning ErrBusy. Defaults to DefaultRetry.
	Retry retry.Policy
}

func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
		out.Tables = append([]string(nil), c.Tables...)
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.LockTimeout == 0 {
		out.LockTimeout = DefaultLockTimeout
	}
	out.Retry = out.Retry.WithDefaults(DefaultRetry)
	return out
}

func (c Config) validate() error {
	if c.LockTimeout < time.Millisecond {
		return &ConfigError{Field: "LockTimeout", Reason: fmt.Sprintf("%v is below 1ms", c.LockTimeout)}
	}
	if err := c.Retry.Validate("Retry"); err != nil {
		field, reason, _ := strings.Cut(err.Error(), ": ")
		return &ConfigError{Field: field, Reason: reason}
	}
	for i, t := range c.Tables {
		if _, err := pgtenant.SplitTableName(t); err != nil {
			return &ConfigError{Field: fmt.Sprintf("Tables[%d]", i), Reason: err.Error()}
		}
	}
	return nil
}

// Tenant is a registered tenant.
type Tenant struct {
	ID      store.TenantID
	Name    string
	Created time.Time
}

// Partition is one tenant partition of one partitioned table.
type Partition struct {
	// Schema holds both the partitioned table and the partition.
	Schema string
	// Table is the partitioned (parent) table.
	Table string
	// Name is the partition.
	Name string
}

// Manager runs the tenant lifecycle against PostgreSQL: it creates, lists
// and drops tenants and their partitions. It is safe for concurrent use, also
// from several processes: operations on one tenant are serialised by a
// transaction-scoped advisory lock.
type Manager struct {
	db  postgres.DB
	cfg Config
	log *slog.Logger
}

// NewManager returns a Manager on db: a *pgxpool.Pool (typical), a
// *pgx.Conn or a pgx.Tx (each operation then runs in a savepoint of it),
// connected as a role that owns the tenant tables (creating and dropping
// partitions needs ownership) and the registries of migrations 003 and 005.
// cfg may be nil; see [Config] for the defaults.
func NewManager(db postgres.DB, cfg *Config) (*Manager, error) {
	if postgres.IsNil(db) {
		return nil, errors.New("tenancy.NewManager: db is nil")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &Manager{db: db, cfg: c, log: c.Logger}, nil
}

// partitionsSQL looks up, for each parent, the relation named
// PartitionName(parent, id) and returns it with its parent and bound when it
// is a partition of that parent. It goes by name (index lookups) rather than
// scanning every partition's bound, so it costs the same with 10 or 10,000
// tenants; the bound is only deparsed for the rows found.
const partitionsSQL = `
SELECT t.parent, t.schema, t.name, pg_get_expr(c.relpartbound, c.oid)
FROM unnest($1::oid[], $2::text[], $3::text[]) AS t (parent, schema, name)
JOIN pg_namespace n ON n.nspname = t.schema
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = t.parent`

// partitionsOf returns, per parent oid, the tenant's partition: the
// relation named by PartitionName that is a partition of the parent for
// exactly the tenant's value. A relation of that name that is anything else
// is not returned (Create then reports ErrPartitionConflict).
func partitionsOf(ctx context.Context, q postgres.DB, tables []table, id store.TenantID) (map[uint32]Partition, error) {
	oids := make([]uint32, len(tables))
	schemas := make([]string, len(tables))
	names := make([]string, len(tables))
	parents := make(map[uint32]string, len(tables))
	for i, t := range tables {
		oids[i], schemas[i], names[i] = t.oid, t.schema, partitionName(t.name, string(id))
		parents[t.oid] = t.name
	}
	rows, err := q.Query(ctx, partitionsSQL, oids, schemas, names)
	if err != nil {
		return nil, fmt.Errorf("find partitions of tenant %q: %w", id, err)
	}
	defer rows.Close()
	want := "FOR VALUES IN (" + quoteLiteral(string(id)) + ")"
	out := make(map[uint32]Partition)
	for rows.Next() {
		var parent uint32
		var p Partition
		var bound *string
		if err := rows.Scan(&parent, &p.Schema, &p.Name, &bound); err != nil {
			return nil, fmt.Errorf("find partitions of tenant %q: %w", id, err)
		}
		if bound == nil || *bound != want {
			continue
		}
		p.Table = parents[parent]
		out[parent] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find partitions of tenant %q: %w", id, err)
	}
	return out, nil
}

// Partitions returns tenant id's partitions, in table lock order: the
// partitions named by [PartitionName] that hold exactly the tenant's value.
// A tenant without partitions (never created, or dropped) has none; its
// rows, if any, are in the DEFAULT partitions.
func (m *Manager) Partitions(ctx context.Context, id store.TenantID) ([]Partition, error) {
	if err := id.Validate(); err != nil {
		return nil, err
	}
	ts, _, err := m.tables(ctx, m.db)
	if err != nil {
		return nil, err
	}
	parts, err := partitionsOf(ctx, m.db, ts, id)
	if err != nil {
		return nil, err
	}
	var out []Partition
	for _, t := range ts {
		if p, ok := parts[t.oid]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (m *Manager) registry() string {
	if m.cfg.Schema == "" {
		return pgx.Identifier{"tenants"}.Sanitize()
	}
	return pgx.Identifier{m.cfg.Schema, "tenants"}.Sanitize()
}

// Create registers tenant id under name and creates its partition of every
// partitioned table (see [Config.Tables]), all in one transaction.
//
// A tenant dropped before (see [Manager.Drop]) loses its tombstone
// partitions first: it is a new tenant, and its streams are new streams.
//
// Create is idempotent: for a tenant that exists it creates only the
// partitions that are missing (say, of a table registered since) and
// leaves the registered name alone; created reports whether the registry
// row is new. Rows of the tenant already sitting in a DEFAULT partition
// (written before the tenant was created) are moved into its new partition
// in the same transaction.
//
// Errors: an invalid id matches [ErrInvalidTenantID]; a reserved one
// (store.DefaultPartition) [ErrReservedTenantID]; a partition name
// taken by another relation, or the tenant's value covered by a partition
// Troupe did not create, matches [ErrPartitionConflict]; tables that stay
// locked by other transactions return [ErrBusy] after Config.Retry.MaxAttempts
// tries. In every error case nothing is changed.
func (m *Manager) Create(ctx context.Context, id store.TenantID, name string) (t Tenant, created bool, err error) {
	if err := checkTenantID(id); err != nil {
		return Tenant{}, false, fmt.Errorf("create tenant: %w", err)
	}
	var made []Partition
	var moved int64
	var revived bool
	err = m.run(ctx, "create", id, func(tx pgx.Tx) error {
		made, moved, revived = nil, 0, false
		tag, err := tx.Exec(ctx, `INSERT INTO `+m.registry()+` (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, string(id), name)
		if err != nil {
			return fmt.Errorf("register tenant: %w", err)
		}
		created = tag.RowsAffected() == 1
		if err := tx.QueryRow(ctx, `SELECT id, name, created FROM `+m.registry()+` WHERE id = $1`, string(id)).
			Scan(&t.ID, &t.Name, &t.Created); err != nil {
			return fmt.Errorf("read tenant: %w", err)
		}
		ts, _, err := m.tables(ctx, tx)
		if err != nil {
			return err
		}
		// A dropped tenant created again is a new tenant: its tombstones
		// go first, then it gets partitions like any new tenant.
		tombs, err := tombstonesOf(ctx, tx, ts, id)
		if err != nil {
			return err
		}
		if err := dropTombstones(ctx, tx, ts, tombs); err != nil {
			return err
		}
		revived = len(tombs) > 0
		existing, err := partitionsOf(ctx, tx, ts, id)
		if err != nil {
			return err
		}
		var missing []table
		for _, tb := range ts {
			if _, ok := existing[tb.oid]; !ok {
				missing = append(missing, tb)
			}
		}
		made, moved, err = createPartitions(ctx, tx, missing, id)
		return err
	})
	if err != nil {
		return Tenant{}, false, fmt.Errorf("create tenant %q: %w", id, err)
	}
	if created || len(made) > 0 {
		m.log.InfoContext(ctx, "tenant created", "tenant_id", string(id), "new_registration", created,
			"partitions_created", len(made), "rows_moved_from_default", moved, "was_dropped", revived)
	}
	return t, created, nil
}

// createPartitions creates tenant id's partition of each table: a table like
// the parent, filled with the tenant's rows moved out of the DEFAULT
// partition, then attached. Attaching takes only SHARE UPDATE EXCLUSIVE on
// the parent (appends and reads of other tenants go on); the DEFAULT
// partition is locked exclusively until commit. The statements are sent in
// a few multi-statement round trips, so creating a tenant costs about the
// same with 1 or 1,000 tenants.
func createPartitions(ctx context.Context, tx pgx.Tx, tables []table, id store.TenantID) ([]Partition, int64, error) {
	if len(tables) == 0 {
		return nil, 0, nil
	}
	fail := func(what string, err error) ([]Partition, int64, error) {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P17" { // invalid_object_definition: overlapping bound
			err = fmt.Errorf("%w: %w", ErrPartitionConflict, err)
		}
		return nil, 0, fmt.Errorf("%s: %w", what, err)
	}
	value := quoteLiteral(string(id))
	parts := make([]Partition, len(tables))
	idents := make([]string, len(tables))
	for i, tb := range tables {
		parts[i] = Partition{Schema: tb.schema, Table: tb.name, Name: partitionName(tb.name, string(id))}
		idents[i] = pgx.Identifier{parts[i].Schema, parts[i].Name}.Sanitize()
	}

	// 1. Lock in the order ATTACH would. The flags are read afterwards, so
	// a concurrent EnableRowLevelSecurity is either seen or waits for us.
	var sql strings.Builder
	for _, tb := range tables {
		sql.WriteString(`LOCK TABLE ONLY ` + tb.qualified + ` IN SHARE UPDATE EXCLUSIVE MODE;`)
		if tb.defaultSQL != "" {
			sql.WriteString(`LOCK TABLE ONLY ` + tb.defaultSQL + ` IN ACCESS EXCLUSIVE MODE;`)
		}
	}
	if _, err := tx.Exec(ctx, sql.String()); err != nil {
		return fail("lock tables", err)
	}

	// 2. Per table: is the name taken, row-level security flags, does the
	// DEFAULT partition hold rows of the tenant.
	sql.Reset()
	for i, tb := range tables {
		if i > 0 {
			sql.WriteString(` UNION ALL `)
		}
		hasRows := `false`
		if tb.defaultSQL != "" {
			hasRows = `EXISTS (SELECT FROM ` + tb.defaultSQL + ` WHERE ` + pgx.Identifier{tb.column}.Sanitize() + ` = ` + value + `)`
		}
		fmt.Fprintf(&sql, `SELECT %d, to_regclass(%s) IS NOT NULL, relrowsecurity, relforcerowsecurity, %s FROM pg_class WHERE oid = %d`,
			i, quoteLiteral(idents[i]), hasRows, tb.oid)
	}
	type state struct{ taken, rls, force, rows bool }
	states := make([]state, len(tables))
	rows, err := tx.Query(ctx, sql.String(), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return fail("inspect tables", err)
	}
	for rows.Next() {
		var i int
		var st state
		if err := rows.Scan(&i, &st.taken, &st.rls, &st.force, &st.rows); err != nil {
			rows.Close()
			return fail("inspect tables", err)
		}
		states[i] = st
	}
	if err := rows.Err(); err != nil {
		return fail("inspect tables", err)
	}

	// 3. Create, fill and attach.
	var moved int64
	sql.Reset()
	for i, tb := range tables {
		st := states[i]
		if st.taken {
			return fail("create partition", fmt.Errorf("%w: tenant %q maps to %s in table %s, and that name is taken by another relation",
				ErrPartitionConflict, id, idents[i], tb))
		}
		sql.WriteString(`CREATE TABLE ` + idents[i] + ` (LIKE ` + tb.qualified + ` INCLUDING ALL EXCLUDING INDEXES EXCLUDING IDENTITY);`)
		if st.rows {
			// Rare (rows written before the tenant existed): its own
			// statement, to count the rows moved.
			if _, err := tx.Exec(ctx, sql.String()); err != nil {
				return fail("create partition of "+tb.String(), err)
			}
			sql.Reset()
			cols, err := insertableColumns(ctx, tx, tb.oid)
			if err != nil {
				return fail("list columns of "+tb.String(), err)
			}
			tag, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM `+tb.defaultSQL+` WHERE `+pgx.Identifier{tb.column}.Sanitize()+` = $1 RETURNING `+cols+`) `+
				`INSERT INTO `+idents[i]+` (`+cols+`) SELECT `+cols+` FROM moved`, string(id))
			if err != nil {
				return fail("move rows out of "+tb.defaultSQL, err)
			}
			moved += tag.RowsAffected()
		}
		sql.WriteString(`ALTER TABLE ` + tb.qualified + ` ATTACH PARTITION ` + idents[i] + ` FOR VALUES IN (` + value + `);`)
		if st.rls {
			for _, stmt := range pgtenant.PolicyStatements(idents[i], tb.policyColumns(), st.force) {
				sql.WriteString(stmt + `;`)
			}
		}
	}
	if _, err := tx.Exec(ctx, sql.String()); err != nil {
		return fail("create partitions", err)
	}
	return parts, moved, nil
}

// insertableColumns returns the sanitized, comma-separated list of the
// table's columns that can be written (not dropped, not generated).
func insertableColumns(ctx context.Context, tx pgx.Tx, oid uint32) (string, error) {
	rows, err := tx.Query(ctx, `SELECT attname FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, oid)
	if err != nil {
		return "", err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", err
	}
	for i, n := range names {
		names[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(names, ", "), nil
}

// reservedTenantID reports why id can't be created or dropped as a tenant
// by the Manager, or "" when it can. store.DefaultPartition is reserved: it
// is the partition of single-tenant data (every write that names no
// partition), kept in the tables' DEFAULT partitions; registering it as a
// tenant would list it among the tenants, and dropping it would erase
// that data. It stays a valid partition for the event store and
// projections.
func reservedTenantID(id store.TenantID) string {
	if id == store.DefaultPartition {
		return "it is store.DefaultPartition, the partition of single-tenant data (kept in the DEFAULT partitions), not a tenant"
	}
	return ""
}

// checkTenantID validates id and refuses reserved ids.
func checkTenantID(id store.TenantID) error {
	if err := id.Validate(); err != nil {
		return err
	}
	if why := reservedTenantID(id); why != "" {
		return fmt.Errorf("%w %q: %s", ErrReservedTenantID, id, why)
	}
	return nil
}

// Get returns the registered tenant id, or an error matching
// [ErrTenantNotFound].
func (m *Manager) Get(ctx context.Context, id store.TenantID) (Tenant, error) {
	if err := id.Validate(); err != nil {
		return Tenant{}, fmt.Errorf("get tenant: %w", err)
	}
	var t Tenant
	err := m.db.QueryRow(ctx, `SELECT id, name, created FROM `+m.registry()+` WHERE id = $1`, string(id)).
		Scan(&t.ID, &t.Name, &t.Created)
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("get tenant %q: %w", id, ErrTenantNotFound)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("get tenant %q: %w", id, err)
	}
	return t, nil
}

// List returns every registered tenant, ordered by id.
func (m *Manager) List(ctx context.Context) ([]Tenant, error) {
	rows, err := m.db.Query(ctx, `SELECT id, name, created FROM `+m.registry()+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) {
		var t Tenant
		err := r.Scan(&t.ID, &t.Name, &t.Created)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

// Drop erases tenant id: it drops the tenant's partitions of every
// partitioned table, deletes the tenant's rows left elsewhere (in DEFAULT
// partitions, written before Create; in partitions created outside Troupe;
// in the read-model snapshots table, which is not partitioned)
// and removes the registry row, all in one transaction. Other tenants' rows
// are untouched.
//
// In the same transaction every partitioned tenant table gets a tombstone
// partition for the tenant's value, which refuses every row: from the
// commit on, no write of the tenant succeeds (an append fails with an error
// matching store.ErrTenantDropped, in this process and in any other), and
// nothing of it lands in a DEFAULT partition, until [Manager.Create]
// creates the tenant again, as a new tenant. Writes that committed before
// the drop are erased with the tenant. A table where a partition Troupe
// did not create covers the value gets no tombstone (a warning is logged).
//
// Drop is idempotent: dropping an already dropped tenant changes nothing
// and returns nil; dropping an unknown one only guards its id as above. A reserved id (store.DefaultPartition) is
// refused with [ErrReservedTenantID]: erasing it would erase the data of
// every writer that names no partition. Dropping a partition needs a brief ACCESS
// EXCLUSIVE lock on each parent table; Drop waits at most
// Config.LockTimeout for it, backs off and retries so that other tenants'
// traffic is never queued behind it for long, and returns [ErrBusy] after
// Config.Retry.MaxAttempts tries, having changed nothing.
func (m *Manager) Drop(ctx context.Context, id store.TenantID) error {
	if err := checkTenantID(id); err != nil {
		return fmt.Errorf("drop tenant: %w", err)
	}
	var dropped []Partition
	var deleted int64
	var registered bool
	var guarded int
	var skipped []string
	err := m.run(ctx, "drop", id, func(tx pgx.Tx) error {
		dropped, deleted, guarded, skipped = nil, 0, 0, nil
		ts, unpartitioned, err := m.tables(ctx, tx)
		if err != nil {
			return err
		}
		parts, err := partitionsOf(ctx, tx, ts, id)
		if err != nil {
			return err
		}
		tombs, err := tombstonesOf(ctx, tx, ts, id)
		if err != nil {
			return err
		}
		// Lock every table whose partition is dropped or that gets a
		// tombstone: a tenant dropped before costs no lock at all.
		var locks, drops []string
		var unguarded []table
		for _, tb := range ts {
			p, live := parts[tb.oid]
			_, guarded := tombs[tb.oid]
			if !live && guarded {
				continue
			}
			locks = append(locks, "ONLY "+tb.qualified)
			if tb.defaultSQL != "" {
				locks = append(locks, "ONLY "+tb.defaultSQL)
			}
			if live {
				drops = append(drops, pgx.Identifier{p.Schema, p.Name}.Sanitize())
				dropped = append(dropped, p)
			}
			if !guarded {
				unguarded = append(unguarded, tb)
			}
		}
		if len(locks) > 0 {
			if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(locks, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
				return fmt.Errorf("lock tables: %w", err)
			}
		}
		if len(drops) > 0 {
			if _, err := tx.Exec(ctx, `DROP TABLE `+strings.Join(drops, ", ")); err != nil {
				return fmt.Errorf("drop partitions: %w", err)
			}
		}
		// Whatever is left of the tenant sits in DEFAULT partitions (or in
		// partitions someone else created for it): delete it through the
		// parent. The value is inlined (it is validated) so the plan is
		// pruned to those partitions, whatever the number of tenants.
		for _, tb := range ts {
			tag, err := tx.Exec(ctx, `DELETE FROM `+tb.qualified+` WHERE `+pgx.Identifier{tb.column}.Sanitize()+` = `+quoteLiteral(string(id)))
			if err != nil {
				return fmt.Errorf("delete leftover rows from %s: %w", tb, err)
			}
			deleted += tag.RowsAffected()
		}
		n, err := deleteUnpartitioned(ctx, tx, unpartitioned, string(id))
		if err != nil {
			return err
		}
		deleted += n
		// Last, with the tenant's rows gone from the DEFAULT partitions:
		// the tombstones that refuse its writes from now on.
		guarded, skipped, err = createTombstones(ctx, tx, unguarded, id)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+m.registry()+` WHERE id = $1`, string(id))
		if err != nil {
			return fmt.Errorf("unregister tenant: %w", err)
		}
		registered = tag.RowsAffected() == 1
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop tenant %q: %w", id, err)
	}
	if registered || len(dropped) > 0 || deleted > 0 || guarded > 0 {
		m.log.InfoContext(ctx, "tenant dropped", "tenant_id", string(id), "was_registered", registered,
			"partitions_dropped", len(dropped), "leftover_rows_deleted", deleted, "tombstones_created", guarded)
	}
	if len(skipped) > 0 {
		m.log.WarnContext(ctx, "tenant tombstone skipped", "tenant_id", string(id), "tables", skipped,
			"reason", "a partition Troupe did not create covers the tenant's value")
	}
	return nil
}
