package telemetry

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Database span attribute keys (OpenTelemetry semantic conventions).
const (
	AttrDBSystem       = attribute.Key("db.system")
	AttrDBSystemName   = attribute.Key("db.system.name")
	AttrDBNamespace    = attribute.Key("db.namespace")
	AttrDBOperation    = attribute.Key("db.operation.name")
	AttrDBQueryText    = attribute.Key("db.query.text")
	AttrDBBatchSize    = attribute.Key("db.operation.batch.size")
	AttrDBCollection   = attribute.Key("db.collection.name")
	AttrDBStatusCode   = attribute.Key("db.response.status_code")
	AttrServerAddress  = attribute.Key("server.address")
	AttrServerPort     = attribute.Key("server.port")
	AttrErrorType      = attribute.Key("error.type")
	AttrDBRowsAffected = attribute.Key("db.rows_affected")
)

// PgxConfig configures a [PgxTracer].
type PgxConfig struct {
	// TracerProvider creates the tracer. Defaults to otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// OmitQueryText leaves db.query.text off the spans. The text is the SQL
	// as written, with $n placeholders: bind values are never recorded.
	// Defaults to false (the text is recorded).
	OmitQueryText bool
	// TraceRootQueries creates spans for queries run with a context holding
	// no span (background polling, pool health checks). Defaults to false:
	// such queries are not traced.
	TraceRootQueries bool
}

// PgxTracer creates a client span for each query, batch, prepare and copy
// run through pgx. Set it as pgxpool.Config.ConnConfig.Tracer (or
// pgx.ConnConfig.Tracer). It implements pgx.QueryTracer, pgx.BatchTracer,
// pgx.PrepareTracer and pgx.CopyFromTracer and is safe for concurrent use.
//
// Spans are named after the statement: the name given by a leading
// "-- name: <name>" comment when the SQL has one, otherwise the SQL
// operation (SELECT, INSERT, WITH, …), or "EXECUTE <statement>" when the SQL
// is the name of a prepared statement. They carry db.system=postgresql,
// db.system.name, db.namespace, db.operation.name, server.address,
// server.port and db.query.text (unless omitted); never bind values. A
// failed statement records the error, error.type and, for a server error,
// its SQLSTATE as db.response.status_code.
type PgxTracer struct {
	tracer    trace.Tracer
	omitText  bool
	rootSpans bool
}

var (
	_ pgx.QueryTracer    = (*PgxTracer)(nil)
	_ pgx.BatchTracer    = (*PgxTracer)(nil)
	_ pgx.PrepareTracer  = (*PgxTracer)(nil)
	_ pgx.CopyFromTracer = (*PgxTracer)(nil)
)

// NewPgxTracer returns a PgxTracer configured by cfg (nil: defaults).
func NewPgxTracer(cfg *PgxConfig) *PgxTracer {
	var c PgxConfig
	if cfg != nil {
		c = *cfg
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	return &PgxTracer{
		tracer:    c.TracerProvider.Tracer(ScopeName),
		omitText:  c.OmitQueryText,
		rootSpans: c.TraceRootQueries,
	}
}

// start starts a client span unless ctx has no span and root spans are off.
func (p *PgxTracer) start(ctx context.Context, conn *pgx.Conn, name, operation string, extra ...attribute.KeyValue) context.Context {
	if !p.rootSpans && !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	ctx, span := p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		kv := make([]attribute.KeyValue, 0, 8+len(extra))
		kv = append(kv, AttrDBSystem.String("postgresql"), AttrDBSystemName.String("postgresql"))
		if operation != "" {
			kv = append(kv, AttrDBOperation.String(operation))
		}
		if conn != nil {
			if cc := conn.Config(); cc != nil {
				kv = append(kv, AttrDBNamespace.String(cc.Database), AttrServerAddress.String(cc.Host),
					AttrServerPort.Int(int(cc.Port)))
			}
		}
		kv = append(kv, extra...)
		span.SetAttributes(kv...)
	}
	return ctx
}

// end ends the span started by start (a no-op when none was).
func end(ctx context.Context, err error, extra ...attribute.KeyValue) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(extra...)
	if err != nil {
		span.SetAttributes(dbErrorAttrs(err)...)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func dbErrorAttrs(err error) []attribute.KeyValue {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return []attribute.KeyValue{AttrDBStatusCode.String(pgErr.Code), AttrErrorType.String(pgErr.Code)}
	}
	return []attribute.KeyValue{AttrErrorType.String(errorType(err))}
}

func errorType(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "_OTHER"
	}
}

// queryAttr returns the db.query.text attribute, or none.
func (p *PgxTracer) queryAttr(sql string) []attribute.KeyValue {
	if p.omitText {
		return nil
	}
	return []attribute.KeyValue{AttrDBQueryText.String(sql)}
}

