package postgres

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/internal/pgtest"
)

// partitionRef matches a plan line naming a partition of streams or
// messages (streams_default, messages_t_…).
var partitionRef = regexp.MustCompile(`\bon (streams|messages)_\w+`)

// The pool's append statements, even as generic plans of prepared
// statements, name no partition: PostgreSQL routes their writes to the
// tenant's partition at run time, so they lock only that one, whatever the
// number of tenants. The guarded statements used in transactions read
// messages by partition, and their generic plans list every partition (the
// check below would see a statement that does so).
func TestPoolAppendPlansNameNoPartition(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	require.NoError(t, Migrate(ctx, pool))
	for _, id := range []string{"tenant-a", "tenant-b", "tenant-c"} {
		require.NoError(t, createTenant(ctx, pool, id))
	}
	genericPlan := func(sql, last string) string {
		t.Helper()
		var plan []string
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `PREPARE append_plan AS `+sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			defer func() { _, _ = tx.Exec(context.WithoutCancel(ctx), `DEALLOCATE append_plan`) }()
			// EXPLAIN takes no bind parameters: the values are literals.
			rows, err := tx.Query(ctx, `EXPLAIN EXECUTE append_plan ('s', 'tenant-b', 1, ARRAY['m-1'], ARRAY['E'], ARRAY['{}'], ARRAY['{}'], ARRAY['1'], `+last+`)`)
			if err != nil {
				return err
			}
			plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		require.NoError(t, err)
		return strings.Join(plan, "\n")
	}

	for name, c := range map[string]struct {
		sql  string
		last string
	}{
		"any":           {appendAnyPoolSQL, "'type'"},
		"new":           {appendNewPoolSQL, "'type'"},
		"exact":         {appendExistingPoolSQL, "3, 0"},
		"stream exists": {appendExistingPoolSQL, "NULL, 0"},
		"incarnation":   {appendExistingPoolSQL, "3, 42"},
	} {
		plan := genericPlan(c.sql, c.last)
		require.Contains(t, plan, "Insert on messages", name)
		require.NotRegexp(t, partitionRef, plan, "%s: the generic plan of the pool's statement names partitions:\n%s", name, plan)
	}
	// So does the statement of a run of parts (append_multi.go), with a
	// notification or without.
	for name, sql := range map[string]string{"run": appendMultiSQL, "quiet run": appendMultiQuietSQL} {
		var plan []string
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `PREPARE run_plan AS `+sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			defer func() { _, _ = tx.Exec(context.WithoutCancel(ctx), `DEALLOCATE run_plan`) }()
			rows, err := tx.Query(ctx, `EXPLAIN EXECUTE run_plan (ARRAY['s', 't'], ARRAY['tenant-b', 'tenant-c'], ARRAY[1, 1],
    ARRAY[3, NULL]::bigint[], ARRAY[0, 42], ARRAY[1, 2], ARRAY[1, 1], ARRAY['m-1', 'm-2'], ARRAY['E', 'E'],
    ARRAY['{}', '{}'], ARRAY['{}', '{}'], ARRAY['1', '1'])`)
			if err != nil {
				return err
			}
			plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		require.NoError(t, err)
		joined := strings.Join(plan, "\n")
		require.Contains(t, joined, "Insert on messages", name)
		require.NotRegexp(t, partitionRef, joined, "%s: the generic plan names partitions:\n%s", name, joined)
	}
	// The check sees a statement that reads by partition.
	plan := genericPlan(appendExactSQL, "3, 0")
	require.Regexp(t, partitionRef, plan)
	require.Contains(t, plan, "streams_t_tenant_0a", "another tenant's partition is in the plan")
}
