package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/troupetest"
)

// env is a running service behind an httptest server.
type env struct {
	name   string
	svc    *service.Service
	srv    *httptest.Server
	client *http.Client
	pool   *pgxpool.Pool // nil for the memory store
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// start runs svc behind an httptest server until the test ends.
func start(t testing.TB, name string, svc *service.Service, pool *pgxpool.Pool) *env {
	t.Helper()
	require.NoError(t, svc.Start(testCtx(t)))
	srv := httptest.NewServer(svc.Handler())
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		require.NoError(t, svc.Stop(ctx))
	})
	return &env{name: name, svc: svc, srv: srv, client: &http.Client{Transport: tr, Timeout: time.Minute}, pool: pool}
}

// newPG starts the service on a fresh migrated PostgreSQL database.
func newPG(t testing.TB, mutate ...func(*service.Config)) *env {
	t.Helper()
	pool := troupetest.NewPool(t)
	cfg := service.Config{Pool: pool, Logger: quietLogger()}
	for _, m := range mutate {
		m(&cfg)
	}
	svc, err := service.New(testCtx(t), cfg)
	require.NoError(t, err)
	return start(t, "postgres", svc, pool)
}

// newMem starts the service on the in-memory store.
func newMem(t testing.TB) *env {
	t.Helper()
	svc, err := service.New(testCtx(t), service.Config{Logger: quietLogger()})
	require.NoError(t, err)
	return start(t, "memory", svc, nil)
}

// bothStores runs fn as a parallel subtest against each store.
func bothStores(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, newPG(t))
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		fn(t, newMem(t))
	})
}

// response is an answer of the API.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic value.
func (r response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), "body %s", r.Body)
	return m
}

func (r response) Error(t testing.TB) string {
	t.Helper()
	m := r.JSON(t)
	msg, ok := m["error"].(string)
	require.True(t, ok, "body %s has no error", r.Body)
	return msg
}

func (e *env) do(t testing.TB, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testCtx(t), method, e.srv.URL+path, rd)
	require.NoError(t, err)
	resp, err := e.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode >= 400 {
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s %s → %d %s", method, path, resp.StatusCode, data)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// must does a request that must answer want, and returns its JSON.
func (e *env) must(t testing.TB, want int, method, path, body string) map[string]any {
	t.Helper()
	r := e.do(t, method, path, body)
	require.Equal(t, want, r.Status, "%s %s %s → %s", method, path, body, r.Body)
	return r.JSON(t)
}

func (e *env) createTenant(t testing.TB, id string) {
	t.Helper()
	e.must(t, http.StatusCreated, "POST", "/api/tenants", `{"tenantId":"`+id+`","name":"Tenant `+id+`"}`)
}

func (e *env) createCart(t testing.TB, tenant string) (cartID, position string) {
	t.Helper()
	m := e.must(t, http.StatusCreated, "POST", "/api/tenants/"+tenant+"/carts", `{"currency":"USD"}`)
	return m["cartId"].(string), m["position"].(string)
}

// getCart reads a cart once the read model has reached position.
func (e *env) getCart(t testing.TB, tenant, cartID, position string) service.CartView {
	t.Helper()
	r := e.do(t, "GET", "/api/tenants/"+tenant+"/carts/"+cartID+"?waitFor="+position, "")
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var v service.CartView
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&v))
	return v
}

// eventCount counts the events in the store. On PostgreSQL it counts the
// stored rows: the global read may hold committed events back for a while
// (while an older transaction, such as a batch of the service's own
// projection, is in flight), so an empty page of ReadAll is no sign that
// the log has been read to its end.
func (e *env) eventCount(t testing.TB) int {
	t.Helper()
	if e.pool != nil {
		var n int
		require.NoError(t, e.pool.QueryRow(testCtx(t), `SELECT count(*) FROM messages WHERE NOT is_archived`).Scan(&n))
		return n
	}
	n := 0
	var after store.Position
	for {
		res, err := e.svc.Store().ReadAll(testCtx(t), store.ReadAllOptions{After: after, Limit: 1000})
		require.NoError(t, err)
		n += len(res.Events)
		if len(res.Events) == 0 {
			return n
		}
		after = res.Next
	}
}

// streamVersion is a cart stream's version in the store.
func (e *env) streamVersion(t testing.TB, tenant, cartID string) store.Version {
	t.Helper()
	res, err := e.svc.Store().ReadStream(testCtx(t), store.StreamID(cartID), store.ReadOptions{Partition: tenant})
	require.NoError(t, err)
	return res.CurrentVersion
}
