package actor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

// Benchmarks against PostgreSQL (a throwaway server, or DATABASE_URL):
//
//	go test -run '^$' -bench . -benchtime 1x ./actor/
//
// BenchmarkThroughput: 1,000 streams × 10 commands per iteration, with 1, 8
// and 64 concurrent senders; reports commands/s and p50/p99 latency.
// BenchmarkCommandLatency: one command on a stream of 10 and of 10,000
// events, with the stream's actor cached, cold (full replay) and cold with
// a snapshot at the stream's head.

func pgStore(b *testing.B) *postgres.Store {
	b.Helper()
	return pgStores(b, 1)[0]
}

type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	b.Helper()
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	pct := func(p int) float64 {
		i := min(len(s)*p/100, len(s)-1)
		return float64(s[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(50), "p50_ms")
	b.ReportMetric(pct(99), "p99_ms")
}

func BenchmarkThroughput(b *testing.B) {
	const streams, perStream = 1000, 10
	for _, senders := range []int{1, 8, 64} {
		for _, mode := range []struct {
			name     string
			maxBatch int
		}{{"cross-stream", 0}, {"per-stream", 1}} {
			b.Run(fmt.Sprintf("senders=%d/%s", senders, mode.name), func(b *testing.B) {
				st := pgStore(b)
				h, agg := startHost(b, st, actor.Config{MaxAppendBatch: mode.maxBatch})
				cpu0 := processCPU()
				ctx := context.Background()
				var all latencies
				var elapsed time.Duration
				b.ResetTimer()
				for iter := range b.N {
					lat := make(latencies, streams*perStream)
					var next atomic.Int64
					var wg sync.WaitGroup
					start := time.Now()
					for range senders {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								n := int(next.Add(1) - 1)
								if n >= len(lat) {
									return
								}
								// Command n goes to stream n % 1000: the first
								// 1,000 activate their (empty) streams.
								cmd := counterCmd{Tenant: "bench", Stream: fmt.Sprintf("i%d-s%d", iter, n%streams)}
								t0 := time.Now()
								_, err := agg.Send(ctx, cmd)
								lat[n] = time.Since(t0)
								if err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					elapsed += time.Since(start)
					all = append(all, lat...)
				}
				b.StopTimer()
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commands/s")
				all.report(b)
				s := h.Stats()
				b.ReportMetric(float64(len(all))/float64(max(s.Appends, 1)), "commands/append")
				b.ReportMetric(float64(len(all))/float64(max(s.AppendCalls, 1)), "commands/store_call")
				// The client's CPU (this process: the host, the driver, the
				// senders; PostgreSQL runs in processes of its own).
				b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(len(all)), "client_cpu_us/command")
			})
		}
	}
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// seedStream appends n Incremented events to a stream directly.
func seedStream(b *testing.B, st store.EventStore, stream string, n int) {
	b.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		batch := make([]store.EventData, min(1000, n-done))
		for i := range batch {
			batch[i] = store.EventData{Type: "Incremented", Data: json.RawMessage(`{"by":1}`)}
		}
		_, err := st.AppendToStream(ctx, store.StreamID(stream), batch, store.AppendOptions{Partition: "bench", StreamType: "counter"})
		require.NoError(b, err)
		done += len(batch)
	}
}

func BenchmarkCommandLatency(b *testing.B) {
	for _, events := range []int{10, 10_000} {
		for _, mode := range []string{"cached", "cold", "cold-snapshot"} {
			b.Run(fmt.Sprintf("events=%d/%s", events, mode), func(b *testing.B) {
				ctx := context.Background()
				st := pgStore(b)
				seedStream(b, st, "s", events)
				kind := counterKind()
				if mode == "cold-snapshot" {
					state, _ := json.Marshal(counterState{Count: events, Events: events})
					require.NoError(b, st.SaveSnapshot(ctx, store.Snapshot{Partition: "bench", Stream: "s", Name: "counter", Version: store.Version(events), State: state}))
					kind = snapshotKind(1_000_000) // reads the snapshot, writes none
				}
				cmd := counterCmd{Tenant: "bench", Stream: "s"}
				lat := make(latencies, 0, b.N)
				var replayed int64
				if mode == "cached" {
					_, agg := startHost(b, st, actor.Config{}, kind)
					_, err := agg.Send(ctx, cmd) // activate
					require.NoError(b, err)
					b.ResetTimer()
					for range b.N {
						t0 := time.Now()
						_, err := agg.Send(ctx, cmd)
						lat = append(lat, time.Since(t0))
						if err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
				} else {
					b.ResetTimer()
					for range b.N {
						b.StopTimer()
						h, err := actor.New(st, &actor.Config{Logger: quietLogger()})
						require.NoError(b, err)
						agg, err := actor.Register(h, kind)
						require.NoError(b, err)
						require.NoError(b, h.Start(ctx))
						b.StartTimer()
						t0 := time.Now()
						_, err = agg.Send(ctx, cmd)
						lat = append(lat, time.Since(t0))
						b.StopTimer()
						if err != nil {
							b.Fatal(err)
						}
						replayed += h.Stats().EventsReplayed
						require.NoError(b, h.Stop(ctx))
						b.StartTimer()
					}
					b.StopTimer()
					b.ReportMetric(float64(replayed)/float64(b.N), "replayed/op")
				}
				lat.report(b)
			})
		}
	}
}
