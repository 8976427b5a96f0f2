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
// streams, messages, subscriptions and aggregate_snapshots, plus whatever an
// application registered) and on the extra tables given (read models that
// opt in; "table" or "schema.table", each needing a text column
// "partition").
//
// Each table and every one of its existing partitions (queries naming a
// partition directly are filtered too) gets RLS enabled and the policy
// [TenantPolicyName]: a row is visible and writable only when its partition
// column equals the transaction's tenant. Partitions created later by the
// tenancy package's Manager get the same. Re-running it is harmless.
//
// Table owners and roles with BYPASSRLS are not filtered: connect the
// application as a separate, non-owner role for the policies to apply, and
// run migrations, tenant lifecycle and cross-tenant work (projections
// reading every tenant) as the owner. It runs in one transaction (a
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
// sanitized name and its partition column.
type rlsTable struct{ ident, column string }

func alterRowLevelSecurity(ctx context.Context, db DB, enable bool, tables []string) (err error) {
	what := "disable row-level security"
	if enable {
		what = "enable row-level security"
	}
	if isNil(db) {
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
			targets = append(targets, rlsTable{ident: t.Qualified(), column: t.Column})
		}
	}
	for _, name := range tables {
		parts, err := pgtenant.SplitTableName(name)
		if err != nil {
			return fmt.Errorf("%s: table %w", what, err)
		}
		targets = append(targets, rlsTable{ident: pgx.Identifier(parts).Sanitize(), column: pgtenant.DefaultColumn})
	}
	b := &pgx.Batch{}
	done := map[uint32]bool{}
	for _, t := range targets {
		var oid *uint32
		var hasColumn bool
		err = tx.QueryRow(ctx, `SELECT to_regclass($1)::oid, EXISTS (SELECT 1 FROM pg_attribute
			WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped)`, t.ident, t.column).Scan(&oid, &hasColumn)
		if err != nil {
			return fmt.Errorf("%s: look up table %s: %w", what, t.ident, err)
		}
		if oid == nil {
			return fmt.Errorf("%s: table %s does not exist", what, t.ident)
		}
		if !hasColumn {
			return fmt.Errorf("%s: table %s has no column %q", what, t.ident, t.column)
		}
		if done[*oid] {
			continue
		}
		done[*oid] = true
		rows, err := tx.Query(ctx, `SELECT n.nspname, c.relname FROM pg_partition_tree($1::oid::regclass) t
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
				stmts = pgtenant.PolicyStatements(rel, t.column, false)
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
