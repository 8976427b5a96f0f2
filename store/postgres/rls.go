package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/store"
)

// TenantSettingName is the PostgreSQL setting that scopes a transaction to
// one tenant under row-level security.
const TenantSettingName = pgtenant.SettingName

// TenantPolicyName is the name of the row-level security policy
// [EnableRowLevelSecurity] creates on each table and partition.
const TenantPolicyName = pgtenant.PolicyName

// SetTenantSQL scopes the current transaction to the tenant given as $1.
// [SetTenant] runs it; a store that sends its statements as a pgx.Batch
// (one implicit transaction) can queue it as the batch's first statement
// instead, saving a round trip.
const SetTenantSQL = "SELECT set_config('" + TenantSettingName + "', $1, true)"

// SetTenant scopes tx to tenant id for row-level security: until tx ends,
// the policies created by [EnableRowLevelSecurity] let it see and write
// only rows whose partition is id. It validates id first (an invalid id
// matches [store.ErrInvalidTenantID] and nothing is sent).
func SetTenant(ctx context.Context, tx pgx.Tx, id store.TenantID) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("set tenant: %w", err)
	}
	if _, err := tx.Exec(ctx, SetTenantSQL, string(id)); err != nil {
		return fmt.Errorf("set tenant %q: %w", id, err)
	}
	return nil
}

// EnableRowLevelSecurity turns on row-level security, keyed by the tenant a
// transaction is scoped to with [SetTenant], on the tenant tables registered
// for it in the database (the tenant_tables rows with row_level_security:
// since schema v6 every table of the migrations that holds tenants' rows —
// streams, messages, aggregate_snapshots, subscriptions,
// projection_dead_letters, projection_status,
// projection_stream_checkpoints and the read-model snapshots table — plus
// whatever an application registered) and on the extra tables given (read
// models that opt in; "table" or "schema.table", each needing a text column
// "partition").
//
// Each table and every one of its existing partitions (queries naming a
// partition directly are filtered too) gets RLS enabled and the policy
// [TenantPolicyName]: a row is visible and writable only when its partition
// column (and its registered scope column, if any) equals the
// transaction's tenant. Rows of projections over every partition (scope or
// partition '*') are therefore visible to no tenant. Partitions created
// later by the tenancy package's Manager get the same. Re-running it is
// harmless. [UnprotectedTenantTables] lists what it leaves uncovered.
//
// Table owners and roles with BYPASSRLS are not filtered: connect the
// application as a separate, non-owner role for the policies to apply, and
// run migrations, tenant lifecycle and the projection package's runtimes
// (projections, consumers and the per-stream runner, which write
// checkpoints, statuses and dead letters before or across tenants) as the
// owner. It runs in one transaction (a
// savepoint when db is a transaction) and takes ACCESS EXCLUSIVE locks on
// the tables: run it at deploy time, after [Migrate].
func EnableRowLevelSecurity(ctx context.Context, db DB, tables ...string) error {
	return alterRowLevelSecurity(ctx, db, true, tables)
}

// DisableRowLevelSecurity undoes [EnableRowLevelSecurity] on the registered
// tables and the given tables and all their partitions.
func DisableRowLevelSecurity(ctx context.Context, db DB, tables ...string) error {
	return alterRowLevelSecurity(ctx, db, false, tables)
}

// rlsTable is a table row-level security is turned on or off for: a
// sanitized name and the columns its policy keys on (the partition column,
// then the scope column if any).
type rlsTable struct {
	ident   string
	columns []string
}

func alterRowLevelSecurity(ctx context.Context, db DB, enable bool, tables []string) (err error) {
	what := "disable row-level security"
	if enable {
		what = "enable row-level security"
	}
	if IsNil(db) {
		return fmt.Errorf("%s: db is nil", what)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: begin transaction: %w", what, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(ctx)
		}
	}()
	registered, err := pgtenant.Tables(ctx, tx, "")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var targets []rlsTable
	seen := map[string]bool{}
	for _, t := range registered {
		if t.RLS && !seen[t.Qualified()] {
			seen[t.Qualified()] = true
			targets = append(targets, rlsTable{ident: t.Qualified(), columns: t.PolicyColumns()})
		}
	}
	for _, name := range tables {
		parts, err := pgtenant.SplitTableName(name)
		if err != nil {
			return fmt.Errorf("%s: table %w", what, err)
		}
		targets = append(targets, rlsTable{ident: pgx.Identifier(parts).Sanitize(), columns: []string{pgtenant.DefaultColumn}})
	}
	b := &pgx.Batch{}
	done := map[uint32]bool{}
	for _, t := range targets {
		var oid *uint32
		var missing []string
		err = tx.QueryRow(ctx, `SELECT to_regclass($1)::oid, array(SELECT c FROM unnest($2::text[]) AS c WHERE NOT EXISTS
			(SELECT FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = c AND NOT attisdropped))`,
			t.ident, t.columns).Scan(&oid, &missing)
		if err != nil {
			return fmt.Errorf("%s: look up table %s: %w", what, t.ident, err)
		}
		if oid == nil {
			return fmt.Errorf("%s: table %s does not exist", what, t.ident)
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: table %s has no column %q", what, t.ident, missing[0])
		}
		if done[*oid] {
			continue
		}
		done[*oid] = true
		// pg_partition_tree returns nothing for a table that is not
		// partitioned: the table itself is added.
		rows, err := tx.Query(ctx, `SELECT n.nspname, c.relname FROM (SELECT relid, level FROM pg_partition_tree($1::oid::regclass)
			UNION SELECT $1::oid::regclass, 0) t
			JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY t.level, c.relname`, *oid)
		if err != nil {
			return fmt.Errorf("%s: list partitions of %s: %w", what, t.ident, err)
		}
		rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var schema, rel string
			err := r.Scan(&schema, &rel)
			return pgx.Identifier{schema, rel}.Sanitize(), err
		})
		if err != nil {
			return fmt.Errorf("%s: list partitions of %s: %w", what, t.ident, err)
		}
		for _, rel := range rels {
			var stmts []string
			if enable {
				stmts = pgtenant.PolicyStatements(rel, t.columns, false)
			} else {
				stmts = []string{
					`DROP POLICY IF EXISTS ` + TenantPolicyName + ` ON ` + rel,
					`ALTER TABLE ` + rel + ` NO FORCE ROW LEVEL SECURITY`,
					`ALTER TABLE ` + rel + ` DISABLE ROW LEVEL SECURITY`,
				}
			}
			for _, s := range stmts {
				b.Queue(s)
			}
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: commit: %w", what, err)
	}
	return nil
}

