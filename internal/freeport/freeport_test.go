package freeport

import (
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAddrNeverRepeats(t *testing.T) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				a, err := Addr()
				require.NoError(t, err)
				mu.Lock()
				require.False(t, seen[a], "address %s handed out twice", a)
				seen[a] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, 400)
	for a := range seen {
		l, err := net.Listen("tcp", a)
		require.NoError(t, err, "port of %s is free", a)
		require.NoError(t, l.Close())
		break
	}
}
