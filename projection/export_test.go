package projection

import "github.com/troupehq/troupe/store"

// ConfigOf returns the configuration p runs with, defaults filled in.
func ConfigOf(p *Projection) Config { return p.cfg }

// StoreOf returns the store p reads.
func StoreOf(p *Projection) store.EventStore { return p.store }

// LockKeyOf returns the key of p's lease.
func LockKeyOf(p *Projection) string { return p.lockKey }
