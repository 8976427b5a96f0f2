package tenancy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/store"
)

// DB is what the tenancy functions need from a database handle.
// *pgxpool.Pool and *pgx.Conn satisfy it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Defaults of [Config].
const (
	DefaultLockTimeout  = 500 * time.Millisecond
	DefaultLockAttempts = 20
)

// Config configures a [Manager].
type Config struct {
	// DB is the database, typically a *pgxpool.Pool, connected as a role
	// that owns the partitioned tables (creating and dropping partitions
	// needs ownership) and the tenants registry of migration 003. Required.
	DB DB
	// Logger receives one Info record per tenant created or dropped and
	// Debug records for lock retries. Defaults to slog.Default().
	Logger *slog.Logger
	// Schema is where the event-store tables and the tenants registry live.
	// Every table in it partitioned by LIST (partition) gets a partition per
	// tenant. Defaults to the connection's current_schema().
	Schema string
	// Tables registers extra tables, by name ("carts") or schema-qualified
	// name ("readmodels.carts"), that must be partitioned by LIST
	// (partition) and get a partition per tenant too: read models outside
	// Schema, say. Names are taken literally (quoted, so case-sensitive),
	// not parsed as SQL. Tables in Schema are found without registering
	// them. Defaults to none.
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
	// LockAttempts is how many times Create and Drop try before returning
	// ErrBusy. Defaults to DefaultLockAttempts (20).
	LockAttempts int
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
	if out.LockAttempts == 0 {
		out.LockAttempts = DefaultLockAttempts
	}
	return out
}

