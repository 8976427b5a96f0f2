package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// demoEnv is what the demo runs against.
type demoEnv struct {
	base      string // the service's URL
	storeInfo string
	pool      *pgxpool.Pool // nil for the memory store
	spans     *tracetest.InMemoryExporter
}

// demoClient calls the API and prints each exchange.
type demoClient struct {
	ctx  context.Context
	out  io.Writer
	base string
	http *http.Client
}

type reply struct {
	status int
	body   map[string]any
	raw    []byte
}

func (c *demoClient) call(method, path, body string, quiet bool) (reply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.base+path, rd)
	if err != nil {
		return reply{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	r := reply{status: resp.StatusCode, raw: bytes.TrimSpace(raw)}
	_ = json.Unmarshal(raw, &r.body)
	if !quiet {
		fmt.Fprintf(c.out, "→ %s %s", method, path)
		if body != "" {
			fmt.Fprintf(c.out, " %s", body)
		}
		fmt.Fprintf(c.out, "\n  ← %d %s\n", r.status, r.raw)
	}
	return r, nil
}

// expect calls the API and fails the demo unless it answers want.
func (c *demoClient) expect(want int, method, path, body string) (reply, error) {
	r, err := c.call(method, path, body, false)
	if err == nil && r.status != want {
		err = fmt.Errorf("%s %s answered %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r, err
}

// settle waits, quietly, until the read model has applied a write: the
// next command then lands in a projection batch of its own, which keeps
// each command's trace a simple tree.
func (c *demoClient) settle(tenant, cartID string, write reply) error {
	pos, _ := write.body["position"].(string)
	_, err := c.read(http.StatusOK, "GET", "/api/tenants/"+tenant+"/carts/"+cartID+"?waitFor="+pos)
	return err
}

// read calls the API quietly and fails the demo unless it answers want.
func (c *demoClient) read(want int, method, path string) (reply, error) {
	r, err := c.call(method, path, "", true)
	if err == nil && r.status != want {
		err = fmt.Errorf("%s %s answered %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r, err
}

// runDemo plays the seed's scenario against the running service and prints
// the read model and the trace of one command.
func runDemo(ctx context.Context, out io.Writer, env demoEnv) error {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &demoClient{ctx: ctx, out: out, base: env.base, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	tenant := "demo-" + hex.EncodeToString(suffix)

	fmt.Fprintf(out, "\n== Troupe cart demo: the seed's scenario over HTTP (%s; store: %s)\n\n", env.base, env.storeInfo)
	if _, err := c.expect(http.StatusCreated, "POST", "/api/tenants", `{"tenantId":"`+tenant+`","name":"Demo Shop"}`); err != nil {
		return err
	}
	carts := "/api/tenants/" + tenant + "/carts"
	created, err := c.expect(http.StatusCreated, "POST", carts, `{"currency":"USD"}`)
	if err != nil {
		return err
	}
	cartID, _ := created.body["cartId"].(string)
	if err := c.settle(tenant, cartID, created); err != nil {
		return err
	}
	items := carts + "/" + cartID + "/items"
	var last reply
	for _, body := range []string{
		`{"action":"add","item":{"sku":"SKU-123","name":"Item 123","unitPrice":25,"quantity":2}}`,
		`{"action":"add","item":{"sku":"SKU-456","name":"Item 456","unitPrice":15,"quantity":1}}`,
		`{"action":"remove","sku":"SKU-123","quantity":1}`,
	} {
		if last, err = c.expect(http.StatusCreated, "PUT", items, body); err != nil {
			return err
		}
		if err := c.settle(tenant, cartID, last); err != nil {
			return err
		}
	}
	checkout, err := c.expect(http.StatusCreated, "PUT", carts+"/"+cartID+"/checkout", "")
	if err != nil {
		return err
	}
	if total, _ := checkout.body["total"].(float64); total != 40 {
		return fmt.Errorf("checkout total = %v, want 40", checkout.body["total"])
	}
	fmt.Fprintln(out, "\nA broken rule is a 409 with the rule's message, and appends nothing:")
	if _, err := c.expect(http.StatusConflict, "PUT", items, `{"action":"add","item":{"sku":"SKU-9","name":"Late","unitPrice":1,"quantity":1}}`); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nA second cart, cancelled:")
	second, err := c.expect(http.StatusCreated, "POST", carts, `{"currency":"EUR"}`)
	if err != nil {
		return err
	}
	secondID, _ := second.body["cartId"].(string)
	if _, err := c.expect(http.StatusCreated, "PUT", carts+"/"+secondID+"/items", `{"action":"add","item":{"sku":"SKU-789","name":"Item 789","unitPrice":9.99,"quantity":3}}`); err != nil {
		return err
	}
	cancelled, err := c.expect(http.StatusCreated, "PUT", carts+"/"+secondID+"/cancel", `{"reason":"Changed my mind"}`)
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "\n== The read model (GET %s?waitFor=%s: waits until the projection has applied the last write)\n\n", carts, cancelled.body["position"])
	list, err := c.read(http.StatusOK, "GET", carts+"?waitFor="+fmt.Sprint(cancelled.body["position"]))
	if err != nil {
		return err
	}
	var views []json.RawMessage
	if err := json.Unmarshal(list.raw, &views); err != nil {
		return fmt.Errorf("read model answer %s: %w", list.raw, err)
	}
	fmt.Fprintln(out, "[")
	for i, v := range views {
		sep := ","
		if i == len(views)-1 {
			sep = ""
		}
		fmt.Fprintf(out, "  %s%s\n", v, sep)
	}
	fmt.Fprintln(out, "]")
	if env.pool != nil {
		if err := printCartsTable(ctx, out, env.pool, tenant); err != nil {
			return err
		}
	}
	if env.spans != nil {
		if err := printCommandTrace(ctx, out, env.spans); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "\nDemo finished.")
	return nil
}

// printCartsTable prints the tenant's rows of the carts table.
func printCartsTable(ctx context.Context, out io.Writer, pool *pgxpool.Pool, tenant string) error {
	rows, err := pool.Query(ctx, `SELECT cart_id, currency, coalesce(total::text, ''), coalesce(order_id, ''),
       items_json::text, is_checked_out, is_cancelled
FROM carts WHERE partition = $1 ORDER BY cart_id`, tenant)
	if err != nil {
		return fmt.Errorf("read the carts table: %w", err)
	}
	defer rows.Close()
	fmt.Fprintf(out, "\nTable carts, partition %q (its own partition carts_t_…, made when the tenant was created):\n\n", tenant)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "cart_id\tcurrency\ttotal\torder_id\tis_checked_out\tis_cancelled\titems_json")
	for rows.Next() {
		var id, currency, total, order, items string
		var checkedOut, cancelled bool
		if err := rows.Scan(&id, &currency, &total, &order, &items, &checkedOut, &cancelled); err != nil {
			return fmt.Errorf("read the carts table: %w", err)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%t\t%s\n", id, currency, total, order, checkedOut, cancelled, items)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the carts table: %w", err)
	}
	return tw.Flush()
}

// printCommandTrace prints the trace of the first AddItem command: the
// HTTP request, the command, its append and the projection batch that
// wrote it to the read model.
func printCommandTrace(ctx context.Context, out io.Writer, spans *tracetest.InMemoryExporter) error {
	var id trace.TraceID
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := spans.GetSpans()
		for _, s := range all {
			if s.Name == "cart.AddItem" {
				id = s.SpanContext.TraceID()
				break
			}
		}
		if id.IsValid() && hasSpan(all, id, "projection carts") {
			fmt.Fprintln(out, "\n== The trace of one command (PUT …/items, add SKU-123): HTTP request → command → append → projection write")
			fmt.Fprintln(out)
			renderTrace(out, all, id)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the trace of the first AddItem has no projection span after 10s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func hasSpan(spans tracetest.SpanStubs, id trace.TraceID, name string) bool {
	for _, s := range spans {
		if s.SpanContext.TraceID() == id && s.Name == name {
			return true
		}
	}
	return false
}
