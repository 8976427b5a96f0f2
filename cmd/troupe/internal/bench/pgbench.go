package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
	"github.com/troupehq/troupe/internal/pgserver"
)

// ErrPgbenchNotFound is returned when the pgbench binary is found neither
// next to the server binaries nor on PATH.
var ErrPgbenchNotFound = errors.New("pgbench not found (it ships with the PostgreSQL server packages)")

// PgbenchResult is PostgreSQL's own ceiling for the append's writes.
type PgbenchResult struct {
	// TPS is the ceiling as the issue defines it: UPDATE of the stream
	// row and INSERT of one message per transaction.
	TPS float64 `json:"tps"`
	// TPSNotify is the same script with the pg_notify call every
	// store/postgres append makes, which serialises committing
	// transactions on the database's notification lock.
	TPSNotify float64 `json:"tpsWithNotify"`
	// GroupTPS is the group-commit ceiling: transactions per second of a
	// script that appends one event to each of GroupStreams streams in one
	// statement and one commit, as a host that gathers many streams'
	// appends into one round trip would. GroupTPS × GroupStreams is its
	// appends per second.
	GroupTPS     float64 `json:"groupTps"`
	GroupStreams int     `json:"groupStreams"`
	Clients      int     `json:"clients"`
	Threads      int     `json:"threads"`
	Seconds      int     `json:"seconds"`
	Streams      int     `json:"streams"`
	Script       string  `json:"script"`
	Command      string  `json:"command"`
}

// pgbenchStreams is how many stream rows the pgbench script spreads its
// writes over.
const pgbenchStreams = 10000

// pgbenchScript is one transaction of the same writes as an append of one
// event: advance a stream's row and insert one message at the new position
// (one statement, like the store's append). %s is the event body.
const pgbenchScript = `\set n random(1, %d)
WITH s AS (
    UPDATE streams SET stream_position = stream_position + 1
    WHERE stream_id = 'pgb-' || :n AND partition = 'default_partition' AND NOT is_archived
    RETURNING stream_id, partition, stream_position
)
INSERT INTO messages (stream_id, stream_position, partition, message_data, message_metadata, message_type, message_id)
SELECT s.stream_id, s.stream_position, s.partition, '%s'::jsonb, '{}'::jsonb, 'ItemAddedToCart', gen_random_uuid()::text
FROM s;
`

// pgbenchNotifyScript is pgbenchScript plus the append's notification.
const pgbenchNotifyScript = `\set n random(1, %d)
WITH s AS (
    UPDATE streams SET stream_position = stream_position + 1
    WHERE stream_id = 'pgb-' || :n AND partition = 'default_partition' AND NOT is_archived
    RETURNING stream_id, partition, stream_position
), m AS (
    INSERT INTO messages (stream_id, stream_position, partition, message_data, message_metadata, message_type, message_id)
    SELECT s.stream_id, s.stream_position, s.partition, '%s'::jsonb, '{}'::jsonb, 'ItemAddedToCart', gen_random_uuid()::text
    FROM s
    RETURNING partition, global_position
)
SELECT pg_notify('troupe_events', json_build_object('partition', m.partition, 'globalPosition', m.global_position)::text)
FROM m;
`

// GroupAppendsPerSec is the group-commit ceiling in appends per second:
// GroupTPS transactions of GroupStreams appends each.
func (p PgbenchResult) GroupAppendsPerSec() float64 { return p.GroupTPS * float64(p.GroupStreams) }

// pgbenchGroupStreams is how many streams one transaction of the
// group-commit script appends to.
const pgbenchGroupStreams = 10

// pgbenchGroupScript appends one event to each of pgbenchGroupStreams
// streams in one statement. Each client writes in a range of streams of
// its own (pgbenchGroupRange streams from client_id × pgbenchGroupRange),
// as a host's batch holds streams no other process is writing, so the
// ceiling measures commits rather than waits for row locks; rows are still
// locked in id order. The first %d is the number of client ranges, the
// second the range's size, the third the highest first stream offset in a
// range, the fourth the streams per transaction less one, %s the event
// body.
const pgbenchGroupScript = `\set base (:client_id %% %d) * %d + random(0, %d) + 1
WITH ids AS (
    SELECT 'pgb-' || g AS stream_id FROM generate_series(:base, :base + %d) AS g
), locked AS (
    SELECT st.stream_id FROM streams st JOIN ids USING (stream_id)
    WHERE st.partition = 'default_partition' AND NOT st.is_archived
    ORDER BY st.stream_id
    FOR UPDATE
), s AS (
    UPDATE streams SET stream_position = stream_position + 1
    FROM locked
    WHERE streams.stream_id = locked.stream_id AND streams.partition = 'default_partition' AND NOT streams.is_archived
    RETURNING streams.stream_id, streams.partition, streams.stream_position
)
INSERT INTO messages (stream_id, stream_position, partition, message_data, message_metadata, message_type, message_id)
SELECT s.stream_id, s.stream_position, s.partition, '%s'::jsonb, '{}'::jsonb, 'ItemAddedToCart', gen_random_uuid()::text
FROM s;
`

