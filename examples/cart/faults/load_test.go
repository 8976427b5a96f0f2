//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/troupehq/troupe/examples/cart/cart"
)

// Load shape: workers clients, each at most one request in flight and at
// most ratePerWorker requests a second, at most maxRequestsPerWorker in all.
const (
	workers              = 8
	ratePerWorker        = 40
	maxRequestsPerWorker = 20_000
)

// ack is a write the service acknowledged (201): its event must be in the
// log at the stream position the answer gave.
type ack struct {
	cartID    string
	version   int64
	globalPos int64
	eventType string
}

// load drives the cart API from bounded concurrent clients and records
// every request's outcome and duration.
type load struct {
	base   string
	tenant string
	client *http.Client

	mu          sync.Mutex
	requests    int
	acks        []ack
	failed      map[string]int // by status ("503", "conn", ...)
	longest     time.Duration
	longestWhat string
	slow        []string // requests over the allowed duration
	allowed     time.Duration

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newLoad(base, tenant string, allowed time.Duration) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	return &load{base: base, tenant: tenant, allowed: allowed, failed: map[string]int{},
		// The client's own timeout is well past the allowed duration, so a
		// request that hangs is measured, not cut to look fine.
		client: &http.Client{Transport: tr, Timeout: allowed + 15*time.Second}}
}

// start launches the workers; they run until stop (or their request cap).
func (l *load) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.worker(ctx, w)
		}()
	}
}

// stop ends the workers and waits for their requests in flight.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
	l.client.CloseIdleConnections()
}

func (l *load) ackCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// step is one request of a cart's life.
type step struct {
	method, path, body, eventType string
}

// lifecycle is what each worker does to a cart after creating it; the
// last step ends the cart (checkout, cancel, or empty then checkout).
func lifecycle(n int) []step {
	add := func(sku string, qty int) step {
		return step{"PUT", "/items", fmt.Sprintf(`{"action":"add","item":{"sku":%q,"name":"Item %s","unitPrice":"2.50","quantity":%d}}`, sku, sku, qty), cart.TypeItemAddedToCart}
	}
	steps := []step{add("A", 2), add("B", 1), add("A", 1),
		{"PUT", "/items", `{"action":"remove","sku":"A","quantity":1}`, cart.TypeItemRemovedFromCart}}
	switch n % 3 {
	case 0:
		steps = append(steps, step{"PUT", "/checkout", "", cart.TypeCartCheckedOut})
	case 1:
		steps = append(steps, step{"PUT", "/cancel", `{"reason":"changed my mind"}`, cart.TypeCartCancelled})
	default:
		steps = append(steps, step{"PUT", "/empty", "", cart.TypeCartEmptied}, add("C", 3),
			step{"PUT", "/checkout", "", cart.TypeCartCheckedOut})
	}
	return steps
}

func (l *load) worker(ctx context.Context, w int) {
	tick := time.NewTicker(time.Second / ratePerWorker)
	defer tick.Stop()
	var cartID string
	var steps []step
	carts := 0
	for range maxRequestsPerWorker {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if cartID == "" || len(steps) == 0 {
			status, body := l.do(ctx, "POST", "/api/tenants/"+l.tenant+"/carts", `{"currency":"EUR"}`, cart.TypeCartCreated, "")
			if status == http.StatusCreated {
				var a struct{ CartID string }
				if json.Unmarshal(body, &a) == nil && a.CartID != "" {
					cartID, steps = a.CartID, lifecycle(w+carts)
					carts++
				}
			}
			continue
		}
		s := steps[0]
		status, _ := l.do(ctx, s.method, "/api/tenants/"+l.tenant+"/carts/"+cartID+s.path, s.body, s.eventType, cartID)
		switch {
		case status == http.StatusCreated:
			steps = steps[1:]
		case status >= 400 && status < 500:
			// The cart is not where this worker thought (a write whose
			// outcome was unknown went through): start a new one.
			steps = nil
		}
		// 503 and connection errors: try the same step again.
	}
}

// do sends one request and records it; on 201 it records the ack.
func (l *load) do(ctx context.Context, method, path, body, eventType, cartID string) (int, []byte) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	// The request is not tied to ctx: stopping the load lets requests in
	// flight finish, so their outcome is known.
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, l.base+path, rd)
	if err != nil {
		panic(err)
	}
	began := time.Now()
	resp, err := l.client.Do(req)
	var data []byte
	status := 0
	if err == nil {
		data, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		status = resp.StatusCode
	}
	took := time.Since(began)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	what := method + " " + routeOf(path)
	if took > l.longest {
		l.longest, l.longestWhat = took, what
	}
	if took > l.allowed {
		l.slow = append(l.slow, fmt.Sprintf("%s took %s (status %d, error %v)", what, took.Round(time.Millisecond), status, err))
	}
	switch {
	case err != nil:
		l.failed["conn"]++
		return 0, nil
	case status == http.StatusCreated:
		var a struct {
			CartID         string `json:"cartId"`
			Version        int64  `json:"version"`
			GlobalPosition int64  `json:"globalPosition"`
		}
		if json.Unmarshal(data, &a) != nil {
			l.failed["bad 201 body"]++
			return status, data
		}
		if cartID == "" {
			cartID = a.CartID
		}
		l.acks = append(l.acks, ack{cartID: cartID, version: a.Version, globalPos: a.GlobalPosition, eventType: eventType})
	default:
		l.failed[strconv.Itoa(status)]++
		if status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			l.failed["503 without Retry-After"]++
		}
	}
	return status, data
}

// routeOf replaces the ids in a path by their names.
func routeOf(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if len(p) == 36 && strings.Count(p, "-") == 4 {
			parts[i] = "{cartId}"
		}
	}
	return strings.Join(parts, "/")
}

// figures is the one-line summary of a run.
func (l *load) figures(name string, lost int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.failed))
	total := 0
	for k, n := range l.failed {
		keys = append(keys, k)
		if k != "503 without Retry-After" {
			total += n
		}
	}
	slices.Sort(keys)
	by := make([]string, len(keys))
	for i, k := range keys {
		by[i] = fmt.Sprintf("%s:%d", k, l.failed[k])
	}
	return fmt.Sprintf("%s: requests=%d acknowledged=%d failed=%d (%s) lost=%d longest=%s (%s)",
		name, l.requests, len(l.acks), total, strings.Join(by, " "), lost, l.longest.Round(time.Millisecond), l.longestWhat)
}
