package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/troupehq/troupe/store"
	"github.com/troupehq/troupe/store/postgres"
)

type streamsCmd struct {
	Read    streamsReadCmd    `cmd:"" help:"Print a stream's events as JSON lines or a table."`
	Archive streamsArchiveCmd `cmd:"" help:"Archive a stream: it then reads as missing and its id may be used again."`
}

// withStore runs fn with a PostgreSQL store on the configured database,
// upcasting with Config.Upcaster unless raw.
func (a *Env) withStore(raw bool, fn func(*postgres.Store) error) error {
	return a.withPool(func(pool *pgxpool.Pool) error {
		cfg := &postgres.Config{Logger: a.logger}
		if !raw {
			cfg.Upcaster = a.upcaster
		}
		es, err := postgres.New(pool, cfg)
		if err != nil {
			return err
		}
		return fn(es)
	})
}

type streamsReadCmd struct {
	ID        string `arg:"" name:"id" help:"Stream id."`
	Partition string `short:"p" default:"${default_partition}" help:"Partition (tenant) of the stream."`
	Format    string `short:"f" enum:"jsonl,table" default:"jsonl" help:"Output format (${enum})."`
	From      int64  `default:"1" help:"First stream position to print."`
	Limit     int    `help:"Print at most this many events (0: all)."`
	Raw       bool   `help:"Print events as stored, without the service's upcasters (a binary built with cli.Config.Upcaster prints them upcast otherwise)."`
}

// readPage is how many events streams read fetches per round trip.
const readPage = 1000

// eventJSON is one line of `streams read --format jsonl`.
type eventJSON struct {
	StreamID       string          `json:"streamId"`
	Partition      string          `json:"partition"`
	StreamType     string          `json:"streamType"`
	StreamPosition int64           `json:"streamPosition"`
	GlobalPosition int64           `json:"globalPosition"`
	TransactionID  uint64          `json:"transactionId"`
	Type           string          `json:"type"`
	SchemaVersion  string          `json:"schemaVersion"`
	MessageID      string          `json:"messageId"`
	Created        time.Time       `json:"created"`
	Data           json.RawMessage `json:"data"`
	Metadata       store.Metadata  `json:"metadata"`
}

func (c *streamsReadCmd) Run(a *Env) error {
	if c.From < 1 {
		return Usagef("--from must be at least 1, got %d", c.From)
	}
	if c.Limit < 0 {
		return Usagef("--limit must not be negative, got %d", c.Limit)
	}
	if err := store.ValidateTenantID(c.Partition); err != nil {
		return fmt.Errorf("--partition: %w", err)
	}
	return a.withStore(c.Raw, func(es *postgres.Store) error {
		var tw *tabwriter.Writer
		if c.Format == "table" {
			tw = tabwriter.NewWriter(a.io.Out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "POSITION\tGLOBAL\tTYPE\tCREATED\tDATA")
		}
		enc := json.NewEncoder(a.io.Out)
		from, printed := store.Version(c.From), 0
		for {
			page := readPage
			if c.Limit > 0 {
				page = min(page, c.Limit-printed)
			}
			res, err := es.ReadStream(a.ctx, store.StreamID(c.ID), store.ReadOptions{Partition: c.Partition, From: from, MaxCount: page})
			if err != nil {
				return err
			}
			if !res.StreamExists {
				return fmt.Errorf("stream %q not found in partition %q", c.ID, c.Partition)
			}
			for _, e := range res.Events {
				if c.Limit > 0 && printed >= c.Limit {
					break // the rest of a split
				}
				if tw != nil {
					fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\n", e.StreamPosition, e.GlobalPosition, e.Type,
						e.Created.UTC().Format(time.RFC3339Nano), clip(compactJSON(e.Data), 80))
				} else if err := enc.Encode(eventJSON{StreamID: string(e.StreamID), Partition: e.Partition,
					StreamType: e.StreamType, StreamPosition: int64(e.StreamPosition), GlobalPosition: int64(e.GlobalPosition),
					TransactionID: e.TransactionID, Type: e.Type, SchemaVersion: e.SchemaVersion, MessageID: e.MessageID,
					Created: e.Created.UTC(), Data: e.Data, Metadata: e.Metadata}); err != nil {
					return fmt.Errorf("write event %s: %w", e, err)
				}
				from = e.StreamPosition + 1
				printed++
			}
			if len(res.Events) < page || (c.Limit > 0 && printed >= c.Limit) || from > res.CurrentVersion {
				break
			}
		}
		if tw != nil {
			return tw.Flush()
		}
		return nil
	})
}

// compactJSON returns data without insignificant white space.
func compactJSON(data json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return string(data)
	}
	return buf.String()
}

// clip shortens s to at most n runes, marking the cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

type streamsArchiveCmd struct {
	ID        string `arg:"" name:"id" help:"Stream id."`
	Partition string `short:"p" default:"${default_partition}" help:"Partition (tenant) of the stream."`
}

func (c *streamsArchiveCmd) Run(a *Env) error {
	if err := store.ValidateTenantID(c.Partition); err != nil {
		return fmt.Errorf("--partition: %w", err)
	}
	return a.withStore(true, func(es *postgres.Store) error {
		err := es.ArchiveStream(a.ctx, store.StreamID(c.ID), store.ArchiveOptions{Partition: c.Partition})
		if errors.Is(err, store.ErrStreamNotFound) {
			return fmt.Errorf("stream %q not found in partition %q (or already archived)", c.ID, c.Partition)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(a.io.Out, "archived stream %s in partition %s\n", c.ID, c.Partition)
		return nil
	})
}
