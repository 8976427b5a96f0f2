package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/cmd/troupe/internal/bench/benchcart"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// RunResult is one throughput run of one mode at one concurrency.
type RunResult struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Commands    int64   `json:"commands"`
	Events      int64   `json:"events"`
	// CommandsPerSec and EventsPerSec count commands answered without an
	// error in the measured window.
	CommandsPerSec float64 `json:"commandsPerSec"`
	EventsPerSec   float64 `json:"eventsPerSec"`
	Latency        Latency `json:"latency"`
	Errors         int64   `json:"errors"`
	FirstError     string  `json:"firstError,omitempty"`
	// Conflicts are the version conflicts met (and retried, up to the
	// retry budget) in the window.
	Conflicts int64 `json:"conflicts"`
	// RoundTrips are the database round trips of the mode's pool in the
	// window; RoundTripsPerCommand divides them by the commands answered.
	RoundTrips           int64   `json:"roundTrips"`
	RoundTripsPerCommand float64 `json:"roundTripsPerCommand"`
}

// senderStats is what one sender measured.
type senderStats struct {
	lats      []time.Duration
	commands  int64
	events    int64
	errors    int64
	firstErr  error
	conflicts int64
}

// throughputRun runs the workload in mode with c senders on a fresh
// database. With keep, the database is returned (the caller drops it);
// otherwise it is dropped.
func (b *bench) throughputRun(ctx context.Context, mode string, c int, keep bool) (res RunResult, kept *database, err error) {
	res = RunResult{Mode: mode, Concurrency: c}
	db, err := b.srv.newDatabase(ctx)
	if err != nil {
		return res, nil, err
	}
	defer func() {
		if !keep || err != nil {
			if derr := db.drop(ctx); derr != nil && err == nil {
				err = derr
			}
		}
	}()
	rt := &roundTrips{}
	poolSize := b.cfg.PoolSize
	if poolSize <= 0 {
		poolSize = c + 8
	}
	pool, err := db.pool(ctx, poolSize, rt)
	if err != nil {
		return res, nil, err
	}
	defer pool.Close()
	cmdr, err := b.newCommander(ctx, mode, pool, 0)
	if err != nil {
		return res, nil, err
	}
	defer func() {
		if cerr := cmdr.close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("stop the %s mode: %w", mode, cerr)
		}
	}()

	wl := newWorkload(b.cfg.Tenants, b.cfg.Carts, b.cfg.Items, fmt.Sprintf("r%d", b.seq.Add(1)))
	start := time.Now()
	t0 := start.Add(b.cfg.Warmup)
	t1 := t0.Add(b.cfg.Duration)
	stats := make([]*senderStats, c)
	var wg sync.WaitGroup
	for i := range c {
		st := &senderStats{}
		stats[i] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			for {
				cmd, tok, ok := wl.next(ctx, rng)
				if !ok {
					return
				}
				sent := time.Now()
				out, err := cmdr.send(ctx, cmd)
				end := time.Now()
				wl.done(tok, err != nil)
				if end.After(t0) && !end.After(t1) {
					st.conflicts += int64(out.conflicts)
					if err != nil {
						st.errors++
						if st.firstErr == nil {
							st.firstErr = err
						}
					} else {
						st.commands++
						st.events += int64(out.events)
						st.lats = append(st.lats, end.Sub(sent))
					}
				}
				if end.After(t1) {
					return
				}
			}
		}()
	}
	var rt0, rt1, conf0, conf1 int64
	var m0, m1 time.Time
	waitErr := waitUntil(ctx, t0)
	m0, rt0, conf0 = time.Now(), rt.load(), cmdr.conflicts()
	if waitErr == nil {
		waitErr = waitUntil(ctx, t1)
	}
	m1, rt1, conf1 = time.Now(), rt.load(), cmdr.conflicts()
	wl.close()
	wg.Wait()
	if waitErr != nil {
		return res, nil, waitErr
	}

	var lats []time.Duration
	for _, st := range stats {
		lats = append(lats, st.lats...)
		res.Commands += st.commands
		res.Events += st.events
		res.Errors += st.errors
		if st.firstErr != nil && res.FirstError == "" {
			res.FirstError = st.firstErr.Error()
		}
	}
	res.Seconds = m1.Sub(m0).Seconds()
	res.Latency = summarize(lats)
	res.CommandsPerSec = float64(res.Commands) / res.Seconds
	res.EventsPerSec = float64(res.Events) / res.Seconds
	res.Conflicts = conf1 - conf0
	res.RoundTrips = rt1 - rt0
	if res.Commands > 0 {
		res.RoundTripsPerCommand = float64(res.RoundTrips) / float64(res.Commands)
	}
	if keep {
		return res, db, nil
	}
	return res, nil, nil
}

