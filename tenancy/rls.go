package tenancy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/store"
)

// SettingName is the PostgreSQL setting that scopes a transaction to one
// tenant under row-level security.
const SettingName = "troupe.tenant"

// PolicyName is the name of the row-level security policy
// [EnableRowLevelSecurity] creates on each table and partition.
const PolicyName = "troupe_tenant_isolation"

// SetTenantSQL scopes the current transaction to the tenant given as $1.
// [SetTenant] runs it; a store that sends its statements as a pgx.Batch
// (one implicit transaction) can queue it as the batch's first statement
// instead, saving a round trip.
const SetTenantSQL = "SELECT set_config('" + SettingName + "', $1, true)"

// policyUsing is the row filter: rows of the tenant the transaction is
// scoped to. With no tenant set, current_setting(…, true) is NULL (or the
// empty string after an earlier transaction set it), which matches no row:
// unscoped access fails closed.
const policyUsing = "partition = current_setting('" + SettingName + "', true)"

// EventTables returns the event-store tables that row-level security
// always covers: streams, messages, subscriptions and aggregate_snapshots.
func EventTables() []string {
	return []string{"streams", "messages", "subscriptions", "aggregate_snapshots"}
}

// SetTenant scopes tx to tenant id for row-level security: until tx ends,
// the policies created by [EnableRowLevelSecurity] let it see and write
// only rows whose partition is id. It validates id first (an invalid id
// matches [ErrInvalidTenantID] and nothing is sent).
func SetTenant(ctx context.Context, tx pgx.Tx, id store.TenantID) error {
	if err := id.Validate(); err != nil {
		return fmt.Errorf("set tenant: %w", err)
	}
	if _, err := tx.Exec(ctx, SetTenantSQL, string(id)); err != nil {
		return fmt.Errorf("set tenant %q: %w", id, err)
	}
	return nil
}

// EnableRowLevelSecurity turns on row-level security, keyed by the
// tenant a transaction is scoped to with [SetTenant], on the event tables
// ([EventTables]) and on the extra tables given (read models that opt in;
// "table" or "schema.table", each needing a text column "partition").
//
// Each table and every one of its existing partitions (queries naming a
// partition directly are filtered too) gets RLS enabled and the policy
// [PolicyName]: a row is visible and writable only when its partition
// equals the transaction's tenant. Partitions created later by
// [Manager.Create] get the same. Re-running it is harmless.
//
// Table owners and roles with BYPASSRLS are not filtered: connect the
// application as a separate, non-owner role for the policies to apply, and
// run migrations, tenant lifecycle and cross-tenant work (projections
// reading every tenant) as the owner. It runs in one transaction and takes
// ACCESS EXCLUSIVE locks on the tables: run it at deploy time.
func EnableRowLevelSecurity(ctx context.Context, db DB, tables ...string) error {
	return alterRowLevelSecurity(ctx, db, true, tables)
}

// DisableRowLevelSecurity undoes [EnableRowLevelSecurity] on the event
// tables and the given tables and all their partitions.
func DisableRowLevelSecurity(ctx context.Context, db DB, tables ...string) error {
	return alterRowLevelSecurity(ctx, db, false, tables)
}

func alterRowLevelSecurity(ctx context.Context, db DB, enable bool, tables []string) (err error) {
	what := "disable row-level security"
	if enable {
		what = "enable row-level security"
	}
	names := EventTables()
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	for _, t := range tables {
		if !seen[t] {
			seen[t] = true
			names = append(names, t)
		}
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
	b := &pgx.Batch{}
	for _, name := range names {
		parts, err := splitTableName(name)
		if err != nil {
			return fmt.Errorf("%s: table %w", what, err)
		}
		ident := pgx.Identifier(parts).Sanitize()
		var oid *uint32
		var hasColumn bool
		err = tx.QueryRow(ctx, `SELECT to_regclass($1)::oid, EXISTS (SELECT 1 FROM pg_attribute
			WHERE attrelid = to_regclass($1) AND attname = 'partition' AND NOT attisdropped)`, ident).Scan(&oid, &hasColumn)
		if err != nil {
			return fmt.Errorf("%s: look up table %s: %w", what, ident, err)
		}
		if oid == nil {
			return fmt.Errorf("%s: table %s does not exist", what, ident)
		}
		if !hasColumn {
			return fmt.Errorf("%s: table %s has no column \"partition\"", what, ident)
		}
		rows, err := tx.Query(ctx, `SELECT n.nspname, c.relname FROM pg_partition_tree($1::oid::regclass) t
			JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY t.level, c.relname`, *oid)
		if err != nil {
			return fmt.Errorf("%s: list partitions of %s: %w", what, ident, err)
		}
		rels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var schema, rel string
			err := r.Scan(&schema, &rel)
			return pgx.Identifier{schema, rel}.Sanitize(), err
		})
		if err != nil {
			return fmt.Errorf("%s: list partitions of %s: %w", what, ident, err)
		}
		for _, rel := range rels {
			var stmts []string
			if enable {
				stmts = policyStatements(rel, false)
			} else {
				stmts = []string{
					`DROP POLICY IF EXISTS ` + PolicyName + ` ON ` + rel,
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

// policyStatements enables row-level security on the (sanitized) relation
// rel and (re)creates the tenant policy on it.
func policyStatements(rel string, force bool) []string {
	stmts := []string{`ALTER TABLE ` + rel + ` ENABLE ROW LEVEL SECURITY`}
	if force {
		stmts = append(stmts, `ALTER TABLE `+rel+` FORCE ROW LEVEL SECURITY`)
	}
	return append(stmts,
		`DROP POLICY IF EXISTS `+PolicyName+` ON `+rel,
		`CREATE POLICY `+PolicyName+` ON `+rel+` USING (`+policyUsing+`) WITH CHECK (`+policyUsing+`)`,
	)
}