// pgbenchGroupRange is how many streams each pgbench client of the
// group-commit script writes to.
const pgbenchGroupRange = 150

// groupScript returns the group-commit script with body as every event's
// data.
func groupScript(body string) string {
	return fmt.Sprintf(pgbenchGroupScript, pgbenchStreams/pgbenchGroupRange, pgbenchGroupRange,
		pgbenchGroupRange-pgbenchGroupStreams, pgbenchGroupStreams-1, body)
}

// pgbenchBody returns the JSON body of a typical cart event, as stored.
func pgbenchBody() (string, error) {
	b, err := json.Marshal(benchcart.ItemAddedToCart{
		EventData: benchcart.ItemAddedToCartData{Item: benchcart.Item{SKU: "sku-1", Name: "Item 1", UnitPrice: benchcart.Price(199), Quantity: 2}},
		EventMeta: benchcart.EventMeta{TenantID: "bench-t1", CartID: "r1-c1-0", CreatedBy: "bench", Version: 1},
	})
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(string(b), "'", "''"), nil
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \((without initial connection time|excluding connections establishing)\)`)

// parseTPS returns the tps pgbench printed.
func parseTPS(out string) (float64, error) {
	m := tpsLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no tps line in pgbench output: %q", tail(out, 400))
	}
	return strconv.ParseFloat(m[1], 64)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// findPgbench returns the pgbench binary next to the server binaries, or
// the one on PATH.
func findPgbench(ctx context.Context) (string, error) {
	if dir, err := pgserver.FindBinDir(ctx); err == nil {
		p := filepath.Join(dir, "pgbench")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	return "", ErrPgbenchNotFound
}

// pgbench measures the ceiling: pgbench running the script on a fresh
// database with cfg.PgbenchClients clients for cfg.PgbenchSeconds.
func (b *bench) pgbench(ctx context.Context) (res PgbenchResult, err error) {
	res = PgbenchResult{Clients: b.cfg.PgbenchClients, Threads: b.cfg.PgbenchThreads, Seconds: b.cfg.PgbenchSeconds,
		Streams: pgbenchStreams}
	bin, err := findPgbench(ctx)
	if err != nil {
		return res, err
	}
	db, err := b.srv.newDatabase(ctx)
	if err != nil {
		return res, err
	}
	defer func() {
		if derr := db.drop(ctx); derr != nil && err == nil {
			err = derr
		}
	}()
	pool, err := db.pool(ctx, 2, nil)
	if err != nil {
		return res, err
	}
	_, err = pool.Exec(ctx, `INSERT INTO streams (stream_id, partition, stream_type, stream_position)
SELECT 'pgb-' || g, 'default_partition', 'cart', 0 FROM generate_series(1, $1::int) AS g`, pgbenchStreams)
	pool.Close()
	if err != nil {
		return res, fmt.Errorf("seed the pgbench streams: %w", err)
	}
	body, err := pgbenchBody()
	if err != nil {
		return res, err
	}
	res.Script = fmt.Sprintf(pgbenchScript, pgbenchStreams, body)
	res.Command = "pgbench -n -M prepared -c " + strconv.Itoa(res.Clients) + " -j " + strconv.Itoa(res.Threads) +
		" -T " + strconv.Itoa(res.Seconds) + " -f append.sql <scratch database>"
	if res.TPS, err = b.runPgbench(ctx, bin, db.url, res.Script); err != nil {
		return res, err
	}
	if res.TPSNotify, err = b.runPgbench(ctx, bin, db.url, fmt.Sprintf(pgbenchNotifyScript, pgbenchStreams, body)); err != nil {
		return res, err
	}
	res.GroupStreams = pgbenchGroupStreams
	res.GroupTPS, err = b.runPgbench(ctx, bin, db.url, groupScript(body))
	return res, err
}

// runPgbench runs script with pgbench against dbURL for
// cfg.PgbenchSeconds and returns its tps.
func (b *bench) runPgbench(ctx context.Context, bin, dbURL, script string) (float64, error) {
	return runPgbench(ctx, bin, dbURL, script, b.cfg.PgbenchClients, b.cfg.PgbenchThreads, "-T", b.cfg.PgbenchSeconds)
}

// runPgbench runs script with pgbench against dbURL with clients clients on
// threads threads, limit being "-T" (seconds) or "-t" (transactions per
// client) with its value n, and returns its tps.
func runPgbench(ctx context.Context, bin, dbURL, script string, clients, threads int, limit string, n int) (float64, error) {
	dir, err := os.MkdirTemp("", "troupe-pgbench-")
	if err != nil {
		return 0, fmt.Errorf("make a directory for the pgbench script: %w", err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "append.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return 0, fmt.Errorf("write the pgbench script: %w", err)
	}
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads),
		limit, strconv.Itoa(n), "-f", file, dbURL}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("run pgbench: %w: %s", err, tail(out.String(), 600))
	}
	return parseTPS(out.String())
}
