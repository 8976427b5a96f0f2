package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/troupetest"
)

// deadlineMargin is how much longer than its deadline a request may take
// to be answered.
const deadlineMargin = 1500 * time.Millisecond

// requireUnavailable checks a 503 answered within deadline + margin, with
// Retry-After and a JSON error.
func requireUnavailable(t *testing.T, r response, took, deadline time.Duration, what string) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s → %s", what, r.Body)
	require.NotEmpty(t, r.Header.Get("Retry-After"), "%s: no Retry-After", what)
	require.NotEmpty(t, r.Error(t), what)
	require.Less(t, took, deadline+deadlineMargin, "%s took %s with a %s deadline", what, took, deadline)
}

func timed(t *testing.T, e *env, method, path, body string) (response, time.Duration) {
	t.Helper()
	began := time.Now()
	r := e.do(t, method, path, body)
	return r, time.Since(began)
}

// A table locked by another transaction stalls the tenant look-up, the
// read-model read or the append; the request is answered 503 at its
// deadline instead of waiting for the lock.
func TestRequestDeadlineUnderTableLock(t *testing.T) {
	t.Parallel()
	const deadline = time.Second
	items := `{"action":"add","item":{"sku":"A","name":"a","unitPrice":1,"quantity":1}}`
	for _, tc := range []struct {
		table, method, path, body string // path: %s is the cart id
	}{
		{"tenants", "GET", "/api/tenants/acme", ""},
		{"tenants", "POST", "/api/tenants/acme/carts", `{"currency":"USD"}`},
		{"carts", "GET", "/api/tenants/acme/carts/{cart}", ""},
		{"carts", "GET", "/api/tenants/acme/carts", ""},
		{"messages", "PUT", "/api/tenants/acme/carts/{cart}/items", items},
		{"messages", "POST", "/api/tenants/acme/carts", `{"currency":"EUR"}`},
	} {
		t.Run(tc.table+" "+tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			e := newPG(t, func(c *service.Config) { c.RequestTimeout = deadline })
			// The set-up runs under the same 1 s deadline, which a loaded
			// machine may miss (creating a tenant creates its partitions):
			// it is retried, a tenant created by a timed-out attempt
			// included.
			require.Eventually(t, func() bool {
				r := e.do(t, "POST", "/api/tenants", `{"tenantId":"acme","name":"Tenant acme"}`)
				return r.Status == http.StatusCreated || r.Status == http.StatusConflict
			}, 30*time.Second, 50*time.Millisecond, "the tenant is created")
			var cartID string
			require.Eventually(t, func() bool {
				r := e.do(t, "POST", "/api/tenants/acme/carts", `{"currency":"USD"}`)
				if r.Status != http.StatusCreated {
					return false
				}
				var m map[string]any
				require.NoError(t, json.Unmarshal(r.Body, &m))
				cartID = m["cartId"].(string)
				return true
			}, 30*time.Second, 50*time.Millisecond, "a cart is created")
			path := strings.ReplaceAll(tc.path, "{cart}", cartID)

			conn, err := pgx.ConnectConfig(testCtx(t), e.pool.Config().ConnConfig.Copy())
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close(context.Background()) })
			tx, err := conn.Begin(testCtx(t))
			require.NoError(t, err)
			_, err = tx.Exec(testCtx(t), "LOCK TABLE "+pgx.Identifier{tc.table}.Sanitize()+" IN ACCESS EXCLUSIVE MODE")
			require.NoError(t, err)

			r, took := timed(t, e, tc.method, path, tc.body)
			requireUnavailable(t, r, took, deadline, tc.method+" "+tc.path+" with "+tc.table+" locked")

			require.NoError(t, tx.Rollback(testCtx(t)))
			// Once the lock is gone, the service answers again.
			require.Eventually(t, func() bool {
				r := e.do(t, "GET", "/api/tenants/acme/carts/"+cartID, "")
				return r.Status == http.StatusOK
			}, 20*time.Second, 50*time.Millisecond)
		})
	}
}

// A database that cannot be reached (connections refused, the open ones
// cut) is a 503 with Retry-After, never a 500.
func TestUnreachableDatabaseIs503(t *testing.T) {
	t.Parallel()
	const deadline = 2 * time.Second
	px := startProxy(t, troupetest.NewDatabase(t))
	cfg, err := pgxpool.ParseConfig(px.connString)
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(testCtx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	svc, err := service.New(testCtx(t), service.Config{Pool: pool, Logger: quietLogger(), RequestTimeout: deadline})
	require.NoError(t, err)
	e := start(t, "postgres", svc, pool)
	e.createTenant(t, "acme")
	cartID, _ := e.createCart(t, "acme")

	px.cut()
	for _, rq := range []struct{ method, path, body string }{
		{"GET", "/api/tenants/acme", ""},
		{"GET", "/api/tenants", ""},
		{"POST", "/api/tenants", `{"tenantId":"beta","name":"Beta"}`},
		{"POST", "/api/tenants/acme/carts", `{"currency":"USD"}`},
		{"GET", "/api/tenants/acme/carts/" + cartID, ""},
		{"GET", "/api/tenants/acme/carts", ""},
		{"PUT", "/api/tenants/acme/carts/" + cartID + "/checkout", ""},
	} {
		r, took := timed(t, e, rq.method, rq.path, rq.body)
		requireUnavailable(t, r, took, deadline, rq.method+" "+rq.path+" with the database unreachable")
	}
}

// proxy forwards TCP connections on 127.0.0.1 to a PostgreSQL server until
// cut, which closes the listener and every connection.
type proxy struct {
	connString string
	ln         net.Listener
	wg         sync.WaitGroup

	mu    sync.Mutex
	isCut bool
	conns []net.Conn
}

func startProxy(t *testing.T, connString string) *proxy {
	t.Helper()
	cfg, err := pgx.ParseConfig(connString)
	require.NoError(t, err)
	target := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln}
	p.connString = fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", cfg.User, ln.Addr().(*net.TCPAddr).Port, cfg.Database)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				_ = c.Close()
				continue
			}
			if !p.track(c, s) {
				return
			}
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); _ = s.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, s); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

// track remembers the two ends of a connection; once cut it closes them
// and returns false.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isCut {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	_ = p.ln.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}
