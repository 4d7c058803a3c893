// Command mhero is the server and its operator tools: serve, migrate, import, apikey,
// phone and demo. It is the composition root: the only package that reads the
// environment and wires the adapters together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // time_zone must load on a machine without the zoneinfo files
)

const usage = `mhero: two-way SMS and USSD between a ministry of health and its health workers.

Usage:
  mhero serve                         run the server (migrates first)
  mhero migrate                       apply database migrations and exit
  mhero import [flags] FILE           import workers, facilities or locations (CSV or FHIR bundle)
  mhero apikey create --name N --role admin|sender|reader [--scope LOCATION]
  mhero apikey list | revoke ID
  mhero phone NUMBER...               show how a phone number is read (E.164) and routed
  mhero phone --msisdn N [--code C]   a terminal phone: walk the USSD menus of the running server
  mhero menus lint DIR                check USSD menus: unreachable screens, dead ends, lengths, translations
  mhero demo [--workers N]            migrate, seed a demo country, start an SMSC simulator and serve

Configuration comes from the environment (MHERO_DATABASE_URL, MHERO_VALKEY_URL,
MHERO_HTTP_ADDR, MHERO_CONFIG, MHERO_LOG_LEVEL, MHERO_LOG_FORMAT) and the YAML file
MHERO_CONFIG names (default mhero.yaml). See README.md.
`

// errUsage marks a command-line mistake (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mhero:", err)
		os.Exit(1)
	}
}

// Main runs one subcommand. Tests call it with their own environment and writers.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration has problems:\n%w", indent(err))
	}
	log := newLogger(cfg, stderr)
	switch cmd {
	case "serve":
		return runServe(ctx, cfg, log, stdout)
	case "migrate":
		return runMigrate(ctx, cfg, log)
	case "import":
		return runImport(ctx, cfg, log, args, stdout)
	case "apikey":
		return runAPIKey(ctx, cfg, log, args, stdout)
	case "phone":
		return runPhoneCmd(ctx, cfg, args, stdout)
	case "menus":
		return runMenus(cfg, args, stdout)
	case "demo":
		return runDemo(ctx, cfg, log, args, stdout)
	}
	return fmt.Errorf("%w: unknown command %q\n\n%s", errUsage, cmd, usage)
}

// indent prints each joined error on its own indented line.
func indent(err error) error {
	var lines []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			lines = append(lines, "  - "+e.Error())
		}
	} else {
		lines = append(lines, "  - "+err.Error())
	}
	out := ""
	for i, l := range lines {
		if i > 0 {
			out += "\n"
		}
		out += l
	}
	return errors.New(out)
}

// newLogger builds the one slog handler: JSON in production, text on a terminal.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// newFlags returns a FlagSet that reports errors instead of exiting.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}
