// Package pgtenant holds what store/postgres (row-level security) and
// tenancy (the tenant lifecycle) share about tenant tables in PostgreSQL:
// the registry of tenant tables that the migrations keep in the database,
// the setting that scopes a transaction to a tenant, and the statements of
// the tenant policy.
package pgtenant

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// SettingName is the PostgreSQL setting that scopes a transaction to one
// tenant under row-level security.
const SettingName = "troupe.tenant"

// PolicyName is the name of the row-level security policy on each tenant
// table and partition.
const PolicyName = "troupe_tenant_isolation"

// DroppedConstraint names the CHECK (false) constraint of a dropped
// tenant's tombstone partitions: the partitions that tenancy.Manager.Drop
// attaches for the tenant's value in place of the dropped ones, so that a
// later write of the tenant fails (SQLSTATE 23514, check_violation, with
// this constraint name) instead of landing in a DEFAULT partition.
const DroppedConstraint = "troupe_tenant_dropped"

// RegistryTable is the registry of tenant tables (migration 005): one row
// per table holding tenants' rows, with its partition column, whether it is
// partitioned by tenant, its lock order, whether row-level security
// covers it by default and (schema v6) its scope column.
const RegistryTable = "tenant_tables"

// DefaultColumn is the partition column of tables not in the registry.
const DefaultColumn = "partition"

// MaxIdentifier is PostgreSQL's identifier limit (NAMEDATALEN-1), in bytes.
const MaxIdentifier = 63

// Table is one registered tenant table that exists.
type Table struct {
	OID         uint32
	Schema      string
	Name        string
	Column      string // the partition column
	Partitioned bool   // LIST-partitioned by Column; otherwise rows are deleted by Column
	LockOrder   int
	RLS         bool // row-level security covers it by default
	HasColumn   bool // Column exists in the table
	// Scope is a second column the tenant policy requires to equal the
	// tenant ("" for none): the partition a projection is limited to, say,
	// so that rows of projections over every partition ('*') stay the
	// owner's.
	Scope string
}

// PolicyColumns returns the columns the tenant policy on the table keys on:
// Column, then Scope when set.
func (t Table) PolicyColumns() []string {
	if t.Scope == "" {
		return []string{t.Column}
	}
	return []string{t.Column, t.Scope}
}

// Qualified returns the table's sanitized, schema-qualified name.
func (t Table) Qualified() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// registrySQL lists the registered tables that exist, in lock order. A row
// whose table was dropped (its oid no longer in pg_class) is skipped. The
// scope column came with schema v6; reading it through to_jsonb keeps the
// query valid on a registry of v5.
const registrySQL = `
SELECT c.oid, n.nspname, c.relname, r.partition_column::text, r.partitioned, r.lock_order, r.row_level_security,
       EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = r.partition_column AND NOT a.attisdropped),
       coalesce(to_jsonb(r) ->> 'scope_column', '')
FROM %s r
JOIN pg_class c ON c.oid = r.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY r.lock_order, n.nspname, c.relname`

// Registry returns the sanitized name of the registry in schema ("" means
// the connection's current schema).
func Registry(schema string) string {
	if schema == "" {
		return pgx.Identifier{RegistryTable}.Sanitize()
	}
	return pgx.Identifier{schema, RegistryTable}.Sanitize()
}

// Tables returns the registered tenant tables of the registry in schema
// ("" for the current schema), in lock order.
func Tables(ctx context.Context, q Querier, schema string) ([]Table, error) {
	reg := Registry(schema)
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, reg).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look for the tenant table registry %s: %w", reg, err)
	}
	if !exists {
		return nil, fmt.Errorf("the tenant table registry %s does not exist; apply the event-store migrations (schema v5)", reg)
	}
	rows, err := q.Query(ctx, fmt.Sprintf(registrySQL, reg))
	if err != nil {
		return nil, fmt.Errorf("read the tenant table registry %s: %w", reg, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.OID, &t.Schema, &t.Name, &t.Column, &t.Partitioned, &t.LockOrder, &t.RLS, &t.HasColumn, &t.Scope)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the tenant table registry %s: %w", reg, err)
	}
	return out, nil
}

// PolicyUsing is the row filter on columns: rows whose every one of the
// columns holds the tenant the transaction is scoped to. With no tenant
// set, current_setting(…, true) is NULL (or the empty string after an
// earlier transaction set it), which matches no row: unscoped access fails
// closed.
func PolicyUsing(columns ...string) string {
	conds := make([]string, len(columns))
	for i, c := range columns {
		conds[i] = pgx.Identifier{c}.Sanitize() + ` = current_setting('` + SettingName + `', true)`
	}
	return strings.Join(conds, ` AND `)
}

// PolicyStatements enables row-level security on the (sanitized) relation
// rel and (re)creates the tenant policy on it, keyed by columns (see
// [PolicyUsing]).
func PolicyStatements(rel string, columns []string, force bool) []string {
	stmts := []string{`ALTER TABLE ` + rel + ` ENABLE ROW LEVEL SECURITY`}
	if force {
		stmts = append(stmts, `ALTER TABLE `+rel+` FORCE ROW LEVEL SECURITY`)
	}
	using := PolicyUsing(columns...)
	return append(stmts,
		`DROP POLICY IF EXISTS `+PolicyName+` ON `+rel,
		`CREATE POLICY `+PolicyName+` ON `+rel+` USING (`+using+`) WITH CHECK (`+using+`)`,
	)
}

// SplitTableName splits "table" or "schema.table" into identifier parts.
func SplitTableName(s string) ([]string, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%q: want table or schema.table", s)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%q: empty name part", s)
		}
		if len(p) > MaxIdentifier {
			return nil, fmt.Errorf("%q: name part longer than %d bytes", s, MaxIdentifier)
		}
		if strings.ContainsRune(p, 0) {
			return nil, fmt.Errorf("%q: contains a NUL byte", s)
		}
	}
	return parts, nil
}
