package actor_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/stretchr/testify/require"

	"github.com/troupehq/troupe/actor"
	"github.com/troupehq/troupe/store/memory"
)

// refusingProvider is a membership provider whose join fails, as the
// PostgreSQL provider's does on a database without its table.
type refusingProvider struct{}

func (refusingProvider) StartMember(*cluster.Cluster) error { return errors.New("no membership table") }
func (refusingProvider) StartClient(*cluster.Cluster) error { return errors.New("no membership table") }
func (refusingProvider) Shutdown(bool) error                { return nil }

// A join that fails leaves nothing behind: Start says why, a second Start
// says the host can only be stopped, Stop returns, and the cluster address
// is free again (protoactor had started listening on it before asking the
// provider). The package's goroutine-leak check at the end of the tests
// covers what the join started.
func TestClusterFailedJoinReleasesItsAddress(t *testing.T) {
	addr := freePort(t)
	h, err := actor.New(memory.New(), &actor.Config{Codec: newCodec(), Logger: quietLogger(),
		Cluster: &actor.ClusterConfig{Name: "c", Address: addr, Provider: refusingProvider{}}})
	require.NoError(t, err)
	_, err = actor.Register(h, counterKind())
	require.NoError(t, err)
	ctx := context.Background()
	err = h.Start(ctx)
	require.ErrorContains(t, err, "no membership table")
	err = h.Start(ctx)
	require.ErrorContains(t, err, "can only be stopped")
	require.NoError(t, h.Stop(ctx))
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "the cluster address is still taken after a failed join and Stop")
	require.NoError(t, l.Close())
}
