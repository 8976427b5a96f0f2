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

// kill -9 of one of three members while senders on the two others add
// items to carts owned by all three: the survivors' senders pause until the
// dead member is dropped (membership in PostgreSQL: TTL 5s plus a
// heartbeat), then go on; no acknowledged add is lost or applied twice, and
// the carts read model agrees with the log.
func TestClusterMemberKilledUnderLoad(t *testing.T) {
	t.Parallel()
	bin := buildMemberBinary(t)
	ctx := clusterCtx(t)
	dsn := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, postgres.Migrate(ctx, pool))
	var progress syncBuffer
	ms, err := startMembers(ctx, &progress, clusterDemoEnv{dbURL: dsn, bin: bin, members: 3}, t.TempDir(), "cart-kill")
	require.NoError(t, err, progress.String())
	survivors := ms[:2]
	t.Cleanup(func() { require.NoError(t, stopMembers(survivors)) })
	victim := ms[2]

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	post := func(m *member, method, path, body string) (int, map[string]any, http.Header, error) {
		req, err := http.NewRequestWithContext(ctx, method, m.base()+path, strings.NewReader(body))
		if err != nil {
			return 0, nil, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v, resp.Header, nil
	}
	st, _, _, err := post(ms[0], "POST", "/api/tenants", `{"tenantId":"acme","name":"Acme"}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, st)
	const carts = 12
	var ids []string
	owned := map[string]int{}
	ownerOf := map[string]string{}
	for range carts {
		st, v, hdr, err := post(ms[0], "POST", "/api/tenants/acme/carts", `{"currency":"EUR"}`)
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, st, "%v", v)
		ids = append(ids, v["cartId"].(string))
		owned[hdr.Get(service.OwnerHeader)]++
		ownerOf[ids[len(ids)-1]] = hdr.Get(service.OwnerHeader)
	}
	require.Positive(t, owned[victim.cluster], "no cart is owned by the member to kill: %v", owned)

	type tally struct {
		mu           sync.Mutex
		acked, fails map[string]int
		firstFail    string
		// backAt is when each of the victim's carts was first
		// acknowledged after the kill.
		backAt map[string]time.Time
	}
	tl := &tally{acked: map[string]int{}, fails: map[string]int{}, backAt: map[string]time.Time{}}
	var killedAt time.Time
	var killMu sync.Mutex
	stop := make(chan struct{})
	pauses := make(chan time.Duration, 4)
	var wg sync.WaitGroup
	for i, m := range survivors {
		for s := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var longest time.Duration
				lastAck := time.Now()
				for n := 0; ; n++ {
					select {
					case <-stop:
						pauses <- longest
						return
					default:
					}
					id := ids[(n*7+s*3+i)%carts]
					st, v, _, err := post(m, "PUT", "/api/tenants/acme/carts/"+id+"/items",
						`{"action":"add","item":{"sku":"A","name":"A","unitPrice":1,"quantity":1}}`)
					now := time.Now()
					tl.mu.Lock()
					if err == nil && st == http.StatusCreated {
						tl.acked[id]++
						killMu.Lock()
						if !killedAt.IsZero() && lastAck.Before(killedAt) {
							lastAck = killedAt // the pause counts from the kill
						}
						if !killedAt.IsZero() && ownerOf[id] == victim.cluster && tl.backAt[id].IsZero() {
							tl.backAt[id] = now
						}
						killMu.Unlock()
						longest = max(longest, now.Sub(lastAck))
						lastAck = now
					} else {
						tl.fails[id]++
						if tl.firstFail == "" {
							tl.firstFail = fmt.Sprintf("%d %v %v", st, v, err)
						}
					}
					tl.mu.Unlock()
				}
			}()
		}
	}
	time.Sleep(2 * time.Second)
	killMu.Lock()
	killedAt = time.Now()
	killMu.Unlock()
	require.NoError(t, victim.cmd.Process.Kill())
	<-victim.exited
	// Until every cart of the killed member has been acknowledged again.
	require.Eventually(t, func() bool {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		for id, owner := range ownerOf {
			if owner == victim.cluster && tl.backAt[id].IsZero() {
				return false
			}
		}
		return true
	}, time.Minute, 100*time.Millisecond, "the killed member's carts were not answered again within a minute")
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	close(pauses)
	// A last write, after every other answer: the read model is read at it.
	st, v, _, err := post(ms[0], "PUT", "/api/tenants/acme/carts/"+ids[0]+"/items",
		`{"action":"add","item":{"sku":"B","name":"B","unitPrice":1,"quantity":1}}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, st, "%v", v)
	tl.acked[ids[0]+"/B"]++
	lastPos := v["position"].(string)
	var longest, failover time.Duration
	for p := range pauses {
		longest = max(longest, p)
	}
	for id, owner := range ownerOf {
		if owner == victim.cluster {
			require.False(t, tl.backAt[id].IsZero(), "cart %s of the killed member was never acknowledged again", id)
			failover = max(failover, tl.backAt[id].Sub(killedAt))
		}
	}

	// The log: per cart, create + every acknowledged add, and no more than
	// the adds that were sent.
	es, err := postgres.New(pool, nil)
	require.NoError(t, err)
	var sent, acked, lost, dup int
	for _, id := range ids {
		res, err := es.ReadStream(ctx, store.StreamID(id), store.ReadOptions{Partition: "acme"})
		require.NoError(t, err)
		for i, e := range res.Events {
			require.EqualValues(t, i+1, e.StreamPosition)
		}
		adds := len(res.Events) - 1
		want := tl.acked[id] + tl.acked[id+"/B"]
		sent += want + tl.fails[id]
		acked += want
		lost += max(want-adds, 0)
		dup += max(adds-want-tl.fails[id], 0)
	}
	t.Logf("kill -9 of 1 of 3 members (membership in PostgreSQL, defaults), 4 HTTP senders on the survivors, %d carts (%d owned by the victim): "+
		"adds sent %d, acknowledged %d, lost %d, duplicated %d, failed requests %d (first: %s), longest pause of a sender after the kill %s, "+
		"every cart of the killed member acknowledged again after %s",
		carts, owned[victim.cluster], sent, acked, lost, dup, sent-acked, tl.firstFail, longest.Round(time.Millisecond), failover.Round(time.Millisecond))
	require.Zero(t, lost, "acknowledged adds missing from the log")
	require.Zero(t, dup, "adds applied more often than sent")
	require.Less(t, longest, 20*time.Second, "the survivors' senders did not go on")

	// The read model agrees with the log through a survivor.
	for _, id := range ids[:3] {
		res, err := es.ReadStream(ctx, store.StreamID(id), store.ReadOptions{Partition: "acme"})
		require.NoError(t, err)
		st, v, _, err := post(ms[1], "GET", "/api/tenants/acme/carts/"+id+"?waitFor="+lastPos+"&timeout=30s", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, st, "%v", v)
		var qty float64
		for _, it := range v["items"].([]any) {
			qty += it.(map[string]any)["quantity"].(float64)
		}
		require.EqualValues(t, len(res.Events)-1, qty, "cart %s", id)
	}
}
