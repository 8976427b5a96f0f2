// Package freeport hands out 127.0.0.1 addresses with a port nothing listens
// on, for processes started later (cluster members, their health endpoints,
// a PostgreSQL): the kernel may give the port of a closed probe again, so one
// process never hands out the same port twice.
package freeport

import (
	"fmt"
	"net"
	"sync"
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Addr returns a 127.0.0.1 address whose port is free now and was not
// returned before by this process.
func Addr() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("freeport: %w", err)
		}
		a := l.Addr().(*net.TCPAddr)
		if err := l.Close(); err != nil {
			return "", fmt.Errorf("freeport: %w", err)
		}
		if !handed[a.Port] {
			handed[a.Port] = true
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("freeport: no new free port after 100 tries")
}
