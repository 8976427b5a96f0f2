package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/telemetry"
)

// tracedPool returns a pool on a fresh database whose connections trace
// through a PgxTracer built from cfg (TracerProvider filled in from r).
func tracedPool(t *testing.T, r *rig, cfg telemetry.PgxConfig) *pgxpool.Pool {
	t.Helper()
	pc, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	require.NoError(t, err)
	cfg.TracerProvider = r.tp
	pc.ConnConfig.Tracer = telemetry.NewPgxTracer(&cfg)
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// secret is a bind value that must never reach a span.
const secret = "s3cr3t-bind-value"

// noSecret fails when any attribute or event attribute of s holds secret.
func noSecret(t *testing.T, s tracetest.SpanStub) {
	t.Helper()
	for _, kv := range s.Attributes {
		assert.NotContains(t, kv.Value.Emit(), secret, "%s on %s", kv.Key, s.Name)
	}
	for _, e := range s.Events {
		for _, kv := range e.Attributes {
			assert.NotContains(t, kv.Value.Emit(), secret, "%s on event %s of %s", kv.Key, e.Name, s.Name)
		}
	}
}

func TestPgxTracerCreatesClientSpansWithoutBindValues(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pool := tracedPool(t, r, telemetry.PgxConfig{})
	ctx, parent := r.tel.Tracer().Start(context.Background(), "append cart")

	_, err := pool.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, name text)")
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "-- name: insert_item :exec\nINSERT INTO items (id, name) VALUES ($1, $2)", 1, secret)
	require.NoError(t, err)
	var got string
	require.NoError(t, pool.QueryRow(ctx, "SELECT name FROM items WHERE name = $1", secret).Scan(&got))
	_, err = pool.Exec(ctx, "INSERT INTO items (id, name) VALUES ($1, $2)", 1, secret)
	require.Error(t, err, "duplicate key")
	parent.End()

	var db []tracetest.SpanStub
	for _, s := range r.spans.GetSpans() {
		if s.SpanKind == trace.SpanKindClient {
			db = append(db, s)
		}
	}
	require.NotEmpty(t, db)
	names := map[string]int{}
	ids := map[trace.SpanID]string{}
	for _, s := range db {
		ids[s.SpanContext.SpanID()] = s.Name
	}
	for _, s := range db {
		names[s.Name]++
		noSecret(t, s)
		if s.Name == "PREPARE" {
			// pgx prepares each new SQL for its statement cache inside the query
			assert.NotEqual(t, "PREPARE", ids[s.Parent.SpanID()], "PREPARE hangs off its query")
			assert.Contains(t, ids, s.Parent.SpanID(), "PREPARE hangs off its query")
		} else {
			assert.Equal(t, parent.SpanContext().SpanID(), s.Parent.SpanID(), "%s is a child of the span in ctx", s.Name)
		}
		a := attrs(s.Attributes)
		assert.Equal(t, "postgresql", a[telemetry.AttrDBSystem].AsString())
		assert.Equal(t, "postgresql", a[telemetry.AttrDBSystemName].AsString())
		assert.NotEmpty(t, a[telemetry.AttrDBNamespace].AsString())
		assert.NotEmpty(t, a[telemetry.AttrServerAddress].AsString())
		assert.NotZero(t, a[telemetry.AttrServerPort].AsInt64())
		assert.NotEmpty(t, a[telemetry.AttrDBQueryText].AsString())
	}
	assert.Equal(t, 1, names["CREATE"])
	assert.Equal(t, 1, names["insert_item"], "a leading -- name: comment names the span")
	assert.Equal(t, 1, names["SELECT"])
	assert.Equal(t, 1, names["INSERT"])

	for _, s := range db {
		a := attrs(s.Attributes)
		switch s.Name {
		case "insert_item":
			assert.Equal(t, "INSERT", a[telemetry.AttrDBOperation].AsString())
			assert.Contains(t, a[telemetry.AttrDBQueryText].AsString(), "VALUES ($1, $2)")
			assert.Equal(t, codes.Unset, s.Status.Code)
			assert.Equal(t, int64(1), a[telemetry.AttrDBRowsAffected].AsInt64())
		case "SELECT":
			assert.Equal(t, "SELECT", a[telemetry.AttrDBOperation].AsString())
		case "INSERT":
			assert.Equal(t, codes.Error, s.Status.Code)
			assert.Equal(t, "23505", a[telemetry.AttrDBStatusCode].AsString(), "SQLSTATE of the unique violation")
			assert.Equal(t, "23505", a[telemetry.AttrErrorType].AsString())
		}
	}
}

