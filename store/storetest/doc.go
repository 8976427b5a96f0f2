// Package storetest is the conformance suite every store.EventStore backend
// must pass. Call [Run] from a test of the backend's package with a function
// returning a fresh, empty store.
package storetest