// waitUntil waits until t or until ctx ends (returning its error).
func waitUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newCommander returns mode's command handler on a store on pool.
// maxActors caps the host's actors (0: the host's default).
// Both modes append through a store with a postgres.Notifier, as a
// production service would: listeners are told of appends at most once per
// notify interval instead of by a pg_notify inside every append, which
// serialises commits on the server's notification queue.
func (b *bench) newCommander(ctx context.Context, mode string, pool *pgxpool.Pool, maxActors int) (commander, error) {
	// The notifier sends from a small pool of its own, off the commands'
	// path, so the round trips counted on pool are the commands' own.
	ncfg := pool.Config().Copy()
	ncfg.MaxConns, ncfg.MinConns = 2, 0
	ncfg.ConnConfig.Tracer = nil
	npool, err := pgxpool.NewWithConfig(ctx, ncfg)
	if err != nil {
		return nil, err
	}
	notifier, err := postgres.NewNotifier(npool, &postgres.NotifierConfig{Logger: b.cfg.Logger})
	if err != nil {
		npool.Close()
		return nil, err
	}
	es, err := postgres.New(pool, &postgres.Config{Logger: b.cfg.Logger, Notifier: notifier})
	if err != nil {
		npool.Close()
		return nil, err
	}
	var c commander
	switch mode {
	case ModeActor:
		c, err = newActorMode(ctx, es, maxActors, b.cfg.Logger)
	case ModeStateless:
		c, err = newStatelessMode(es)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		npool.Close()
		return nil, err
	}
	if err := notifier.Start(ctx); err != nil {
		_ = c.close(ctx)
		npool.Close()
		return nil, err
	}
	return notifyingCommander{commander: c, notifier: notifier, pool: npool}, nil
}

// notifyingCommander stops the store's notifier, and closes its pool,
// after the commander.
type notifyingCommander struct {
	commander
	notifier *postgres.Notifier
	pool     *pgxpool.Pool
}

func (c notifyingCommander) close(ctx context.Context) error {
	err := c.commander.close(ctx)
	if nerr := c.notifier.Stop(ctx); err == nil {
		err = nerr
	}
	c.pool.Close()
	return err
}

// ProjectionResult is the carts projection run from cold over a log.
type ProjectionResult struct {
	Events       int64   `json:"events"`
	Carts        int64   `json:"carts"`
	BatchSize    int     `json:"batchSize"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"eventsPerSec"`
}

// lastEventSQL reads the log's last position in commit-safe order. The
// output column is not named transaction_id: ORDER BY would sort by it, as
// text.
const lastEventSQL = `SELECT m.transaction_id::text AS txid, m.global_position FROM messages m
ORDER BY m.transaction_id DESC, m.global_position DESC LIMIT 1`

// lastPosition returns the log's last position and its number of events.
func lastPosition(ctx context.Context, pool *pgxpool.Pool) (store.Position, int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM messages`).Scan(&n); err != nil {
		return store.Position{}, 0, fmt.Errorf("count the events: %w", err)
	}
	if n == 0 {
		return store.Position{}, 0, nil
	}
	var txt string
	var gp int64
	if err := pool.QueryRow(ctx, lastEventSQL).Scan(&txt, &gp); err != nil {
		return store.Position{}, 0, fmt.Errorf("read the last event: %w", err)
	}
	tx, err := strconv.ParseUint(txt, 10, 64)
	if err != nil {
		return store.Position{}, 0, fmt.Errorf("parse transaction id %q: %w", txt, err)
	}
	return store.Position{TransactionID: tx, GlobalPosition: store.GlobalPosition(gp)}, n, nil
}

// projectionCold runs the carts projection from the start of db's log
// until it has applied every event, with an empty read model and cache,
// and times it.
func (b *bench) projectionCold(ctx context.Context, db *database, batch int) (ProjectionResult, error) {
	res := ProjectionResult{BatchSize: batch}
	pool, err := db.pool(ctx, 8, nil)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `DELETE FROM bench_carts; DELETE FROM snapshots WHERE readmodel_table_name = 'bench_carts'`); err != nil {
		return res, fmt.Errorf("empty the read model: %w", err)
	}
	last, n, err := lastPosition(ctx, pool)
	if err != nil {
		return res, err
	}
	res.Events = n
	p, err := benchcart.NewProjection(pool, fmt.Sprintf("bench_carts_cold_%d", batch), batch, b.cfg.Logger)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := p.Start(ctx); err != nil {
		return res, fmt.Errorf("start the carts projection: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	werr := p.WaitFor(wctx, last)
	elapsed := time.Since(start)
	cancel()
	if err := p.Stop(context.WithoutCancel(ctx)); err != nil && werr == nil {
		werr = fmt.Errorf("stop the carts projection: %w", err)
	}
	if werr != nil {
		return res, werr
	}
	// Check the projection really is at the end of the log: one row per
	// cart stream.
	var streams int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM bench_carts), (SELECT count(*) FROM streams WHERE stream_type = $1)`,
		benchcart.StreamType).Scan(&res.Carts, &streams); err != nil {
		return res, fmt.Errorf("count the carts rows: %w", err)
	}
	if res.Carts != streams {
		return res, fmt.Errorf("the projection reported the end of the log with %d carts rows for %d cart streams", res.Carts, streams)
	}
	res.Seconds = elapsed.Seconds()
	res.EventsPerSec = float64(n) / res.Seconds
	return res, nil
}

