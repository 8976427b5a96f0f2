package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/troupehq/troupe/store"
)

// NotifyChannel is the PostgreSQL channel every append notifies (from its
// own statement, or through the store's [Notifier] when it has one). The payload
// is a JSON object {"partition":"<partition>","globalPosition":<n>} naming the
// partition written and the global position of the append's last event.
// PostgreSQL delivers it when the appending transaction commits and never
// when it rolls back, so a listener can wake up and read the global log
// instead of polling. Notifications are a hint, not the log: a listener that
// was disconnected misses them and must read from its checkpoint anyway.
const NotifyChannel = "troupe_events"

// Config configures a Store. The zero value (or nil) is ready to use.
type Config struct {
	// Logger receives the store's diagnostics (idempotent retries answered,
	// older archives replaced, failed rollbacks). Defaults to slog.Default().
	Logger *slog.Logger
	// RowLevelSecurity scopes every transaction the store runs for a
	// partition to that partition, for the policies of
	// [EnableRowLevelSecurity]: before each partition-scoped
	// statement (append, read, read-all limited to a partition, archive,
	// snapshots) the store sets the transaction's tenant with
	// [SetTenantSQL], in the same pgx.Batch, so it costs no extra
	// round trip. Turn it on when the pool connects as a non-owner
	// application role under those policies. Defaults to false: no
	// statement is added and the store runs exactly as without row-level
	// security.
	//
	// A ReadAll without a partition sets no tenant and returns what the
	// role may see: nothing on the pool, the tenant the transaction is
	// scoped to inside WithTx or WithSession; read every tenant's log as
	// the tables' owner. In a transaction of the caller (WithTx) the
	// setting stays in force after each operation, scoped to that
	// operation's partition, until the transaction ends or the next
	// operation of the store sets it again.
	RowLevelSecurity bool
	// Notifier, when set, sends the appends' notifications instead of the
	// append statements: an append on the pool then runs without
	// pg_notify and pokes the Notifier after it commits, which notifies
	// NotifyChannel at most once per its Interval (one notification per
	// partition written, naming the highest global position). Listeners
	// get the same payloads up to one Interval later, and appends no longer
	// queue on PostgreSQL's cluster-wide notification lock at commit.
	// Appends in a caller's transaction (WithTx, WithSession) still notify
	// in the statement, so nothing is announced before it commits. The
	// caller starts and stops the Notifier; one Notifier may serve several
	// stores. Defaults to nil: every append notifies in its own statement.
	Notifier *Notifier
	// Upcaster, when set, brings every event ReadStream and ReadAll return
	// to the current schema of its type (see docs/evolution.md): usually
	// the store.JSONCodec the events are encoded with, holding the types'
	// upcasters, renames, splits and drops. The stored rows never change.
	// An event that reads as several events (a split) gives events that
	// share its positions and message id; one that reads as none (a drop)
	// is skipped, and reads go on past it, so a read that returns fewer
	// events than it asked for has still reached the end. An event that
	// can't be upcast fails the read with a *store.UpcastError. An event
	// appended without a SchemaVersion is stored at the current version of
	// its type. Defaults to nil: events are returned as stored, and stored
	// at version "1" when they name none.
	Upcaster store.Upcaster
}

// validate reports the first unusable field of c, by name. Every field of
// Config currently has a usable zero value; validate is the place new
// fields get checked.
func (c *Config) validate() error {
	return nil
}

// withDefaults returns a copy of c (nil allowed) with every unset field
// filled in.
func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// Store is the PostgreSQL event store. It implements [store.EventStore] and
// [store.SnapshotStore] and is safe for concurrent use.
//
// A Store made by [New] on a pool (or a connection) runs every operation in
// a transaction of its own (an append is one statement, so one implicit
// transaction). A Store made by [New] on a transaction, returned by
// [Store.WithTx] or handed to a [Store.WithSession] callback runs every
// operation on that one transaction.
type Store struct {
	base   DB     // the handle given to New
	tx     pgx.Tx // nil unless the store is bound to a transaction
	logger *slog.Logger
	rls    bool // Config.RowLevelSecurity
	// notifier is Config.Notifier (nil: the append statements notify).
	notifier *Notifier
	upcaster store.Upcaster // Config.Upcaster
}