func (c Config) validate() error {
	if c.DB == nil {
		return &ConfigError{Field: "DB", Reason: "required"}
	}
	if c.LockTimeout < time.Millisecond {
		return &ConfigError{Field: "LockTimeout", Reason: fmt.Sprintf("%v is below 1ms", c.LockTimeout)}
	}
	if c.LockAttempts < 1 {
		return &ConfigError{Field: "LockAttempts", Reason: fmt.Sprintf("%d is below 1", c.LockAttempts)}
	}
	for i, t := range c.Tables {
		if _, err := splitTableName(t); err != nil {
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
	cfg Config
	log *slog.Logger
}

// NewManager returns a Manager. cfg may be nil only to learn that DB is
// required; see [Config] for the defaults.
func NewManager(cfg *Config) (*Manager, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &Manager{cfg: c, log: c.Logger}, nil
}

// table is a partitioned table found in the catalog.
type table struct {
	oid        uint32
	schema     string
	name       string
	defSchema  string // the DEFAULT partition; "" when there is none
	defName    string
	qualified  string // sanitized schema.name
	defaultSQL string // sanitized default partition, "" when there is none
}

func (t table) String() string { return t.schema + "." + t.name }

// eventTableRank orders the event-store tables the way application
// transactions usually touch them, so lifecycle locks are taken in a
// consistent order.
var eventTableRank = map[string]int{"streams": 0, "messages": 1, "aggregate_snapshots": 2, "subscriptions": 3}

// discoverSQL starts from pg_partitioned_table (a handful of rows) rather
// than pg_class (every table, partition and index), so it stays cheap with
// thousands of tenant partitions.
const discoverSQL = `
SELECT c.oid, n.nspname, c.relname, coalesce(dn.nspname, ''), coalesce(d.relname, ''),
       coalesce(pt.partstrat = 'l' AND pt.partnatts = 1 AND a.attname = 'partition', false),
       n.nspname = coalesce(nullif($1, ''), current_schema())
FROM (SELECT unnest($2::oid[]) UNION SELECT partrelid FROM pg_partitioned_table) AS k (oid)
JOIN pg_class c ON c.oid = k.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
LEFT JOIN pg_class d ON d.oid = pt.partdefid
LEFT JOIN pg_namespace dn ON dn.oid = d.relnamespace
WHERE c.oid = ANY($2::oid[])
   OR (n.nspname = coalesce(nullif($1, ''), current_schema())
       AND c.relkind = 'p' AND NOT c.relispartition
       AND pt.partstrat = 'l' AND pt.partnatts = 1 AND a.attname = 'partition')`

// tables finds the partitioned tables a tenant gets partitions of: every
// table in the schema partitioned by LIST (partition), plus the registered
// ones, in lock order.
func (m *Manager) tables(ctx context.Context, q DB) ([]table, error) {
	registered := make([]string, len(m.cfg.Tables))
	for i, t := range m.cfg.Tables {
		parts, _ := splitTableName(t) // validated by NewManager
		registered[i] = pgx.Identifier(parts).Sanitize()
	}
	var oids []uint32
	if len(registered) > 0 {
		rows, err := q.Query(ctx, `SELECT x.name, to_regclass(x.name)::oid FROM unnest($1::text[]) AS x(name)`, registered)
		if err != nil {
			return nil, fmt.Errorf("resolve registered tables: %w", err)
		}
		var missing []string
		for rows.Next() {
			var name string
			var oid *uint32
			if err := rows.Scan(&name, &oid); err != nil {
				rows.Close()
				return nil, fmt.Errorf("resolve registered tables: %w", err)
			}
			if oid == nil {
				missing = append(missing, name)
				continue
			}
			oids = append(oids, *oid)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("resolve registered tables: %w", err)
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%w: registered table %s does not exist", ErrNotPartitioned, strings.Join(missing, ", "))
		}
	}
	if oids == nil {
		oids = []uint32{}
	}
	rows, err := q.Query(ctx, discoverSQL, m.cfg.Schema, oids)
	if err != nil {
		return nil, fmt.Errorf("find partitioned tables: %w", err)
	}
	defer rows.Close()
	var out []table
	ranks := map[uint32]int{}
	for rows.Next() {
		var t table
		var ok, inSchema bool
		if err := rows.Scan(&t.oid, &t.schema, &t.name, &t.defSchema, &t.defName, &ok, &inSchema); err != nil {
			return nil, fmt.Errorf("find partitioned tables: %w", err)
		}
		if !ok {
			return nil, fmt.Errorf("%w: registered table %s", ErrNotPartitioned, pgx.Identifier{t.schema, t.name}.Sanitize())
		}
		t.qualified = pgx.Identifier{t.schema, t.name}.Sanitize()
		if t.defName != "" {
			t.defaultSQL = pgx.Identifier{t.defSchema, t.defName}.Sanitize()
		}
		rank, known := eventTableRank[t.name]
		if !known || !inSchema {
			rank = len(eventTableRank)
		}
		ranks[t.oid] = rank
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find partitioned tables: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no table partitioned by LIST (partition) found; are the migrations applied?", ErrNotPartitioned)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ranks[a.oid] != ranks[b.oid] {
			return ranks[a.oid] < ranks[b.oid]
		}
		if a.schema != b.schema {
			return a.schema < b.schema
		}
		return a.name < b.name
	})
	return out, nil
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
func partitionsOf(ctx context.Context, q DB, tables []table, id store.TenantID) (map[uint32]Partition, error) {
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

// Tables returns the partitioned tables every tenant gets a partition of,
// schema-qualified, in the order lifecycle operations lock them.
func (m *Manager) Tables(ctx context.Context) ([]string, error) {
	ts, err := m.tables(ctx, m.cfg.DB)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
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
	ts, err := m.tables(ctx, m.cfg.DB)
	if err != nil {
		return nil, err
	}
	parts, err := partitionsOf(ctx, m.cfg.DB, ts, id)
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
// Create is idempotent: for a tenant that exists it creates only the
// partitions that are missing (say, of a table registered since) and
// leaves the registered name alone; created reports whether the registry
// row is new. Rows of the tenant already sitting in a DEFAULT partition
// (written before the tenant was created) are moved into its new partition
// in the same transaction.
//
// Errors: an invalid id matches [ErrInvalidTenantID]; a partition name
// taken by another relation, or the tenant's value covered by a partition
// Troupe did not create, matches [ErrPartitionConflict]; tables that stay
// locked by other transactions return [ErrBusy] after Config.LockAttempts
// tries. In every error case nothing is changed.
func (m *Manager) Create(ctx context.Context, id store.TenantID, name string) (t Tenant, created bool, err error) {
	if err := id.Validate(); err != nil {
		return Tenant{}, false, fmt.Errorf("create tenant: %w", err)
	}
	var made []Partition
	var moved int64
	err = m.run(ctx, "create", id, func(tx pgx.Tx) error {
		made, moved = nil, 0
		tag, err := tx.Exec(ctx, `INSERT INTO `+m.registry()+` (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, string(id), name)
		if err != nil {
			return fmt.Errorf("register tenant: %w", err)
		}
		created = tag.RowsAffected() == 1
		if err := tx.QueryRow(ctx, `SELECT id, name, created FROM `+m.registry()+` WHERE id = $1`, string(id)).
			Scan(&t.ID, &t.Name, &t.Created); err != nil {
			return fmt.Errorf("read tenant: %w", err)
		}
		ts, err := m.tables(ctx, tx)
		if err != nil {
			return err
		}
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
			"partitions_created", len(made), "rows_moved_from_default", moved)
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
			hasRows = `EXISTS (SELECT FROM ` + tb.defaultSQL + ` WHERE partition = ` + value + `)`
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
			tag, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM `+tb.defaultSQL+` WHERE partition = $1 RETURNING `+cols+`) `+
				`INSERT INTO `+idents[i]+` (`+cols+`) SELECT `+cols+` FROM moved`, string(id))
			if err != nil {
				return fail("move rows out of "+tb.defaultSQL, err)
			}
			moved += tag.RowsAffected()
		}
		sql.WriteString(`ALTER TABLE ` + tb.qualified + ` ATTACH PARTITION ` + idents[i] + ` FOR VALUES IN (` + value + `);`)
		if st.rls {
			for _, stmt := range policyStatements(idents[i], st.force) {
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

// Get returns the registered tenant id, or an error matching
// [ErrTenantNotFound].
func (m *Manager) Get(ctx context.Context, id store.TenantID) (Tenant, error) {
	if err := id.Validate(); err != nil {
		return Tenant{}, fmt.Errorf("get tenant: %w", err)
	}
	var t Tenant
	err := m.cfg.DB.QueryRow(ctx, `SELECT id, name, created FROM `+m.registry()+` WHERE id = $1`, string(id)).
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
	rows, err := m.cfg.DB.Query(ctx, `SELECT id, name, created FROM `+m.registry()+` ORDER BY id`)
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
// Drop is idempotent: dropping an unknown or already dropped tenant does
// nothing and returns nil. Dropping a partition needs a brief ACCESS
// EXCLUSIVE lock on each parent table; Drop waits at most
// Config.LockTimeout for it, backs off and retries so that other tenants'
// traffic is never queued behind it for long, and returns [ErrBusy] after
// Config.LockAttempts tries, having changed nothing.
func (m *Manager) Drop(ctx context.Context, id store.TenantID) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("drop tenant: %w", err)
	}
	var dropped []Partition
	var deleted int64
	var registered bool
	err := m.run(ctx, "drop", id, func(tx pgx.Tx) error {
		dropped, deleted = nil, 0
		ts, err := m.tables(ctx, tx)
		if err != nil {
			return err
		}
		parts, err := partitionsOf(ctx, tx, ts, id)
		if err != nil {
			return err
		}
		if len(parts) > 0 {
			var locks, drops []string
			for _, tb := range ts {
				p, ok := parts[tb.oid]
				if !ok {
					continue
				}
				locks = append(locks, "ONLY "+tb.qualified)
				if tb.defaultSQL != "" {
					locks = append(locks, "ONLY "+tb.defaultSQL)
				}
				drops = append(drops, pgx.Identifier{p.Schema, p.Name}.Sanitize())
				dropped = append(dropped, p)
			}
			if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(locks, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
				return fmt.Errorf("lock tables: %w", err)
			}
			if _, err := tx.Exec(ctx, `DROP TABLE `+strings.Join(drops, ", ")); err != nil {
				return fmt.Errorf("drop partitions: %w", err)
			}
		}
		// Whatever is left of the tenant sits in DEFAULT partitions (or in
		// partitions someone else created for it): delete it through the
		// parent. The value is inlined (it is validated) so the plan is
		// pruned to those partitions, whatever the number of tenants.
		for _, tb := range ts {
			tag, err := tx.Exec(ctx, `DELETE FROM `+tb.qualified+` WHERE partition = `+quoteLiteral(string(id)))
			if err != nil {
				return fmt.Errorf("delete leftover rows from %s: %w", tb, err)
			}
			deleted += tag.RowsAffected()
		}
		n, err := m.deleteUnpartitioned(ctx, tx, id)
		if err != nil {
			return err
		}
		deleted += n
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
	if registered || len(dropped) > 0 || deleted > 0 {
		m.log.InfoContext(ctx, "tenant dropped", "tenant_id", string(id), "was_registered", registered,
			"partitions_dropped", len(dropped), "leftover_rows_deleted", deleted)
	}
	return nil
}

// unpartitionedTables are the tables of the schema that hold tenant rows
// without being partitioned by tenant, from which Drop deletes the tenant's
// rows: the read-model snapshots table (its partition column comes with
// schema v4).
var unpartitionedTables = []string{"snapshots"}

// unpartitionedSQL finds each table of unpartitionedTables in the schema and
// tells whether it has a partition column.
const unpartitionedSQL = `
SELECT t.name, n.nspname, EXISTS (SELECT FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attname = 'partition' AND NOT a.attisdropped)
FROM unnest($2::text[]) AS t (name)
JOIN pg_namespace n ON n.nspname = coalesce(nullif($1, ''), current_schema())
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name AND c.relkind = 'r'`

// deleteUnpartitioned deletes tenant id's rows from the schema's
// unpartitionedTables. A table that does not exist is skipped; one
// without a partition column is an error (the schema predates v4).
func (m *Manager) deleteUnpartitioned(ctx context.Context, tx pgx.Tx, id store.TenantID) (int64, error) {
	rows, err := tx.Query(ctx, unpartitionedSQL, m.cfg.Schema, unpartitionedTables)
	if err != nil {
		return 0, fmt.Errorf("find unpartitioned tenant tables: %w", err)
	}
	type found struct {
		name, schema string
		ok           bool
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
		var f found
		err := r.Scan(&f.name, &f.schema, &f.ok)
		return f, err
	})
	if err != nil {
		return 0, fmt.Errorf("find unpartitioned tenant tables: %w", err)
	}
	var deleted int64
	for _, f := range tables {
		ident := pgx.Identifier{f.schema, f.name}.Sanitize()
		if !f.ok {
			return 0, fmt.Errorf("delete the tenant's rows from %s: the table has no partition column; apply the event-store migrations (schema v4)", ident)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+ident+` WHERE partition = $1`, string(id))
		if err != nil {
			return 0, fmt.Errorf("delete the tenant's rows from %s: %w", ident, err)
		}
		deleted += tag.RowsAffected()
	}
	return deleted, nil
}

// run runs fn in a transaction holding the tenant's advisory lock, with
// lock_timeout set, and retries the whole transaction when a lock could not
// be taken in time or PostgreSQL broke a deadlock by aborting it.
func (m *Manager) run(ctx context.Context, op string, id store.TenantID, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := m.attempt(ctx, id, fn)
		if err == nil {
			return nil
		}
		if !lockFailure(err) {
			return err
		}
		if attempt >= m.cfg.LockAttempts {
			return fmt.Errorf("%w: gave up after %d attempts: %w", ErrBusy, attempt, err)
		}
		m.log.DebugContext(ctx, "tenant tables busy, retrying", "tenant_id", string(id), "operation", op, "attempt", attempt, "error", err)
		if err := pause(ctx, backoff(attempt)); err != nil {
			return fmt.Errorf("%w: waiting to retry: %w", ErrBusy, err)
		}
	}
}

func (m *Manager) attempt(ctx context.Context, id store.TenantID, fn func(pgx.Tx) error) (err error) {
	tx, err := m.cfg.DB.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('troupe.tenancy:' || $1, 0))`, string(id)); err != nil {
		return fmt.Errorf("lock tenant: %w", err)
	}
	ms := fmt.Sprintf("%dms", m.cfg.LockTimeout.Milliseconds())
	if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, ms); err != nil {
		return fmt.Errorf("set lock_timeout: %w", err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// lockFailure reports whether err is a lock timeout or a deadlock abort,
// after which the transaction can simply be run again.
func lockFailure(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "55P03", "40P01": // lock_not_available, deadlock_detected
		return true
	}
	return false
}

func backoff(attempt int) time.Duration {
	d := 10 * time.Millisecond << min(attempt-1, 5) // 10ms … 320ms
	return d/2 + rand.N(d/2+1)
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// splitTableName splits "table" or "schema.table" into identifier parts.
func splitTableName(s string) ([]string, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%q: want table or schema.table", s)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%q: empty name part", s)
		}
		if len(p) > maxIdentifier {
			return nil, fmt.Errorf("%q: name part longer than %d bytes", s, maxIdentifier)
		}
		if strings.ContainsRune(p, 0) {
			return nil, fmt.Errorf("%q: contains a NUL byte", s)
		}
	}
	return parts, nil
}

// quoteLiteral quotes s as an SQL string literal. Tenant ids are validated
// before they get here; the quoting is a second line of defence.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
