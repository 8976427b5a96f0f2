package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/store/postgres"
)

type migrateCmd struct {
	To     *int             `name:"to" placeholder:"VERSION" help:"Apply the migrations up to and including VERSION only (migrate apply). Refused when VERSION is below the database's current version or above the latest this binary embeds."`
	Apply  migrateApplyCmd  `cmd:"" default:"1" help:"Apply every embedded migration the database lacks (the default). Safe to run from several processes at once."`
	Status migrateStatusCmd `cmd:"" help:"List the migrations and whether each is applied."`
	Export migrateExportCmd `cmd:"" help:"Write the embedded migrations as files for another migration tool (goose, golang-migrate), bookkeeping included."`
}

type migrateApplyCmd struct{}

func (migrateApplyCmd) Run(a *Env, m *migrateCmd) error {
	to := 0
	if m.To != nil {
		if to = *m.To; to <= 0 {
			return Usagef("--to must be a positive version, got %d", to)
		}
	}
	return a.withPool(func(pool *pgxpool.Pool) error {
		before, err := postgres.MigrateStatus(a.ctx, pool)
		if err != nil {
			return err
		}
		if to > 0 {
			err = postgres.MigrateTo(a.ctx, pool, to)
		} else {
			err = postgres.Migrate(a.ctx, pool)
		}
		if err != nil {
			return err
		}
		after, err := postgres.MigrateStatus(a.ctx, pool)
		if err != nil {
			return err
		}
		var applied []string
		for _, m := range after {
			if m.Applied && !wasApplied(before, m.Version) {
				applied = append(applied, fmt.Sprintf("%03d_%s", m.Version, m.Name))
			}
		}
		if len(applied) == 0 && to > 0 {
			fmt.Fprintf(a.io.Out, "database is at version %d already (%d migrations applied)\n", to, countApplied(after))
			return nil
		}
		if len(applied) == 0 {
			fmt.Fprintf(a.io.Out, "database is up to date (%d migrations applied)\n", countApplied(after))
			return nil
		}
		fmt.Fprintf(a.io.Out, "applied %d migration(s): %s\n", len(applied), strings.Join(applied, ", "))
		return nil
	})
}

func wasApplied(ms []postgres.MigrationStatus, version int) bool {
	for _, m := range ms {
		if m.Version == version {
			return m.Applied
		}
	}
	return false
}

func countApplied(ms []postgres.MigrationStatus) int {
	n := 0
	for _, m := range ms {
		if m.Applied {
			n++
		}
	}
	return n
}

type migrateStatusCmd struct{}

func (migrateStatusCmd) Run(a *Env, m *migrateCmd) error {
	if m.To != nil {
		return Usagef("--to applies to \"migrate apply\", not to \"migrate status\"")
	}
	return a.withPool(func(pool *pgxpool.Pool) error {
		ms, err := postgres.MigrateStatus(a.ctx, pool)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(a.io.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tSTATUS\tAPPLIED AT")
		pending, current, latest := 0, 0, 0
		for _, m := range ms {
			if m.Applied {
				current = max(current, m.Version)
			}
			if !m.Unknown {
				latest = max(latest, m.Version)
			}
			status, at := "pending", "-"
			switch {
			case m.Unknown:
				status, at = "applied (unknown to this build)", m.AppliedAt.UTC().Format(time.RFC3339)
			case m.Applied:
				status, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
			default:
				pending++
			}
			fmt.Fprintf(tw, "%03d\t%s\t%s\t%s\n", m.Version, m.Name, status, at)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(a.io.Out, "database version %d, latest in this binary %d\n", current, latest)
		if current > latest {
			fmt.Fprintf(a.io.Out, "the database was migrated by a newer build: this binary is older than the schema\n")
		}
		if pending > 0 {
			fmt.Fprintf(a.io.Out, "%d migration(s) pending: run \"%s migrate\" (or \"%s migrate --to VERSION\")\n", pending, a.name, a.name)
		}
		return nil
	})
}

type migrateExportCmd struct {
	Dir    string `arg:"" name:"dir" help:"Directory to write the files to (created when missing)."`
	Format string `short:"f" enum:"sql,goose,golang-migrate" default:"sql" help:"File layout (${enum}): sql writes NNN_name.sql, goose NNN_name.sql with goose annotations, golang-migrate NNN_name.up.sql."`
}

func (c *migrateExportCmd) Run(a *Env, m *migrateCmd) error {
	if m.To != nil {
		return Usagef("--to applies to \"migrate apply\", not to \"migrate export\"")
	}
	ms, err := postgres.Migrations()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", c.Dir, err)
	}
	for _, mg := range ms {
		name, body := exportFile(mg, c.Format)
		if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("write migration %03d_%s: %w", mg.Version, mg.Name, err)
		}
	}
	fmt.Fprintf(a.io.Out, "wrote %d migration(s) to %s (%s)\n", len(ms), c.Dir, c.Format)
	return nil
}

// exportFile returns the file name and content of migration m in format.
// Each file is m.Script(): the SQL plus the bookkeeping postgres.Migrate
// does, so troupe_schema_migrations stays true whichever tool applied it.
func exportFile(m postgres.Migration, format string) (name, body string) {
	base := fmt.Sprintf("%03d_%s", m.Version, m.Name)
	switch format {
	case "goose":
		// One statement block: goose would otherwise split the script on
		// semicolons, dollar-quoted function bodies included.
		return base + ".sql", "-- +goose Up\n-- +goose StatementBegin\n" + m.Script() + "-- +goose StatementEnd\n"
	case "golang-migrate":
		return base + ".up.sql", m.Script()
	default:
		return base + ".sql", m.Script()
	}
}