// UnprotectedTable is a table holding tenants' rows that row-level security
// does not cover: see [UnprotectedTenantTables].
type UnprotectedTable struct {
	Schema string
	Name   string
	// Column is the column holding the row's tenant.
	Column string
	// RowLevelSecurity reports whether row-level security is enabled on
	// the table.
	RowLevelSecurity bool
	// Policy reports whether the table has the policy [TenantPolicyName].
	Policy bool
}

func (t UnprotectedTable) String() string {
	what := "row-level security is off and no policy " + TenantPolicyName
	switch {
	case t.RowLevelSecurity:
		what = "no policy " + TenantPolicyName
	case t.Policy:
		what = "policy " + TenantPolicyName + " exists but row-level security is off"
	}
	return fmt.Sprintf("%s.%s (tenant column %q): %s", t.Schema, t.Name, t.Column, what)
}

// unprotectedSQL finds the tables holding tenants' rows, from the catalogue:
// every table and partition of the current schema with a column named
// "partition", every table registered in tenant_tables (by its partition
// column, whatever its schema or row_level_security flag), and every
// partition of those; it returns those without row-level security or
// without the tenant policy.
const unprotectedSQL = `
WITH RECURSIVE roots (oid, col) AS (
    SELECT c.oid, a.attname::text FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'partition' AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
    UNION
    SELECT r.relation, r.partition_column::text FROM unnest($1::oid[], $2::text[]) AS r (relation, partition_column)
),
tree (oid, col) AS (
    SELECT oid, col FROM roots
    UNION
    SELECT i.inhrelid, t.col FROM tree t JOIN pg_inherits i ON i.inhparent = t.oid
)
SELECT DISTINCT ON (n.nspname, c.relname) n.nspname, c.relname, t.col, c.relrowsecurity,
       EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $3)
FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT (c.relrowsecurity AND EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $3))
ORDER BY n.nspname, c.relname, t.col`

// UnprotectedTenantTables lists, from the PostgreSQL catalogue, the tables
// that hold tenants' rows and that row-level security does not cover:
// tables of the current schema with a column named "partition" and tables
// registered in tenant_tables (with their partition column), and every
// partition of either, that lack row-level security or the policy
// [TenantPolicyName]. It changes nothing.
//
// After [Migrate], the tenant lifecycle and [EnableRowLevelSecurity] (with
// the read models that opt in), the list should be empty: run it in a test
// of your deployment, so that a new table with a partition column that
// nobody registered or opted in is named instead of silently left
// readable across tenants. Before EnableRowLevelSecurity it lists every
// tenant table.
func UnprotectedTenantTables(ctx context.Context, db DB) ([]UnprotectedTable, error) {
	if IsNil(db) {
		return nil, fmt.Errorf("list unprotected tenant tables: db is nil")
	}
	registered, err := pgtenant.Tables(ctx, db, "")
	if err != nil {
		return nil, fmt.Errorf("list unprotected tenant tables: %w", err)
	}
	oids := make([]uint32, len(registered))
	cols := make([]string, len(registered))
	for i, t := range registered {
		oids[i], cols[i] = t.OID, t.Column
	}
	rows, err := db.Query(ctx, unprotectedSQL, oids, cols, TenantPolicyName)
	if err != nil {
		return nil, fmt.Errorf("list unprotected tenant tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UnprotectedTable, error) {
		var t UnprotectedTable
		err := r.Scan(&t.Schema, &t.Name, &t.Column, &t.RowLevelSecurity, &t.Policy)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list unprotected tenant tables: %w", err)
	}
	return out, nil
}
