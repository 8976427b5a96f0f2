package actor_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkClusterSend measures a command sent on one member (a child
// process, driven over HTTP) to a stream it owns (local) and to a stream
// another member owns (remote). ns/op includes the test's HTTP round trip;
// p50-µs and p99-µs are the Send calls timed inside the member.
func BenchmarkClusterSend(b *testing.B) {
	dsn, _ := clusterDB(b)
	ms := startCluster(b, dsn, memberSpec{n: 2})
	via := ms[0]
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		owner *member
	}{{"local", ms[0]}, {"remote", ms[1]}} {
		var streams []string
		for i := 0; len(streams) < 16; i++ {
			s := fmt.Sprintf("bench-%s-%d", tc.name, i)
			if via.owner("", s) == tc.owner.addr {
				streams = append(streams, s)
			}
		}
		for _, s := range streams { // activate and load them first
			rep, err := via.send(ctx, clusterSend{Stream: s})
			require.NoError(b, err)
			require.Empty(b, rep.Error)
		}
		b.Run(tc.name, func(b *testing.B) {
			micros := make([]int64, 0, b.N)
			for i := 0; i < b.N; i++ {
				rep, err := via.send(ctx, clusterSend{Stream: streams[i%len(streams)]})
				if err != nil || rep.Error != "" {
					b.Fatalf("send: %v %s", err, rep.Error)
				}
				micros = append(micros, rep.Micros)
			}
			b.StopTimer()
			slices.Sort(micros)
			b.ReportMetric(float64(micros[len(micros)/2]), "p50-µs")
			b.ReportMetric(float64(micros[len(micros)*99/100]), "p99-µs")
		})
	}
}
