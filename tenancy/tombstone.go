package tenancy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/internal/pgtenant"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// A dropped tenant keeps, in every partitioned tenant table, a tombstone:
// an empty partition for the tenant's value whose CHECK (false) constraint
// (pgtenant.DroppedConstraint) rejects every row. Without it a write of the
// tenant made after the drop - by a cached actor of another process, a
// command in flight, a projection that read the tenant's events before the
// drop - would land in the DEFAULT partition and bring the tenant's data
// back. With it such a write fails, and store/postgres reports it as
// store.ErrTenantDropped; reads find nothing. The guard costs nothing per
// write: PostgreSQL routes the row to the tombstone as it would to any
// partition. Create removes the tombstones before it creates partitions.

// tombstonesSQL returns, for each parent, the relation named
// tombstoneName(parent, id) when it is a partition of that parent for
// exactly the tenant's value and carries the tombstone constraint.
const tombstonesSQL = `
SELECT t.parent, t.schema, t.name
FROM unnest($1::oid[], $2::text[], $3::text[]) AS t (parent, schema, name)
JOIN pg_namespace n ON n.nspname = t.schema
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = t.parent
WHERE pg_get_expr(c.relpartbound, c.oid) = $4
  AND EXISTS (SELECT FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.conname = $5)`

// tombstonesOf returns, per parent oid, tenant id's tombstone partition.
func tombstonesOf(ctx context.Context, q postgres.DB, tables []table, id store.TenantID) (map[uint32]Partition, error) {
	oids := make([]uint32, len(tables))
	schemas := make([]string, len(tables))
	names := make([]string, len(tables))
	parents := make(map[uint32]string, len(tables))
	for i, t := range tables {
		oids[i], schemas[i], names[i] = t.oid, t.schema, tombstoneName(t.name, string(id))
		parents[t.oid] = t.name
	}
	bound := "FOR VALUES IN (" + quoteLiteral(string(id)) + ")"
	rows, err := q.Query(ctx, tombstonesSQL, oids, schemas, names, bound, pgtenant.DroppedConstraint)
	if err != nil {
		return nil, fmt.Errorf("find tombstones of tenant %q: %w", id, err)
	}
	defer rows.Close()
	out := make(map[uint32]Partition)
	for rows.Next() {
		var parent uint32
		var p Partition
		if err := rows.Scan(&parent, &p.Schema, &p.Name); err != nil {
			return nil, fmt.Errorf("find tombstones of tenant %q: %w", id, err)
		}
		p.Table = parents[parent]
		out[parent] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find tombstones of tenant %q: %w", id, err)
	}
	return out, nil
}

// createTombstones creates tenant id's tombstone partition of each table.
// The caller holds ACCESS EXCLUSIVE locks on the tables and their DEFAULT
// partitions and has deleted the tenant's rows from them (PostgreSQL
// checks that the DEFAULT partition holds none of the value). A table
// where a partition that Troupe did not create covers the value gets no
// tombstone (the value can't have two partitions); it is returned in
// skipped. Each tombstone gets the tenant policy when its parent has
// row-level security, like a tenant partition.
func createTombstones(ctx context.Context, tx pgx.Tx, tables []table, id store.TenantID) (made int, skipped []string, err error) {
	if len(tables) == 0 {
		return 0, nil, nil
	}
	oids := make([]uint32, len(tables))
	for i, tb := range tables {
		oids[i] = tb.oid
	}
	type flags struct{ rls, force bool }
	rls := make(map[uint32]flags, len(tables))
	rows, err := tx.Query(ctx, `SELECT oid, relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = ANY($1::oid[])`, oids)
	if err != nil {
		return 0, nil, fmt.Errorf("inspect tables: %w", err)
	}
	for rows.Next() {
		var oid uint32
		var f flags
		if err := rows.Scan(&oid, &f.rls, &f.force); err != nil {
			rows.Close()
			return 0, nil, fmt.Errorf("inspect tables: %w", err)
		}
		rls[oid] = f
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("inspect tables: %w", err)
	}

	value := quoteLiteral(string(id))
	for _, tb := range tables {
		ident := pgx.Identifier{tb.schema, tombstoneName(tb.name, string(id))}.Sanitize()
		stmts := []string{
			`SAVEPOINT troupe_tombstone`,
			`CREATE TABLE ` + ident + ` PARTITION OF ` + tb.qualified +
				` (CONSTRAINT ` + pgtenant.DroppedConstraint + ` CHECK (false)) FOR VALUES IN (` + value + `)`,
		}
		if f := rls[tb.oid]; f.rls {
			stmts = append(stmts, pgtenant.PolicyStatements(ident, tb.policyColumns(), f.force)...)
		}
		stmts = append(stmts, `RELEASE SAVEPOINT troupe_tombstone`)
		_, err := tx.Exec(ctx, strings.Join(stmts, ";"))
		if err == nil {
			made++
			continue
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42P17" { // invalid_object_definition: overlapping bound
			return 0, nil, fmt.Errorf("create tombstone partition of %s: %w", tb, err)
		}
		if _, rerr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT troupe_tombstone; RELEASE SAVEPOINT troupe_tombstone`); rerr != nil {
			return 0, nil, fmt.Errorf("create tombstone partition of %s: %w (rolling back: %w)", tb, err, rerr)
		}
		skipped = append(skipped, tb.String())
	}
	return made, skipped, nil
}

// dropTombstones drops tenant id's tombstone partitions (found by
// tombstonesOf) of tables, locking the parents first in lock order.
func dropTombstones(ctx context.Context, tx pgx.Tx, tables []table, tombs map[uint32]Partition) error {
	if len(tombs) == 0 {
		return nil
	}
	var locks, drops []string
	for _, tb := range tables {
		p, ok := tombs[tb.oid]
		if !ok {
			continue
		}
		locks = append(locks, "ONLY "+tb.qualified)
		drops = append(drops, pgx.Identifier{p.Schema, p.Name}.Sanitize())
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(locks, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("lock tables: %w", err)
	}
	if _, err := tx.Exec(ctx, `DROP TABLE `+strings.Join(drops, ", ")); err != nil {
		return fmt.Errorf("drop tombstone partitions: %w", err)
	}
	return nil
}