func TestPgxTracerBatchPrepareAndCopy(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pool := tracedPool(t, r, telemetry.PgxConfig{OmitQueryText: true})
	ctx, parent := r.tel.Tracer().Start(context.Background(), "projection carts")

	_, err := pool.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, name text)")
	require.NoError(t, err)
	b := &pgx.Batch{}
	b.Queue("INSERT INTO items (id, name) VALUES ($1, $2)", 1, secret)
	b.Queue("UPDATE items SET name = $1 WHERE id = $2", secret, 1)
	require.NoError(t, pool.SendBatch(ctx, b).Close())

	n, err := pool.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"id", "name"},
		pgx.CopyFromRows([][]any{{2, secret}, {3, secret}}))
	require.NoError(t, err)
	require.Equal(t, int64(2), n)

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Conn().Prepare(ctx, "count_items", "SELECT count(*) FROM items WHERE name = $1")
	require.NoError(t, err)
	var count int
	require.NoError(t, conn.QueryRow(ctx, "count_items", secret).Scan(&count))
	assert.Equal(t, 3, count)
	conn.Release()
	parent.End()

	batch := r.span(t, "BATCH")
	noSecret(t, batch)
	a := attrs(batch.Attributes)
	assert.Equal(t, int64(2), a[telemetry.AttrDBBatchSize].AsInt64())
	require.Len(t, batch.Events, 2)
	assert.Equal(t, "INSERT", attrs(batch.Events[0].Attributes)[telemetry.AttrDBOperation].AsString())
	assert.Equal(t, "UPDATE", attrs(batch.Events[1].Attributes)[telemetry.AttrDBOperation].AsString())

	cp := r.span(t, `COPY "items"`)
	assert.Equal(t, int64(2), attrs(cp.Attributes)[telemetry.AttrDBRowsAffected].AsInt64())
	noSecret(t, cp)

	prep := r.span(t, "PREPARE count_items")
	assert.Equal(t, "PREPARE", attrs(prep.Attributes)[telemetry.AttrDBOperation].AsString())
	exec := r.span(t, "EXECUTE count_items")
	assert.Equal(t, "EXECUTE", attrs(exec.Attributes)[telemetry.AttrDBOperation].AsString())
	noSecret(t, exec)

	for _, s := range r.spans.GetSpans() {
		if s.SpanKind == trace.SpanKindClient {
			_, has := attrs(s.Attributes)[telemetry.AttrDBQueryText]
			assert.False(t, has, "OmitQueryText leaves the SQL off %s", s.Name)
		}
	}
}

func TestPgxTracerSkipsQueriesWithoutAParentSpanUnlessAsked(t *testing.T) {
	t.Parallel()
	for _, root := range []bool{false, true} {
		r := newRig(t)
		pool := tracedPool(t, r, telemetry.PgxConfig{TraceRootQueries: root})
		_, err := pool.Exec(context.Background(), "SELECT 1")
		require.NoError(t, err)
		var selects int
		for _, s := range r.spans.GetSpans() {
			if s.Name == "SELECT" {
				selects++
				assert.False(t, s.Parent.IsValid())
			}
		}
		if root {
			assert.Equal(t, 1, selects)
		} else {
			assert.Zero(t, selects)
		}
	}
}

func TestPgxTracerWithNoopProviderRecordsNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	pc, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	require.NoError(t, err)
	pc.ConnConfig.Tracer = telemetry.NewPgxTracer(nil) // global provider: no-op in tests
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ctx, parent := r.tel.Tracer().Start(context.Background(), "parent")
	_, err = pool.Exec(ctx, "SELECT 1")
	require.NoError(t, err)
	parent.End()
	assert.Len(t, r.spans.GetSpans(), 1, "only the parent: the tracer's provider is the no-op global")
}

func TestStatementNames(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string][2]string{
		"SELECT 1":                    {"SELECT", "SELECT"},
		"  select * from x":           {"SELECT", "SELECT"},
		"(SELECT 1) UNION (SELECT 2)": {"SELECT", "SELECT"},
		"WITH a AS (SELECT 1) INSERT INTO t SELECT *":  {"WITH", "WITH"},
		"/* c */ UPDATE t SET a = 1":                   {"UPDATE", "UPDATE"},
		"-- name: AppendEvents :many\nINSERT INTO m":   {"AppendEvents", "INSERT"},
		"-- just a comment\n-- name: x\nDELETE FROM t": {"x", "DELETE"},
		"BEGIN":             {"BEGIN", "BEGIN"},
		"commit;":           {"COMMIT", "COMMIT"},
		"get_cart":          {"EXECUTE get_cart", "EXECUTE"},
		"stmtcache_19ab":    {"EXECUTE stmtcache_19ab", "EXECUTE"},
		"":                  {"postgresql", ""},
		"/* unterminated":   {"postgresql", ""},
		"-- only a comment": {"postgresql", ""},
	} {
		name, op := telemetry.StatementNameForTest(sql)
		assert.Equal(t, want, [2]string{name, op}, "%q", sql)
	}
	assert.True(t, strings.HasPrefix(telemetry.ScopeName, "github.com/troupehq/troupe"))
}

func FuzzStatementName(f *testing.F) {
	for _, s := range []string{"SELECT 1", "-- name: x\nINSERT", "/* a */ (", "get_cart", "", "--", "/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		name, op := telemetry.StatementNameForTest(sql)
		if name == "" {
			t.Fatalf("empty span name for %q", sql)
		}
		if op != strings.ToUpper(op) && op != "" {
			t.Fatalf("operation %q of %q is not upper case", op, sql)
		}
	})
}