// LagResult is the end-to-end lag at a fixed command rate.
type LagResult struct {
	TargetRate   int     `json:"targetRate"`
	AchievedRate float64 `json:"achievedRate"`
	Seconds      float64 `json:"seconds"`
	Commands     int64   `json:"commands"`
	Errors       int64   `json:"errors"`
	FirstError   string  `json:"firstError,omitempty"`
	// Lag runs from the command's reply (its append committed) to the
	// projection's checkpoint passing the append, which commits with the
	// read-model row: the row is visible from then on.
	Lag Latency `json:"lag"`
	// CommandToVisible runs from the command's scheduled send time to the
	// row being visible: queueing, the command and the lag.
	CommandToVisible Latency `json:"commandToVisible"`
}

// lagWorkers is how many goroutines send the lag measurement's commands.
const lagWorkers = 64

// lag sends commands through the actor host at cfg.LagRate for
// cfg.LagDuration with the carts projection running, and measures when
// each command's row becomes visible.
func (b *bench) lag(ctx context.Context) (res LagResult, err error) {
	res.TargetRate = b.cfg.LagRate
	db, err := b.srv.newDatabase(ctx)
	if err != nil {
		return res, err
	}
	defer func() {
		if derr := db.drop(ctx); derr != nil && err == nil {
			err = derr
		}
	}()
	cmdPool, err := db.pool(ctx, lagWorkers+8, nil)
	if err != nil {
		return res, err
	}
	defer cmdPool.Close()
	projPool, err := db.pool(ctx, 8, nil)
	if err != nil {
		return res, err
	}
	defer projPool.Close()
	p, err := benchcart.NewProjection(projPool, benchcart.Table, b.cfg.ProjectionBatches[0], b.cfg.Logger)
	if err != nil {
		return res, err
	}
	if err := p.Start(ctx); err != nil {
		return res, fmt.Errorf("start the carts projection: %w", err)
	}
	defer func() {
		if serr := p.Stop(context.WithoutCancel(ctx)); serr != nil && err == nil {
			err = fmt.Errorf("stop the carts projection: %w", serr)
		}
	}()
	cmdr, err := b.newCommander(ctx, ModeActor, cmdPool, 0)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := cmdr.close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("stop the actor host: %w", cerr)
		}
	}()

	wl := newWorkload(b.cfg.Tenants, b.cfg.Carts, b.cfg.Items, "lag")
	tokens := make(chan time.Time, b.cfg.LagRate*int(b.cfg.LagDuration/time.Second+2))
	var mu sync.Mutex
	var lags, e2e []time.Duration
	var errs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	var wg, waiters sync.WaitGroup
	for i := range lagWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
			for due := range tokens {
				cmd, tok, ok := wl.next(ctx, rng)
				if !ok {
					return
				}
				out, err := cmdr.send(ctx, cmd)
				reply := time.Now()
				wl.done(tok, err != nil)
				if err != nil {
					fail(err)
					continue
				}
				// Wait for visibility off the sender, so the sender is free
				// for the next command: the rate is not bounded by the lag.
				waiters.Add(1)
				go func() {
					defer waiters.Done()
					wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					err := p.WaitFor(wctx, out.position)
					cancel()
					visible := time.Now()
					if err != nil {
						fail(err)
						return
					}
					mu.Lock()
					lags = append(lags, visible.Sub(reply))
					e2e = append(e2e, visible.Sub(due))
					mu.Unlock()
				}()
			}
		}()
	}

	// Pace: every tick, issue the commands due by now.
	start := time.Now()
	end := start.Add(b.cfg.LagDuration)
	tick := time.NewTicker(time.Millisecond)
	issued := 0
	var pacingErr error
