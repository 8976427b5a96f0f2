package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/internal/upcasting"
)

var (
	// ErrSessionLocked is returned when the Store itself (rather than the
	// session's store handed to the WithSession callback) is called with a
	// context of a session still in progress. The session holds the store
	// lock, so waiting would deadlock; use the session's store instead.
	ErrSessionLocked = errors.New("memory store: store used with the context of its own open session")
	// ErrSessionEnded is returned by a session's store used after its
	// WithSession call returned.
	ErrSessionEnded = errors.New("memory store: session has ended")
)

// Store is an in-memory event store. The zero value is not usable; use
// [New]. It implements [store.EventStore] and [store.SnapshotStore].
type Store struct {
	// sem is the store lock (a one-slot semaphore, so waiting for it can be
	// cancelled through a context). Its holder owns st.
	sem chan struct{}
	st  *state
	now func() time.Time

	changedMu sync.Mutex
	changed   chan struct{}

	upcaster store.Upcaster // Config.Upcaster
}

// Config configures a Store. The zero value (or nil) is ready to use.
type Config struct {
	// Upcaster, when set, brings every event ReadStream and ReadAll return
	// to the current schema of its type, exactly as
	// postgres.Config.Upcaster does, and an event appended without a
	// SchemaVersion is stored at the current version of its type. Defaults
	// to nil: events are returned as stored.
	Upcaster store.Upcaster
}

var (
	_ store.EventStore    = (*Store)(nil)
	_ store.SnapshotStore = (*Store)(nil)
	_ store.EventStore    = (*session)(nil)
	_ store.SnapshotStore = (*session)(nil)
)

// New returns an empty store.
func New() *Store {
	s, _ := NewWithConfig(nil)
	return s
}

// NewWithConfig returns an empty store configured by cfg (nil: defaults,
// as New).
func NewWithConfig(cfg *Config) (*Store, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	return &Store{
		sem:      make(chan struct{}, 1),
		st:       newState(),
		now:      time.Now,
		changed:  make(chan struct{}),
		upcaster: c.Upcaster,
	}, nil
}

// Changed returns a channel that is closed the next time events are
// committed (by an append or a session). To wait for new events without
// polling, take the channel first, then read, then wait on it:
//
//	for {
//		ch := s.Changed()
//		res, err := s.ReadAll(ctx, store.ReadAllOptions{After: next})
//		// … handle res, set next = res.Next …
//		if len(res.Events) == 0 {
//			select {
//			case <-ch:
//			case <-ctx.Done():
//				return ctx.Err()
//			}
//		}
//	}
//
// A commit that lands after Changed returned always closes the channel
// taken, so no commit is missed. Wake-ups may be spurious.
func (s *Store) Changed() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	return s.changed
}

func (s *Store) notify() {
	s.changedMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changedMu.Unlock()
}

type sessionKey struct{ s *Store }

// lock takes the store lock, giving up when ctx is done.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ses, ok := ctx.Value(sessionKey{s}).(*session); ok && ses.open() {
		return ErrSessionLocked
	}
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) unlock() { <-s.sem }

// do runs op in a transaction of its own: committed when op succeeds,
// rolled back when it fails.
func (s *Store) do(ctx context.Context, op func(t *txn) error) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	t := &txn{st: s.st, now: s.now}
	committed := false
	defer func() {
		if !committed {
			t.rollback()
		}
		s.unlock()
		if committed && t.wrote {
			s.notify()
		}
	}()
	if err := op(t); err != nil {
		return err
	}
	t.commit()
	committed = true
	return nil
}

// AppendToStream implements [store.EventStore].
func (s *Store) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	var res store.AppendResult
	up := s.upcaster
	err := s.do(ctx, func(t *txn) (err error) {
		res, err = t.append(stream, upcasting.Versioned(up, events), opts)
		return err
	})
	if err != nil {
		return store.AppendResult{}, fmt.Errorf("append to stream %q: %w", stream, err)
	}
	return res, nil
}

// ReadStream implements [store.EventStore].
func (s *Store) ReadStream(ctx context.Context, stream store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	var res store.ReadResult
	up := s.upcaster
	err := s.do(ctx, func(t *txn) (err error) {
		res, err = t.readUpcast(up, stream, opts)
		return err
	})
	if err != nil {
		return store.ReadResult{}, fmt.Errorf("read stream %q: %w", stream, err)
	}
	return res, nil
}

// ReadAll implements [store.EventStore]. Transaction ids are a commit
// counter, so commit-safe order is commit order and every committed event
// is visible at once.
func (s *Store) ReadAll(ctx context.Context, opts store.ReadAllOptions) (store.ReadAllResult, error) {
	var res store.ReadAllResult
	up := s.upcaster
	err := s.do(ctx, func(t *txn) (err error) {
		res, err = t.readAllUpcast(up, opts)
		return err
	})
	if err != nil {
		return store.ReadAllResult{Next: opts.After}, fmt.Errorf("read all: %w", err)
	}
	return res, nil
}

// ArchiveStream implements [store.EventStore].
func (s *Store) ArchiveStream(ctx context.Context, stream store.StreamID, opts store.ArchiveOptions) error {
	if err := s.do(ctx, func(t *txn) error { return t.archive(stream, opts) }); err != nil {
		return fmt.Errorf("archive stream %q: %w", stream, err)
	}
	return nil
}

// SaveSnapshot implements [store.SnapshotStore].
func (s *Store) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	return s.do(ctx, func(t *txn) error { return t.saveSnapshot(snap) })
}

