package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one embedded schema migration, from a file named
// migrations/NNN_name.sql.
type Migration struct {
	// Version is the file's number; migrations are applied in increasing
	// version order.
	Version int
	// Name is the file name without the number and extension.
	Name string
	// SQL is the migration's script.
	SQL string
}

// MigrationStatus tells whether a migration is applied to a database.
type MigrationStatus struct {
	Version int
	Name    string
	// Applied reports whether the migration is recorded as applied.
	Applied bool
	// AppliedAt is when it was applied; zero when it is not.
	AppliedAt time.Time
	// Unknown reports a migration recorded in the database that this build
	// does not embed: the database was migrated by a newer build.
	Unknown bool
}

// MigrationsTable records the applied migrations: version, name and
// applied_at.
const MigrationsTable = "troupe_schema_migrations"

// migrationLockKey is the transaction-scoped advisory lock that serialises
// migrations across processes ("troupe" plus the migration lock's number).
const migrationLockKey int64 = 0x74726f7570650001

const (
	migrationLockSQL  = `SELECT pg_advisory_xact_lock($1)`
	migrationTableSQL = `CREATE TABLE IF NOT EXISTS troupe_schema_migrations (
    version     integer     PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)`
	migrationAppliedSQL     = `SELECT version, name, applied_at FROM troupe_schema_migrations ORDER BY version`
	migrationIsAppliedSQL   = `SELECT EXISTS (SELECT FROM troupe_schema_migrations WHERE version = $1)`
	migrationRecordSQL      = `INSERT INTO troupe_schema_migrations (version, name) VALUES ($1, $2)`
	migrationTableExistsSQL = `SELECT to_regclass('troupe_schema_migrations') IS NOT NULL`
)

var loadMigrations = sync.OnceValues(func() ([]Migration, error) {
	return parseMigrations(migrationFiles, "migrations")
})

// Migrations returns the embedded migrations in version order. It fails
// only when an embedded file is misnamed or two share a version, which is
// a defect of the build.
func Migrations() ([]Migration, error) {
	ms, err := loadMigrations()
	if err != nil {
		return nil, err
	}
	return slices.Clone(ms), nil
}

// MigrationsFS returns the embedded migration files, named NNN_name.sql
// at its root: the SQL Migrate applies, for a team that runs its schema
// changes with a migration tool of its own. Prefer Migration.Script, which
// also keeps troupe_schema_migrations up to date.
func MigrationsFS() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // "migrations" is a valid path: fs.Sub cannot fail
	}
	return sub
}

// Script returns the migration as one script for another migration tool:
// the advisory lock Migrate takes (so a process running Migrate at the same
// time waits), the migration's SQL, then the creation of
// troupe_schema_migrations when missing and the migration's row in it. Run
// in one transaction, it leaves the database exactly as Migrate would, so
// MigrateStatus, `migrate status` and a later Migrate see it as applied.
// It must run in a transaction (the lock is transaction-scoped); a script
// of several statements sent at once without parameters runs in one.
func (m Migration) Script() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Troupe migration %03d_%s\n", m.Version, m.Name)
	fmt.Fprintf(&b, "SELECT pg_advisory_xact_lock(%d);\n\n", migrationLockKey)
	body := strings.TrimRight(m.SQL, " \t\r\n")
	b.WriteString(body)
	if !strings.HasSuffix(body, ";") {
		b.WriteString("\n;") // ends the last statement, even after a trailing comment
	}
	b.WriteString("\n\n-- Bookkeeping: what postgres.Migrate records.\n")
	b.WriteString(migrationTableSQL)
	b.WriteString(";\n")
	fmt.Fprintf(&b, "INSERT INTO troupe_schema_migrations (version, name) VALUES (%d, '%s') ON CONFLICT (version) DO NOTHING;\n",
		m.Version, strings.ReplaceAll(m.Name, "'", "''"))
	return b.String()
}

func parseMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		file := e.Name()
		if e.IsDir() || !strings.HasSuffix(file, ".sql") {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(file, ".sql"), "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version <= 0 || name == "" {
			return nil, fmt.Errorf("migration file %q: want NNN_name.sql with NNN a positive number", file)
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, file))
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", file, err)
		}
		out = append(out, Migration{Version: version, Name: name, SQL: string(body)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %q and %q share version %d", out[i-1].Name, out[i].Name, out[i].Version)
		}
	}
	return out, nil
}

// Migrate applies every embedded migration the database lacks, in version
// order, each in its own transaction together with its row in
// troupe_schema_migrations. Every transaction first takes a
// transaction-scoped advisory lock, so processes migrating the same
// database at once apply each migration exactly once and all succeed.
// Running Migrate on an up-to-date database changes nothing, and so does
// running it on a database migrated further by a newer build: the
// migrations it does not embed are left as they are (MigrateStatus reports
// them as Unknown). On error the migrations applied before the failing one
// stay applied; the failing one is rolled back entirely.
//
// db is a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx. In a transaction of the
// caller each migration runs in a savepoint and the advisory lock is held
// until that transaction ends: nothing is applied until the caller commits,
// and a rollback undoes every migration.
func Migrate(ctx context.Context, db DB) error {
	return migrate(ctx, db, 0, "migrate")
}