pace:
	for {
		select {
		case now := <-tick.C:
			if now.After(end) {
				now = end
			}
			due := int(now.Sub(start).Seconds() * float64(b.cfg.LagRate))
			for ; issued < due; issued++ {
				at := start.Add(time.Duration(float64(issued) / float64(b.cfg.LagRate) * float64(time.Second)))
				select {
				case tokens <- at:
				default:
					fail(errors.New("sender queue full: the host fell behind the rate"))
				}
			}
			if !now.Before(end) {
				break pace
			}
		case <-ctx.Done():
			pacingErr = ctx.Err()
			break pace
		}
	}
	tick.Stop()
	close(tokens)
	if pacingErr != nil {
		wl.close()
	}
	wg.Wait()
	waiters.Wait()
	wl.close()
	if pacingErr != nil {
		return res, pacingErr
	}
	elapsed := time.Since(start)
	res.Seconds = b.cfg.LagDuration.Seconds()
	res.Commands = int64(len(lags))
	res.AchievedRate = float64(res.Commands) / elapsed.Seconds()
	res.Errors = errs.Load()
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	res.Lag = summarize(lags)
	res.CommandToVisible = summarize(e2e)
	return res, nil
}

// MemoryResult is the heap held per live stream actor.
type MemoryResult struct {
	Streams        int     `json:"streams"`
	LiveActors     int     `json:"liveActors"`
	HeapBefore     uint64  `json:"heapBeforeBytes"`
	HeapAfter      uint64  `json:"heapAfterBytes"`
	BytesPerActor  float64 `json:"bytesPerActor"`
	EventsPerActor int     `json:"eventsPerStream"`
}

// memoryWarm are streams activated before the baseline, so pool
// connections and the host's own structures are already in it.
const memoryWarm = 200

// memory activates cfg.MemoryStreams stream actors (carts holding one
// item) and measures the live heap before and after, after a GC.
func (b *bench) memory(ctx context.Context) (res MemoryResult, err error) {
	m := b.cfg.MemoryStreams
	res.Streams, res.EventsPerActor = m, 2
	es, codec, closeScratch, err := b.scratchStore(ctx, 16)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := closeScratch(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	const tenant = "bench-mem"
	id := func(i int) string { return fmt.Sprintf("mem-%d", i) }
	total := m + memoryWarm
	if err := parallel(ctx, 16, total, func(i int) error {
		evs := []any{
			benchcart.CartCreated{EventData: benchcart.CartCreatedData{Currency: "EUR"},
				EventMeta: benchcart.EventMeta{TenantID: tenant, CartID: id(i), Version: 1}},
			benchcart.ItemAddedToCart{EventData: benchcart.ItemAddedToCartData{Item: benchcart.Item{SKU: "sku-1", Name: "Item 1",
				UnitPrice: benchcart.Price(1999), Quantity: 1}},
				EventMeta: benchcart.EventMeta{TenantID: tenant, CartID: id(i), Version: 1}},
		}
		data, err := store.Encode(codec, evs...)
		if err != nil {
			return err
		}
		_, err = es.AppendToStream(ctx, store.StreamID(id(i)), data, store.AppendOptions{Partition: tenant,
			StreamType: benchcart.StreamType, ExpectedVersion: store.Exact(0)})
		return err
	}); err != nil {
		return res, fmt.Errorf("seed the carts: %w", err)
	}
	am, err := newActorMode(ctx, es, total+64, b.cfg.Logger)
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := am.close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("stop the actor host: %w", cerr)
		}
	}()
	activate := func(from, to int) error {
		return parallel(ctx, 8, to-from, func(i int) error {
			_, _, err := am.carts.State(ctx, tenant, store.StreamID(id(from+i)))
			return err
		})
	}
	if err := activate(m, total); err != nil {
		return res, fmt.Errorf("activate the warm-up actors: %w", err)
	}
	res.HeapBefore = liveHeap()
	if err := activate(0, m); err != nil {
		return res, fmt.Errorf("activate the actors: %w", err)
	}
	res.HeapAfter = liveHeap()
	res.LiveActors = am.host.Stats().LiveActors - memoryWarm
	if res.HeapAfter > res.HeapBefore {
		res.BytesPerActor = float64(res.HeapAfter-res.HeapBefore) / float64(m)
	}
	return res, nil
}

// liveHeap returns the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first
// error; after an error the remaining indexes are skipped.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// LengthResult is one command's latency on a stream of Events events.
type LengthResult struct {
	Events    int     `json:"events"`
	Cached    Latency `json:"cached"`
	Stateless Latency `json:"stateless"`
}

