package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/tenancy"
)

type tenantsCmd struct {
	Create tenantsCreateCmd `cmd:"" help:"Register a tenant and create its partition of every partitioned table (idempotent)."`
	List   tenantsListCmd   `cmd:"" help:"List the registered tenants."`
	Drop   tenantsDropCmd   `cmd:"" help:"Erase a tenant: drop its partitions and delete its rows. Asks for confirmation unless --yes."`
}

// withTenants runs fn with a tenancy manager on the configured database.
func (a *Env) withTenants(fn func(*tenancy.Manager) error) error {
	return a.withPool(func(pool *pgxpool.Pool) error {
		m, err := tenancy.NewManager(pool, &tenancy.Config{Logger: a.logger})
		if err != nil {
			return err
		}
		return fn(m)
	})
}

type tenantsCreateCmd struct {
	ID   string `arg:"" name:"id" help:"Tenant id: 1 to 63 ASCII letters, digits, '_' or '-'."`
	Name string `help:"Display name of the tenant."`
}

func (c *tenantsCreateCmd) Run(a *Env) error {
	id, err := store.ParseTenantID(c.ID)
	if err != nil {
		return err
	}
	return a.withTenants(func(m *tenancy.Manager) error {
		t, created, err := m.Create(a.ctx, id, c.Name)
		if err != nil {
			return fmt.Errorf("create tenant %q: %w", id, err)
		}
		if created {
			fmt.Fprintf(a.io.Out, "created tenant %s\n", t.ID)
		} else {
			fmt.Fprintf(a.io.Out, "tenant %s already exists; its partitions are complete\n", t.ID)
		}
		return nil
	})
}

type tenantsListCmd struct {
	Format string `enum:"table,json" default:"table" help:"Output format (${enum})."`
}

func (c *tenantsListCmd) Run(a *Env) error {
	return a.withTenants(func(m *tenancy.Manager) error {
		ts, err := m.List(a.ctx)
		if err != nil {
			return fmt.Errorf("list tenants: %w", err)
		}
		if c.Format == "json" {
			type tenantJSON struct {
				ID      string    `json:"id"`
				Name    string    `json:"name"`
				Created time.Time `json:"created"`
			}
			out := make([]tenantJSON, 0, len(ts))
			for _, t := range ts {
				out = append(out, tenantJSON{ID: string(t.ID), Name: t.Name, Created: t.Created.UTC()})
			}
			enc := json.NewEncoder(a.io.Out)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		tw := tabwriter.NewWriter(a.io.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.Created.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	})
}

type tenantsDropCmd struct {
	ID  string `arg:"" name:"id" help:"Tenant id."`
	Yes bool   `short:"y" help:"Do not ask for confirmation."`
}

// errNotConfirmed is returned when the user does not confirm a drop.
var errNotConfirmed = errors.New("not confirmed: nothing was dropped")

func (c *tenantsDropCmd) Run(a *Env) error {
	id, err := store.ParseTenantID(c.ID)
	if err != nil {
		return err
	}
	return a.withTenants(func(m *tenancy.Manager) error {
		if !c.Yes {
			if _, err := m.Get(a.ctx, id); errors.Is(err, tenancy.ErrTenantNotFound) {
				fmt.Fprintf(a.io.Err, "tenant %s is not registered; dropping removes any rows left in its partition value\n", id)
			} else if err != nil {
				return fmt.Errorf("look up tenant %q: %w", id, err)
			}
			ok, err := confirm(a, fmt.Sprintf("Drop tenant %s and erase all its streams, events, checkpoints and read-model rows? [y/N] ", id))
			if err != nil {
				return err
			}
			if !ok {
				return errNotConfirmed
			}
		}
		if err := m.Drop(a.ctx, id); err != nil {
			return fmt.Errorf("drop tenant %q: %w", id, err)
		}
		fmt.Fprintf(a.io.Out, "dropped tenant %s\n", id)
		return nil
	})
}

// confirm asks question on standard error and reads the answer from
// standard input: "y" or "yes" (any case) confirms, anything else (end of
// input included) does not.
func confirm(a *Env, question string) (bool, error) {
	fmt.Fprint(a.io.Err, question)
	if a.io.In == nil {
		fmt.Fprintln(a.io.Err)
		return false, nil
	}
	line, err := bufio.NewReader(a.io.In).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(a.io.Err)
		return false, nil
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
