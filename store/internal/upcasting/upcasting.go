// Package upcasting applies a store.Upcaster to the reads of a store, for
// the stores of this module (store/memory, store/postgres).
//
// A read returns whole upcast events: the events one stored event reads as
// (a split) are never cut apart, and a read that comes back with fewer
// events than it asked for has reached the end of what it reads, as
// without upcasting, because reads go on past stored events that read as
// nothing (dropped, or of types the read did not ask for).
package upcasting

import (
	"github.com/troupehq/troupe/store"
)

// ReadStream upcasts a stream read. read is the store's raw read. With
// MaxCount set, MaxCount events are returned, or more when the last stored
// event read was split (its events are never cut apart); fewer means no
// event is left in the range.
func ReadStream(u store.Upcaster, opts store.ReadOptions, read func(store.ReadOptions) (store.ReadResult, error)) (store.ReadResult, error) {
	raw, err := read(opts)
	if err != nil || u == nil {
		return raw, err
	}
	out := raw
	out.Events = make([]store.Event, 0, len(raw.Events))
	limit := opts.MaxCount
	var buf []store.Event
	for {
		for _, e := range raw.Events {
			if buf, err = u.Upcast(e, buf[:0]); err != nil {
				return store.ReadResult{}, err
			}
			if limit > 0 && len(out.Events) >= limit {
				return out, nil
			}
			out.Events = append(out.Events, buf...)
		}
		if limit == 0 || len(raw.Events) < limit || len(out.Events) >= limit {
			return out, nil
		}
		// Some stored events read as nothing: read on.
		next := opts
		next.From = raw.Events[len(raw.Events)-1].StreamPosition + 1
		if opts.To > 0 && next.From > opts.To {
			return out, nil
		}
		if raw, err = read(next); err != nil {
			return store.ReadResult{}, err
		}
		if !raw.StreamExists || raw.Incarnation != out.Incarnation {
			// Archived (and maybe started again) between the reads:
			// what was read is of the earlier stream; return it.
			return out, nil
		}
		out.CurrentVersion = raw.CurrentVersion
	}
}

// ReadAll upcasts a read of the global log. read is the store's raw read.
// A read limited to types reads the stored types that may read as them
// (store.Upcaster.StoredTypes) and returns only events of the types asked
// for. Limit events are returned, or more when the last stored event read
// was split, or fewer when the log has no more; Next is the position of
// the last stored event read, which may be after the last event returned.
func ReadAll(u store.Upcaster, opts store.ReadAllOptions, read func(store.ReadAllOptions) (store.ReadAllResult, error)) (store.ReadAllResult, error) {
	if u == nil {
		return read(opts)
	}
	limit := opts.Limit
	if limit == 0 {
		limit = store.DefaultReadAllLimit
	}
	rawOpts := opts
	var want map[string]bool
	if len(opts.Types) > 0 {
		rawOpts.Types = u.StoredTypes(opts.Types)
		want = make(map[string]bool, len(opts.Types))
		for _, t := range opts.Types {
			want[t] = true
		}
	}
	res := store.ReadAllResult{Next: opts.After}
	var buf []store.Event
	for {
		raw, err := read(rawOpts)
		if err != nil {
			return store.ReadAllResult{Next: opts.After}, err
		}
		for _, e := range raw.Events {
			if buf, err = u.Upcast(e, buf[:0]); err != nil {
				return store.ReadAllResult{Next: opts.After}, err
			}
			if want != nil {
				kept := buf[:0]
				for _, x := range buf {
					if want[x.Type] {
						kept = append(kept, x)
					}
				}
				buf = kept
			}
			if len(res.Events) >= limit {
				return res, nil
			}
			res.Events = append(res.Events, buf...)
			res.Next = e.Position()
		}
		if len(raw.Events) < limit || len(res.Events) >= limit {
			return res, nil
		}
		rawOpts.After = raw.Next
	}
}

// Versioned returns events with every empty SchemaVersion set to the
// current version of the event's type, so an event appended without one
// is stored at the version its body has today. It returns events itself
// (not a copy) when u is nil or every event names its version.
func Versioned(u store.Upcaster, events []store.EventData) []store.EventData {
	if u == nil {
		return events
	}
	var out []store.EventData
	for i, e := range events {
		if e.SchemaVersion != "" {
			continue
		}
		if out == nil {
			out = append([]store.EventData(nil), events...)
		}
		out[i].SchemaVersion = u.SchemaVersion(e.Type)
	}
	if out == nil {
		return events
	}
	return out
}

// VersionedBatch is Versioned for every part of a batch.
func VersionedBatch(u store.Upcaster, appends []store.StreamAppend) []store.StreamAppend {
	if u == nil {
		return appends
	}
	var out []store.StreamAppend
	for i, a := range appends {
		events := Versioned(u, a.Events)
		if len(events) > 0 && len(a.Events) > 0 && &events[0] == &a.Events[0] {
			continue
		}
		if out == nil {
			out = append([]store.StreamAppend(nil), appends...)
		}
		out[i].Events = events
	}
	if out == nil {
		return appends
	}
	return out
}