// seedChunk is how many events one seeding append writes.
const seedChunk = 1000

// streamLengths times AddItem commands on carts of each configured length,
// through a warmed actor (cached state) and through the stateless handler.
func (b *bench) streamLengths(ctx context.Context) (out []LengthResult, err error) {
	es, codec, closeScratch, err := b.scratchStore(ctx, 8)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := closeScratch(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	am, err := newActorMode(ctx, es, 0, b.cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := am.close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("stop the actor host: %w", cerr)
		}
	}()
	sm, err := newStatelessMode(es)
	if err != nil {
		return nil, err
	}
	const tenant = "bench-len"
	for _, n := range b.cfg.StreamLengths {
		r := LengthResult{Events: n}
		for _, mode := range []string{ModeActor, ModeStateless} {
			id := fmt.Sprintf("len-%d-%s", n, mode)
			if err := seedCart(ctx, es, codec, tenant, id, n); err != nil {
				return nil, fmt.Errorf("seed a cart of %d events: %w", n, err)
			}
			var cmdr commander = sm
			if mode == ModeActor {
				cmdr = am
				if _, _, err := am.carts.State(ctx, tenant, store.StreamID(id)); err != nil {
					return nil, fmt.Errorf("activate the cart of %d events: %w", n, err)
				}
			}
			lats := make([]time.Duration, 0, b.cfg.LengthSamples)
			for range b.cfg.LengthSamples {
				cmd := benchcart.AddItem{TenantID: tenant, CartID: id, CreatedBy: "bench", Item: benchcart.Item{SKU: "sku-1",
					Name: "Item 1", UnitPrice: benchcart.Price(1999), Quantity: 1}}
				start := time.Now()
				if _, err := cmdr.send(ctx, cmd); err != nil {
					return nil, fmt.Errorf("%s command on a cart of %d events: %w", mode, n, err)
				}
				lats = append(lats, time.Since(start))
			}
			if mode == ModeActor {
				r.Cached = summarize(lats)
			} else {
				r.Stateless = summarize(lats)
			}
		}
		out = append(out, r)
		b.progressf("  %s events: cached p50 %.2f ms, stateless p50 %.2f ms", fmtInt(int64(n)), r.Cached.P50, r.Stateless.P50)
	}
	return out, nil
}

// seedCart writes a cart of n events: CartCreated and n-1 ItemAddedToCart
// of one SKU, in appends of seedChunk events.
func seedCart(ctx context.Context, es store.EventStore, codec store.Codec, tenant, id string, n int) error {
	meta := benchcart.EventMeta{TenantID: tenant, CartID: id, CreatedBy: "bench", Version: benchcart.EventSchemaVersion}
	add := benchcart.ItemAddedToCart{EventData: benchcart.ItemAddedToCartData{Item: benchcart.Item{SKU: "sku-1", Name: "Item 1",
		UnitPrice: benchcart.Price(1999), Quantity: 1}}, EventMeta: meta}
	written := 0
	for written < n {
		size := min(seedChunk, n-written)
		evs := make([]any, size)
		for i := range evs {
			evs[i] = add
		}
		if written == 0 {
			evs[0] = benchcart.CartCreated{EventData: benchcart.CartCreatedData{Currency: "EUR"}, EventMeta: meta}
		}
		data, err := store.Encode(codec, evs...)
		if err != nil {
			return err
		}
		if _, err := es.AppendToStream(ctx, store.StreamID(id), data, store.AppendOptions{Partition: tenant,
			StreamType: benchcart.StreamType, ExpectedVersion: store.Exact(store.Version(written))}); err != nil {
			return err
		}
		written += size
	}
	return nil
}

// scratchStore opens a scratch database with a pool of conns connections,
// a store on it and the cart codec. closeScratch closes the pool and drops
// the database.
func (b *bench) scratchStore(ctx context.Context, conns int) (es *postgres.Store, codec *store.JSONCodec, closeScratch func() error, err error) {
	db, err := b.srv.newDatabase(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	pool, err := db.pool(ctx, conns, nil)
	if err != nil {
		return nil, nil, nil, errors.Join(err, db.drop(ctx))
	}
	closeScratch = func() error {
		pool.Close()
		return db.drop(ctx)
	}
	if es, err = postgres.New(pool, &postgres.Config{Logger: b.cfg.Logger}); err == nil {
		codec, err = benchcart.NewCodec()
	}
	if err != nil {
		return nil, nil, nil, errors.Join(err, closeScratch())
	}
	return es, codec, closeScratch, nil
}
