// Package freeport hands out 127.0.0.1 addresses with a port nothing listens
// on, for processes started later (cluster members, their health endpoints,
// a PostgreSQL): the kernel may give the port of a closed probe again, so one
// process never hands out the same port twice.
package freeport

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Addr returns a 127.0.0.1 address whose port is free now and was not
// returned before by this process.
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// Port returns a port of 127.0.0.1 that is free now and was not returned
// before by this process (by Port or Addr).
func Port() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("freeport: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("freeport: %w", err)
		}
		if !handed[p] {
			handed[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("freeport: no new free port after 100 tries")
}