// MigrateTo applies, like Migrate, the embedded migrations the database
// lacks up to and including version, and none after it: a team can move
// the schema one release at a time. A version equal to the database's
// current version (the highest one applied) does nothing. A version below
// the current one, or above the latest this build embeds, changes nothing
// and returns a *MigrationTargetError (ErrMigrationTarget): migrations are
// never reverted.
func MigrateTo(ctx context.Context, db DB, version int) error {
	if version <= 0 {
		return fmt.Errorf("migrate to version %d: %w", version, &MigrationTargetError{Target: version})
	}
	return migrate(ctx, db, version, fmt.Sprintf("migrate to version %d", version))
}

// ErrMigrationTarget matches every *MigrationTargetError.
var ErrMigrationTarget = errors.New("invalid migration target")

// MigrationTargetError is MigrateTo's refusal of a target version: below
// the database's current version, above the latest migration embedded, or
// not positive.
type MigrationTargetError struct {
	// Target is the version asked for.
	Target int
	// Current is the highest version applied to the database (0: none).
	Current int
	// Latest is the highest version this build embeds.
	Latest int
}

func (e *MigrationTargetError) Error() string {
	switch {
	case e.Target <= 0:
		return fmt.Sprintf("%v: target version %d is not positive", ErrMigrationTarget, e.Target)
	case e.Target > e.Latest:
		return fmt.Sprintf("%v: target version %d is above the latest migration this build embeds (%d)", ErrMigrationTarget, e.Target, e.Latest)
	default:
		return fmt.Sprintf("%v: target version %d is below the database's current version %d (migrations are never reverted)",
			ErrMigrationTarget, e.Target, e.Current)
	}
}

// Is makes errors.Is(err, ErrMigrationTarget) match.
func (e *MigrationTargetError) Is(target error) bool { return target == ErrMigrationTarget }

// migrate applies the missing migrations up to target (0: every one).
func migrate(ctx context.Context, db DB, target int, what string) error {
	if IsNil(db) {
		return fmt.Errorf("%s: db is nil", what)
	}
	ms, err := loadMigrations()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var applied []MigrationStatus
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, migrationLockSQL, migrationLockKey); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, migrationTableSQL); err != nil {
			return fmt.Errorf("create %s: %w", MigrationsTable, err)
		}
		applied, err = readApplied(ctx, tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if target > 0 {
		latest, current := 0, 0
		if len(ms) > 0 {
			latest = ms[len(ms)-1].Version
		}
		if len(applied) > 0 {
			current = applied[len(applied)-1].Version
		}
		if target > latest || target < current {
			return fmt.Errorf("%s: %w", what, &MigrationTargetError{Target: target, Current: current, Latest: latest})
		}
	}
	for _, m := range ms {
		if target > 0 && m.Version > target {
			break
		}
		if slices.ContainsFunc(applied, func(a MigrationStatus) bool { return a.Version == m.Version }) {
			continue
		}
		if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return applyMigration(ctx, tx, m) }); err != nil {
			return fmt.Errorf("%s: apply %03d_%s: %w", what, m.Version, m.Name, err)
		}
	}
	return nil
}

// applyMigration applies m in tx unless another process applied it since
// the applied list was read.
func applyMigration(ctx context.Context, tx pgx.Tx, m Migration) error {
	if _, err := tx.Exec(ctx, migrationLockSQL, migrationLockKey); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	var done bool
	if err := tx.QueryRow(ctx, migrationIsAppliedSQL, m.Version).Scan(&done); err != nil {
		return fmt.Errorf("check whether it is applied: %w", err)
	}
	if done {
		return nil
	}
	// No arguments: pgx sends the script with the simple protocol, which
	// runs every statement in it.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, migrationRecordSQL, m.Version, m.Name); err != nil {
		return fmt.Errorf("record it: %w", err)
	}
	return nil
}

func readApplied(ctx context.Context, q querier) ([]MigrationStatus, error) {
	rows, err := q.Query(ctx, migrationAppliedSQL)
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (MigrationStatus, error) {
		st := MigrationStatus{Applied: true}
		err := r.Scan(&st.Version, &st.Name, &st.AppliedAt)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	return out, nil
}

// MigrateStatus returns every embedded migration with whether it is
// applied, plus the migrations applied to the database that this build does
// not embed (Unknown), in version order. It changes nothing; a
// database never migrated reports every migration as not applied. db is a
// *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
func MigrateStatus(ctx context.Context, db DB) ([]MigrationStatus, error) {
	if IsNil(db) {
		return nil, errors.New("migration status: db is nil")
	}
	ms, err := loadMigrations()
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	var exists bool
	if err := db.QueryRow(ctx, migrationTableExistsSQL).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migration status: look for %s: %w", MigrationsTable, err)
	}
	var applied []MigrationStatus
	if exists {
		if applied, err = readApplied(ctx, db); err != nil {
			return nil, fmt.Errorf("migration status: %w", err)
		}
	}
	out := make([]MigrationStatus, 0, len(ms))
	for _, m := range ms {
		st := MigrationStatus{Version: m.Version, Name: m.Name}
		if i := slices.IndexFunc(applied, func(a MigrationStatus) bool { return a.Version == m.Version }); i >= 0 {
			st.Applied, st.AppliedAt = true, applied[i].AppliedAt
		}
		out = append(out, st)
	}
	for _, a := range applied {
		if !slices.ContainsFunc(ms, func(m Migration) bool { return m.Version == a.Version }) {
			a.Unknown = true
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b MigrationStatus) int { return a.Version - b.Version })
	return out, nil
}
