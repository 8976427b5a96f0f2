package tenancy

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/store/postgres"
)

// table is a partitioned tenant table found in the catalog.
type table struct {
	oid        uint32
	schema     string
	name       string
	column     string // the partition column
	scope      string // the registry's scope column; "" for none
	lockOrder  int
	defSchema  string // the DEFAULT partition; "" when there is none
	defName    string
	qualified  string // sanitized schema.name
	defaultSQL string // sanitized default partition, "" when there is none
}

func (t table) String() string { return t.schema + "." + t.name }

// policyColumns returns the columns the tenant policy keys on.
func (t table) policyColumns() []string {
	if t.scope == "" {
		return []string{t.column}
	}
	return []string{t.column, t.scope}
}

// unlistedLockOrder is the lock order of tables that are not in the
// registry (Config.Tables, tables found by their partitioning): the
// registry's default.
const unlistedLockOrder = 1000

// discoverSQL checks the wanted tables ($2, with their partition columns
// $3) and finds the other tables of the schema partitioned by LIST
// (partition). It starts from pg_partitioned_table (a handful of rows)
// rather than pg_class (every table, partition and index), so it stays
// cheap with thousands of tenant partitions.
const discoverSQL = `
WITH wanted (oid, col) AS (SELECT DISTINCT ON (w.oid) w.oid, w.col FROM unnest($2::oid[], $3::text[]) AS w (oid, col))
SELECT c.oid, n.nspname, c.relname, coalesce(w.col, 'partition'), coalesce(dn.nspname, ''), coalesce(d.relname, ''),
       coalesce(pt.partstrat = 'l' AND pt.partnatts = 1 AND a.attname = coalesce(w.col, 'partition'), false)
FROM (SELECT oid FROM wanted UNION SELECT partrelid FROM pg_partitioned_table) AS k (oid)
LEFT JOIN wanted w ON w.oid = k.oid
JOIN pg_class c ON c.oid = k.oid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pt.partattrs[0]
LEFT JOIN pg_class d ON d.oid = pt.partdefid
LEFT JOIN pg_namespace dn ON dn.oid = d.relnamespace
WHERE w.oid IS NOT NULL
   OR (n.nspname = coalesce(nullif($1, ''), current_schema())
       AND c.relkind = 'p' AND NOT c.relispartition
       AND pt.partstrat = 'l' AND pt.partnatts = 1 AND a.attname = 'partition')`

// tables finds the partitioned tables a tenant gets partitions of, in lock
// order: the partitioned tables of the registry, the tables of
// Config.Tables, and every other table of the schema partitioned by LIST
// (partition). It also returns the registry's unpartitioned tables, whose
// tenant rows Drop deletes.
func (m *Manager) tables(ctx context.Context, q postgres.DB) (partitioned []table, unpartitioned []pgtenant.Table, err error) {
	registry, err := pgtenant.Tables(ctx, q, m.cfg.Schema)
	if err != nil {
		return nil, nil, err
	}
	oids := []uint32{}
	cols := []string{}
	order := map[uint32]int{}
	scopes := map[uint32]string{}
	for _, t := range registry {
		if !t.Partitioned {
			unpartitioned = append(unpartitioned, t)
			continue
		}
		oids = append(oids, t.OID)
		cols = append(cols, t.Column)
		order[t.OID] = t.LockOrder
		scopes[t.OID] = t.Scope
	}
	listed, err := m.listedTables(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	for _, oid := range listed {
		if _, ok := order[oid]; !ok {
			oids = append(oids, oid)
			cols = append(cols, pgtenant.DefaultColumn)
			order[oid] = unlistedLockOrder
		}
	}
	rows, err := q.Query(ctx, discoverSQL, m.cfg.Schema, oids, cols)
	if err != nil {
		return nil, nil, fmt.Errorf("find partitioned tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t table
		var ok bool
		if err := rows.Scan(&t.oid, &t.schema, &t.name, &t.column, &t.defSchema, &t.defName, &ok); err != nil {
			return nil, nil, fmt.Errorf("find partitioned tables: %w", err)
		}
		if !ok {
			return nil, nil, fmt.Errorf("%w: registered table %s (by %q)", ErrNotPartitioned,
				pgx.Identifier{t.schema, t.name}.Sanitize(), t.column)
		}
		t.qualified = pgx.Identifier{t.schema, t.name}.Sanitize()
		if t.defName != "" {
			t.defaultSQL = pgx.Identifier{t.defSchema, t.defName}.Sanitize()
		}
		t.scope = scopes[t.oid]
		t.lockOrder = unlistedLockOrder
		if o, ok := order[t.oid]; ok {
			t.lockOrder = o
		}
		partitioned = append(partitioned, t)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("find partitioned tables: %w", err)
	}
	if len(partitioned) == 0 {
		return nil, nil, fmt.Errorf("%w: no table partitioned by LIST (partition) found; are the migrations applied?", ErrNotPartitioned)
	}
	sort.Slice(partitioned, func(i, j int) bool {
		a, b := partitioned[i], partitioned[j]
		if a.lockOrder != b.lockOrder {
			return a.lockOrder < b.lockOrder
		}
		if a.schema != b.schema {
			return a.schema < b.schema
		}
		return a.name < b.name
	})
	return partitioned, unpartitioned, nil
}

// listedTables resolves Config.Tables to oids; a table that does not exist
// is an error matching ErrNotPartitioned.
func (m *Manager) listedTables(ctx context.Context, q postgres.DB) ([]uint32, error) {
	if len(m.cfg.Tables) == 0 {
		return nil, nil
	}
	names := make([]string, len(m.cfg.Tables))
	for i, t := range m.cfg.Tables {
		parts, _ := pgtenant.SplitTableName(t) // validated by NewManager
		names[i] = pgx.Identifier(parts).Sanitize()
	}
	rows, err := q.Query(ctx, `SELECT x.name, to_regclass(x.name)::oid FROM unnest($1::text[]) AS x(name)`, names)
	if err != nil {
		return nil, fmt.Errorf("resolve registered tables: %w", err)
	}
	defer rows.Close()
	var oids []uint32
	var missing []string
	for rows.Next() {
		var name string
		var oid *uint32
		if err := rows.Scan(&name, &oid); err != nil {
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
	return oids, nil
}

// Tables returns the partitioned tables every tenant gets a partition of,
// schema-qualified, in the order lifecycle operations lock them.
func (m *Manager) Tables(ctx context.Context) ([]string, error) {
	ts, _, err := m.tables(ctx, m.db)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out, nil
}

// deleteUnpartitioned deletes tenant id's rows from the registry's
// unpartitioned tables (the read-model snapshots table, say). A table
// without its partition column is an error (the schema predates v4).
func deleteUnpartitioned(ctx context.Context, tx pgx.Tx, tables []pgtenant.Table, id string) (int64, error) {
	var deleted int64
	for _, t := range tables {
		ident := t.Qualified()
		if !t.HasColumn {
			return 0, fmt.Errorf("delete the tenant's rows from %s: the table has no column %q; apply the event-store migrations", ident, t.Column)
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+ident+` WHERE `+pgx.Identifier{t.Column}.Sanitize()+` = $1`, id)
		if err != nil {
			return 0, fmt.Errorf("delete the tenant's rows from %s: %w", ident, err)
		}
		deleted += tag.RowsAffected()
	}
	return deleted, nil
}
