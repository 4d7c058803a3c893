package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/smpp"
)

func runMigrate(ctx context.Context, cfg Config, log *slog.Logger) error {
	return migrateAll(ctx, cfg.DatabaseURL, log.With("comp", "migrate"))
}

// openRegistry migrates and opens the registry for a one-shot command.
func openRegistry(ctx context.Context, cfg Config, log *slog.Logger) (*registry.Store, func(), error) {
	if err := migrateAll(ctx, cfg.DatabaseURL, nil); err != nil {
		return nil, nil, fmt.Errorf("migrate PostgreSQL: %w", err)
	}
	db, err := openDB(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	return registry.NewStore(db, cfg.File.Country, log.With("comp", "registry")), db.Close, nil
}

func runImport(ctx context.Context, cfg Config, log *slog.Logger, args []string, stdout io.Writer) error {
	fs := newFlags("import", stdout)
	partial := fs.Bool("partial", false, "commit the good rows and report the bad ones (default: all or nothing)")
	dryRun := fs.Bool("dry-run", false, "check every row, write nothing")
	format := fs.String("format", "", "csv-locations, csv-facilities, csv-workers or fhir-bundle (default: detect)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mhero import [--partial] [--dry-run] [--format F] FILE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("%w: import needs a FILE", errUsage)
	}
	store, closeDB, err := openRegistry(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeDB()
	var failed error
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		res, err := store.Import(ctx, f, registry.ImportOptions{Format: registry.ImportFormat(*format), Partial: *partial, DryRun: *dryRun, Source: name})
		f.Close()
		if res != nil {
			printImport(stdout, name, res)
		}
		if err != nil {
			if mhero.ErrorCode(err) == mhero.EVALIDATION {
				failed = errors.Join(failed, fmt.Errorf("%s: %s (nothing written; --partial commits the good rows)", name, mhero.ErrorMessage(err)))
				continue
			}
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return failed
}

func printImport(w io.Writer, name string, r *registry.ImportResult) {
	fmt.Fprintf(w, "%s: %s %s — %d rows: %d ok (%d created, %d updated), %d failed [import %d]\n",
		name, r.Format, r.Status, r.RowsTotal, r.RowsOK, r.Created, r.Updated, r.RowsFailed, r.ID)
	for i, e := range r.Errors {
		if i == 50 {
			fmt.Fprintf(w, "  ... and %d more (GET /api/v1/imports/%d)\n", r.RowsFailed-50, r.ID)
			break
		}
		fmt.Fprintf(w, "  line %d", e.Line)
		if e.Field != "" {
			fmt.Fprintf(w, ", %s", e.Field)
		}
		fmt.Fprintf(w, ": %s\n", e.Message)
	}
}

func runAPIKey(ctx context.Context, cfg Config, log *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: mhero apikey create|list|revoke", errUsage)
	}
	sub, args := args[0], args[1:]
	fs := newFlags("apikey "+sub, stdout)
	name := fs.String("name", "", "who or what the key is for")
	role := fs.String("role", "", "admin, sender or reader")
	scope := fs.String("scope", "", "limit the key to this location's subtree (id or code)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	store, closeDB, err := openRegistry(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeDB()
	switch sub {
	case "create":
		key, k, err := store.CreateAPIKey(ctx, *name, mhero.Role(*role), *scope)
		if err != nil {
			return describe(err)
		}
		fmt.Fprintf(stdout, "%s\n", key)
		fmt.Fprintf(os.Stderr, "created key %d %q (%s%s). The key above is shown once; store it now.\n", k.ID, k.Name, k.Role, scopeNote(k.Scope))
		return nil
	case "list":
		keys, err := store.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tSCOPE\tPREFIX\tCREATED\tSTATE")
		for _, k := range keys {
			state := "active"
			if k.RevokedAt != nil {
				state = "revoked"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s…\t%s\t%s\n", k.ID, k.Name, k.Role, k.Scope, k.Prefix, k.CreatedAt.Format("2006-01-02"), state)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: mhero apikey revoke ID", errUsage)
		}
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: key id must be a number", errUsage)
		}
		if err := store.RevokeAPIKey(ctx, id); err != nil {
			return describe(err)
		}
		fmt.Fprintf(stdout, "revoked key %d\n", id)
		return nil
	}
	return fmt.Errorf("%w: mhero apikey create|list|revoke", errUsage)
}

func scopeNote(scope string) string {
	if scope == "" {
		return ", whole country"
	}
	return ", scope " + scope
}

// describe spells out an application error's details for a terminal.
func describe(err error) error {
	d := mhero.ErrorDetails(err)
	if len(d) == 0 {
		return errors.New(mhero.ErrorMessage(err))
	}
	msg := mhero.ErrorMessage(err)
	for _, e := range d {
		msg += "\n  - " + e.Field + ": " + e.Message
	}
	return errors.New(msg)
}

// runPhone shows how numbers are read in the configured country and which MNO they route
// to; it needs no database.
func runPhone(_ context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: mhero phone NUMBER [NUMBER]", errUsage)
	}
	var router *smpp.Pool
	if len(cfg.File.SMSC) > 0 {
		var err error
		if router, err = smpp.NewPool(cfg.File.SMSC, smpp.Handlers{}, slog.New(slog.DiscardHandler), nil); err != nil {
			return err
		}
	}
	var bad error
	for _, a := range args {
		m, err := registry.ParseMSISDN(a, cfg.File.Country)
		if err != nil {
			fmt.Fprintf(stdout, "%s\tinvalid: %s\n", a, mhero.ErrorMessage(err))
			bad = errors.New("some numbers are invalid")
			continue
		}
		route := "no SMSC configured"
		if router != nil {
			if mno, err := router.Route(m); err != nil {
				route = "unroutable: " + err.Error()
			} else {
				route = "routes to " + mno
			}
		}
		fmt.Fprintf(stdout, "%s\t%s\t%s\n", a, m.E164(), route)
	}
	return bad
}