var (
	_ store.EventStore    = (*Store)(nil)
	_ store.SnapshotStore = (*Store)(nil)
)

// New returns a Store on db: a *pgxpool.Pool (the usual case, safe for
// concurrent use), a *pgx.Conn (one goroutine at a time) or a pgx.Tx (the
// store is then bound to that transaction, as [Store.WithTx] would bind it:
// its operations commit or roll back with it, and it must not be used after
// the transaction ends). The schema must have been migrated (see
// [Migrate]). cfg may be nil.
func New(db DB, cfg *Config) (*Store, error) {
	if IsNil(db) {
		return nil, errors.New("postgres.New: db is nil")
	}
	if cfg != nil {
		if err := cfg.validate(); err != nil {
			return nil, fmt.Errorf("postgres.New: %w", err)
		}
	}
	c := cfg.withDefaults()
	s := &Store{base: db, logger: c.Logger, rls: c.RowLevelSecurity, notifier: c.Notifier, upcaster: c.Upcaster}
	if tx, ok := db.(pgx.Tx); ok {
		s.tx = tx
	}
	return s, nil
}

// WithTx returns a store whose operations all run on tx, the caller's
// transaction: they commit or roll back with it, and ArchiveStream does not
// open a transaction of its own. WithSession on the returned store opens a
// savepoint in tx. The returned value is a *Store, so it is also a
// store.SnapshotStore. It must not be used after tx ends, and like tx itself
// it must not be used by several goroutines at once.
func (s *Store) WithTx(tx pgx.Tx) store.EventStore {
	return s.bound(tx)
}

// bound returns a copy of s bound to tx.
func (s *Store) bound(tx pgx.Tx) *Store {
	return &Store{base: s.base, tx: tx, logger: s.logger, rls: s.rls, notifier: s.notifier, upcaster: s.upcaster}
}

// querier is where the store's statements run.
type querier = DB

// db returns where the store's statements run.
func (s *Store) db() querier {
	if s.tx != nil {
		return s.tx
	}
	return s.base
}

// inTx reports whether the store is bound to a transaction.
func (s *Store) inTx() bool { return s.tx != nil }

// WithSession runs fn with a store whose operations all happen in one
// transaction: a new one on the pool, or a savepoint when s is already bound
// to a transaction. The transaction commits when fn returns nil. When fn
// returns an error it is rolled back and fn's error is returned unchanged;
// when fn panics it is rolled back and the panic continues.
func (s *Store) WithSession(ctx context.Context, fn func(ctx context.Context, es store.EventStore) error) (err error) {
	tx, err := s.db().Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin session: %w", err)
	}
	done := false
	defer func() {
		if done {
			return
		}
		// fn panicked (or called runtime.Goexit): roll back; the panic
		// goes on after this deferred call, with its original stack.
		s.rollback(ctx, tx, "session panicked")
	}()
	fnErr := fn(ctx, s.bound(tx))
	done = true
	if fnErr != nil {
		s.rollback(ctx, tx, "session returned an error")
		return fnErr
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit session: %w", err)
	}
	return nil
}

// rollback rolls tx back even when ctx is already cancelled. A failure is
// logged, not returned: the caller is already returning the error (or
// panic) that made it roll back, and pgx closes the connection of a real
// transaction whose rollback failed, which ends the transaction anyway.
func (s *Store) rollback(ctx context.Context, tx pgx.Tx, why string) {
	if err := tx.Rollback(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "session_rollback_failed",
			slog.String("reason", why), slog.String("error", err.Error()))
	}
}

// pgError returns the PostgreSQL error inside err, if any.
func pgError(err error) (*pgconn.PgError, bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr, true
	}
	return nil, false
}

// PostgreSQL error codes the store maps to its own errors.
const (
	codeUniqueViolation  = "23505"
	codeNotNullViolation = "23502"
	// Class 22, data exception: a value PostgreSQL refused (for example a
	// JSON document jsonb can't hold, such as one containing \u0000).
	classDataException = "22"
)

// isDataException reports whether err is a PostgreSQL data exception,
// which means the input, not the database, was at fault.
func isDataException(err error) bool {
	return sqlstateClass(err) == classDataException
}
