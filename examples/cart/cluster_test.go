package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/examples/cart/service"
	"github.com/troupehq/troupe/internal/pgtest"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// The cluster tests run each member as a child process of a cart binary
// built WITHOUT the race detector: protoactor-go's cluster and remote code
// has data races of its own (see docs/cluster.md), which would fail a
// -race member. This test process only speaks HTTP and SQL to them.

// buildMemberBinary builds the cart binary into a temporary directory.
func buildMemberBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "cart")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/troupehq/troupe/examples/cart").CombinedOutput()
	require.NoError(t, err, "go build the cart binary: %s", out)
	return bin
}

func clusterCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// `make cluster-demo`: three members on a throwaway PostgreSQL, every cart
// through every member, then everything stopped.
func TestClusterDemo(t *testing.T) {
	t.Parallel()
	bin := buildMemberBinary(t)
	var out, errOut syncBuffer
	err := run(clusterCtx(t), []string{"-cluster-demo"}, &out, &errOut, env(map[string]string{"CART_MEMBER_BINARY": bin}))
	require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	for _, want := range []string{
		"DATABASE_URL is not set: starting a throwaway PostgreSQL",
		"Every member serves HTTP and knows the 3 members",
		"→ member 2: PUT /api/tenants/",
		"← 409 {\"error\":\"Cart is not active\"}",
		"(the same through members 1 to 3)",
		"Every member lists the 3 carts.",
		"The log holds each cart's 5 events once, at versions 1 to 5.",
		"Every member exited cleanly.",
		"Cluster demo finished: every check passed.",
	} {
		require.Contains(t, out.String(), want)
	}
	require.Contains(t, out.String(), "sent on to member", "some write went to another member")
}

// A cart created through member 1 is changed through member 2 — by many
// senders at once, through all three members — and read through member 3;
// the carts read model and the log are right.
func TestClusterCartThroughThreeMembers(t *testing.T) {
	t.Parallel()
	bin := buildMemberBinary(t)
	ctx := clusterCtx(t)
	dsn := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool))

	var progress syncBuffer
	ms, err := startMembers(ctx, &progress, clusterDemoEnv{dbURL: dsn, bin: bin, members: 3}, t.TempDir(), "cart-test")
	require.NoError(t, err, progress.String())
	t.Cleanup(func() { require.NoError(t, stopMembers(ms)) })

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	do := func(m *member, method, path, body string) (int, http.Header, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, m.base()+path, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var v map[string]any
		_ = json.Unmarshal(raw, &v)
		require.Equal(t, m.cluster, resp.Header.Get(service.MemberHeader), "%s %s on member %d", method, path, m.n)
		return resp.StatusCode, resp.Header, v
	}

	st, _, _ := do(ms[0], "POST", "/api/tenants", `{"tenantId":"acme","name":"Acme"}`)
	require.Equal(t, http.StatusCreated, st)
	st, hdr, created := do(ms[0], "POST", "/api/tenants/acme/carts", `{"currency":"EUR"}`)
	require.Equal(t, http.StatusCreated, st, "%v", created)
	cartID := created["cartId"].(string)
	owner := hdr.Get(service.OwnerHeader)
	require.Contains(t, []string{ms[0].cluster, ms[1].cluster, ms[2].cluster}, owner)

	// Member 2 adds one item; then 3 senders on each member add 5 more
	// each, all to the same cart at once.
	path := "/api/tenants/acme/carts/" + cartID
	st, hdr, _ = do(ms[1], "PUT", path+"/items", `{"action":"add","item":{"sku":"A","name":"A","unitPrice":2.5,"quantity":1}}`)
	require.Equal(t, http.StatusCreated, st)
	require.Equal(t, owner, hdr.Get(service.OwnerHeader), "the cart's owner moved while every member was up")
	const sendersPerMember, addsPerSender = 3, 5
	var wg sync.WaitGroup
	errs := make(chan error, len(ms)*sendersPerMember*addsPerSender)
	for _, m := range ms {
		for range sendersPerMember {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range addsPerSender {
					req, err := http.NewRequestWithContext(ctx, "PUT", m.base()+path+"/items",
						strings.NewReader(`{"action":"add","item":{"sku":"A","name":"A","unitPrice":2.5,"quantity":1}}`))
					if err != nil {
						errs <- err
						return
					}
					resp, err := client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						errs <- fmt.Errorf("member %d: %d %s", m.n, resp.StatusCode, body)
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	const quantity = 1 + 3*sendersPerMember*addsPerSender
	st, _, co := do(ms[1], "PUT", path+"/checkout", `{"orderId":"6f1c3c8e-2b53-4e7b-9d0a-3a5f6c1d2e4f"}`)
	require.Equal(t, http.StatusCreated, st, "%v", co)
	require.EqualValues(t, 2.5*quantity, co["total"])

	// Read through member 3, waiting for the checkout.
	st, _, view := do(ms[2], "GET", path+"?waitFor="+co["position"].(string), "")
	require.Equal(t, http.StatusOK, st, "%v", view)
	require.Equal(t, true, view["isCheckedOut"])
	require.EqualValues(t, 2.5*quantity, view["total"])
	require.Equal(t, "6f1c3c8e-2b53-4e7b-9d0a-3a5f6c1d2e4f", view["orderId"])
	items := view["items"].([]any)
	require.Len(t, items, 1)
	require.EqualValues(t, quantity, items[0].(map[string]any)["quantity"])

	// The read model's row itself, and the log: create, every add once,
	// checkout, at versions 1..n.
	var totalRight, checkedOut bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT total = $2::numeric, is_checked_out FROM carts WHERE partition = 'acme' AND cart_id = $1`,
		cartID, fmt.Sprint(2.5*quantity)).Scan(&totalRight, &checkedOut))
	require.True(t, checkedOut)
	require.True(t, totalRight, "the carts row's total is 2.5 × %d", quantity)
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	res, err := es.ReadStream(ctx, store.StreamID(cartID), store.ReadOptions{Partition: "acme"})
	require.NoError(t, err)
	require.Len(t, res.Events, 1+quantity+1)
	for i, e := range res.Events {
		require.EqualValues(t, i+1, e.StreamPosition)
	}
	require.Equal(t, "CartCreated", res.Events[0].Type)
	require.Equal(t, "CartCheckedOut", res.Events[len(res.Events)-1].Type)
}