// LoadSnapshot implements [store.SnapshotStore].
func (s *Store) LoadSnapshot(ctx context.Context, partition string, stream store.StreamID, name string) (store.Snapshot, bool, error) {
	var (
		snap store.Snapshot
		ok   bool
	)
	err := s.do(ctx, func(t *txn) (err error) {
		snap, ok, err = t.loadSnapshot(partition, stream, name)
		return err
	})
	return snap, ok, err
}

// WithSession implements [store.EventStore]. The session holds the store
// lock from start to end: other callers wait (or give up when their context
// is done) until fn returns. Inside fn, use the store passed to it (and the
// context passed to it); calling s itself with that context returns
// [ErrSessionLocked] instead of deadlocking. The session's store also
// implements [store.SnapshotStore]; snapshot writes commit and roll back
// with the events.
//
// The session commits when fn returns nil and ctx is not done, and rolls
// back when fn returns an error (returned as is), when ctx is done (its
// error is returned) or when fn panics (the panic continues after the
// rollback). ReadAll inside the session does not see the session's own
// events, as in PostgreSQL; ReadStream does. WithSession called on the
// session's store is a nested session: an error or panic in it rolls back
// its own writes only (like a savepoint).
func (s *Store) WithSession(ctx context.Context, fn func(ctx context.Context, s store.EventStore) error) error {
	if fn == nil {
		return store.InvalidArgument("with session: nil function")
	}
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("begin session: %w", err)
	}
	ses := &session{t: &txn{st: s.st, now: s.now}, upcaster: s.upcaster}
	committed := false
	defer func() {
		ses.end()
		if !committed {
			ses.t.rollback()
		}
		s.unlock()
		if committed && ses.t.wrote {
			s.notify()
		}
	}()
	if err := fn(context.WithValue(ctx, sessionKey{s}, ses), ses); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit session: %w", err)
	}
	ses.t.commit()
	committed = true
	return nil
}

// session is the store handed to a WithSession callback. Its operations run
// one at a time on the session's transaction.
type session struct {
	mu       sync.Mutex
	t        *txn
	ended    bool
	upcaster store.Upcaster
}

func (ses *session) open() bool {
	ses.mu.Lock()
	defer ses.mu.Unlock()
	return !ses.ended
}

func (ses *session) end() {
	ses.mu.Lock()
	ses.ended = true
	ses.mu.Unlock()
}

// do runs op on the session's transaction; a failed op leaves no writes.
func (ses *session) do(ctx context.Context, op func(t *txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ses.mu.Lock()
	defer ses.mu.Unlock()
	if ses.ended {
		return ErrSessionEnded
	}
	mark := len(ses.t.undo)
	if err := op(ses.t); err != nil {
		ses.t.rollbackTo(mark)
		return err
	}
	return nil
}

func (ses *session) AppendToStream(ctx context.Context, stream store.StreamID, events []store.EventData, opts store.AppendOptions) (store.AppendResult, error) {
	var res store.AppendResult
	up := ses.upcaster
	err := ses.do(ctx, func(t *txn) (err error) {
		res, err = t.append(stream, upcasting.Versioned(up, events), opts)
		return err
	})
	if err != nil {
		return store.AppendResult{}, fmt.Errorf("append to stream %q: %w", stream, err)
	}
	return res, nil
}

func (ses *session) ReadStream(ctx context.Context, stream store.StreamID, opts store.ReadOptions) (store.ReadResult, error) {
	var res store.ReadResult
	up := ses.upcaster
	err := ses.do(ctx, func(t *txn) (err error) {
		res, err = t.readUpcast(up, stream, opts)
		return err
	})
	if err != nil {
		return store.ReadResult{}, fmt.Errorf("read stream %q: %w", stream, err)
	}
	return res, nil
}

func (ses *session) ReadAll(ctx context.Context, opts store.ReadAllOptions) (store.ReadAllResult, error) {
	var res store.ReadAllResult
	up := ses.upcaster
	err := ses.do(ctx, func(t *txn) (err error) {
		res, err = t.readAllUpcast(up, opts)
		return err
	})
	if err != nil {
		return store.ReadAllResult{Next: opts.After}, fmt.Errorf("read all: %w", err)
	}
	return res, nil
}

func (ses *session) ArchiveStream(ctx context.Context, stream store.StreamID, opts store.ArchiveOptions) error {
	if err := ses.do(ctx, func(t *txn) error { return t.archive(stream, opts) }); err != nil {
		return fmt.Errorf("archive stream %q: %w", stream, err)
	}
	return nil
}

func (ses *session) SaveSnapshot(ctx context.Context, snap store.Snapshot) error {
	return ses.do(ctx, func(t *txn) error { return t.saveSnapshot(snap) })
}

func (ses *session) LoadSnapshot(ctx context.Context, partition string, stream store.StreamID, name string) (store.Snapshot, bool, error) {
	var (
		snap store.Snapshot
		ok   bool
	)
	err := ses.do(ctx, func(t *txn) (err error) {
		snap, ok, err = t.loadSnapshot(partition, stream, name)
		return err
	})
	return snap, ok, err
}

// WithSession runs a nested session: fn's writes stay in the enclosing
// session when it returns nil and are undone when it returns an error or
// panics.
func (ses *session) WithSession(ctx context.Context, fn func(ctx context.Context, s store.EventStore) error) error {
	if fn == nil {
		return store.InvalidArgument("with session: nil function")
	}
	var mark int
	if err := ses.do(ctx, func(t *txn) error { mark = len(t.undo); return nil }); err != nil {
		return fmt.Errorf("begin nested session: %w", err)
	}
	done := false
	defer func() {
		if done {
			return
		}
		ses.mu.Lock()
		if !ses.ended {
			ses.t.rollbackTo(mark)
		}
		ses.mu.Unlock()
	}()
	if err := fn(ctx, ses); err != nil {
		return err
	}
	done = true
	return nil
}