// TraceQueryStart implements pgx.QueryTracer.
func (p *PgxTracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !p.rootSpans && !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	name, op := statementName(data.SQL)
	return p.start(ctx, conn, name, op, p.queryAttr(data.SQL)...)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (p *PgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err != nil {
		end(ctx, data.Err)
		return
	}
	end(ctx, nil, AttrDBRowsAffected.Int64(data.CommandTag.RowsAffected()))
}

// TraceBatchStart implements pgx.BatchTracer: one span for the whole batch.
func (p *PgxTracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	n := 0
	if data.Batch != nil {
		n = data.Batch.Len()
	}
	return p.start(ctx, conn, "BATCH", "BATCH", AttrDBBatchSize.Int(n))
}

// TraceBatchQuery implements pgx.BatchTracer: each statement of the batch is
// an event "query" on the batch span.
func (p *PgxTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	_, op := statementName(data.SQL)
	kv := append([]attribute.KeyValue{AttrDBOperation.String(op)}, p.queryAttr(data.SQL)...)
	if data.Err != nil {
		kv = append(kv, dbErrorAttrs(data.Err)...)
		kv = append(kv, attribute.String("exception.message", data.Err.Error()))
	} else {
		kv = append(kv, AttrDBRowsAffected.Int64(data.CommandTag.RowsAffected()))
	}
	span.AddEvent("query", trace.WithAttributes(kv...))
}

// TraceBatchEnd implements pgx.BatchTracer.
func (p *PgxTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	end(ctx, data.Err)
}

// TracePrepareStart implements pgx.PrepareTracer.
func (p *PgxTracer) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	if !p.rootSpans && !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	// Statements pgx prepares for its statement cache have generated names
	// (one per distinct SQL); only names chosen by the application go in
	// the span name.
	name := "PREPARE"
	if data.Name != "" && !strings.HasPrefix(data.Name, "stmtcache_") {
		name += " " + data.Name
	}
	return p.start(ctx, conn, name, "PREPARE", p.queryAttr(data.SQL)...)
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (p *PgxTracer) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, data pgx.TracePrepareEndData) {
	end(ctx, data.Err)
}

// TraceCopyFromStart implements pgx.CopyFromTracer.
func (p *PgxTracer) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	if !p.rootSpans && !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	table := data.TableName.Sanitize()
	return p.start(ctx, conn, "COPY "+table, "COPY", AttrDBCollection.String(table))
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (p *PgxTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceCopyFromEndData) {
	if data.Err != nil {
		end(ctx, data.Err)
		return
	}
	end(ctx, nil, AttrDBRowsAffected.Int64(data.CommandTag.RowsAffected()))
}

// statementName returns the span name and operation of sql: the name of a
// leading "-- name: <name>" comment (sqlc's convention) when there is one,
// else the operation. The operation is the first keyword upper-cased, or
// EXECUTE when sql is a single token that is not a keyword (pgx runs the
// prepared statement of that name; the span is then "EXECUTE <token>").
func statementName(sql string) (name, operation string) {
	rest := sql
	for {
		rest = strings.TrimLeft(rest, " \t\r\n(")
		if line, ok := strings.CutPrefix(rest, "--"); ok {
			line, rest, _ = strings.Cut(line, "\n")
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), "name:"); ok && name == "" {
				if f := strings.Fields(n); len(f) > 0 {
					name = f[0]
				}
			}
			continue
		}
		if c, ok := strings.CutPrefix(rest, "/*"); ok {
			_, rest, _ = strings.Cut(c, "*/")
			continue
		}
		break
	}
	rest = strings.TrimRight(rest, " \t\r\n;")
	tok := rest
	if i := strings.IndexAny(rest, " \t\r\n(;"); i >= 0 {
		tok = rest[:i]
	}
	switch {
	case tok == "":
	case tok == rest && !isKeyword(tok):
		operation = "EXECUTE"
		if name == "" {
			name = "EXECUTE " + tok
		}
	default:
		operation = strings.ToUpper(tok)
	}
	if name == "" {
		name = operation
	}
	if name == "" {
		name = "postgresql"
	}
	return name, operation
}

var sqlKeywords = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, k := range strings.Fields(`SELECT INSERT UPDATE DELETE MERGE WITH VALUES TABLE CALL DO
		BEGIN COMMIT ROLLBACK SAVEPOINT RELEASE START END ABORT SET RESET SHOW LISTEN UNLISTEN NOTIFY
		LOCK VACUUM ANALYZE EXPLAIN CREATE ALTER DROP TRUNCATE GRANT REVOKE COMMENT COPY DISCARD
		DEALLOCATE PREPARE EXECUTE FETCH MOVE CLOSE DECLARE REFRESH REINDEX CLUSTER CHECKPOINT LOAD`) {
		m[k] = struct{}{}
	}
	return m
}()

func isKeyword(w string) bool {
	_, ok := sqlKeywords[strings.ToUpper(w)]
	return ok
}
