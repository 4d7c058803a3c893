package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// runDemo is what `make run` calls: migrate, seed a synthetic country when the registry
// is empty, make an admin key, start an SMSC simulator and serve until interrupted.
func runDemo(ctx context.Context, cfg Config, log *slog.Logger, args []string, stdout io.Writer) error {
	fs := newFlags("demo", stdout)
	workers := fs.Int("workers", demo.DefaultSize().Workers, "workers in the synthetic country")
	smscAddr := fs.String("smsc", "127.0.0.1:2775", "address for the SMSC simulator; empty to use only the configured SMSCs")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	store, closeDB, err := openRegistry(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeDB()

	existing, err := store.ListWorkers(ctx, registry.Target{IncludeInactive: true}, 0, 1)
	if err != nil {
		return err
	}
	if len(existing) == 0 {
		sz := demo.DefaultSize()
		sz.Workers = *workers
		fmt.Fprintf(stdout, "Seeding a synthetic country: %+v\n", demo.Country(sz))
		start := time.Now()
		if err := demo.Seed(ctx, store, sz); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Seeded in %s.\n", time.Since(start).Round(time.Millisecond))
	} else {
		fmt.Fprintln(stdout, "The registry already has workers; not seeding again.")
	}
	key, _, err := store.CreateAPIKey(ctx, "demo-admin "+time.Now().UTC().Format(time.RFC3339), mhero.RoleAdmin, "")
	if err != nil {
		return err
	}
	closeDB()

	var sim *smpptest.Server
	if *smscAddr != "" {
		sim, err = smpptest.NewServerAt(*smscAddr, smpptest.Config{Receipts: true, ReceiptDelay: 2 * time.Second,
			ReceiptStates: map[string]float64{"DELIVRD": 0.95, "UNDELIV": 0.03, "EXPIRED": 0.02}, SubmitHistory: -1,
			Logger: log.With("comp", "smscsim")})
		if err != nil {
			return fmt.Errorf("start the SMSC simulator on %s (another one running? use --smsc=): %w", *smscAddr, err)
		}
		defer sim.Close()
		if len(cfg.File.SMSC) == 0 {
			host, port, _ := net.SplitHostPort(sim.Addr())
			p, _ := strconv.Atoi(port)
			cfg.File.SMSC = []smpp.Config{{Name: "demo", Host: host, Port: p, SystemID: "mhero", Binds: 2, Window: 10,
				SourceAddr: "384", Prefixes: []string{"+231"}, RatePerSegment: 0.004}}
		}
	}

	a, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	base := "http://" + a.Addr()
	fmt.Fprintf(stdout, `
mhero demo is running.
  API:        %[1]s/api/v1   (OpenAPI: %[1]s/api/v1/openapi.yaml)
  Health:     %[1]s/healthz   %[1]s/readyz   %[1]s/metrics
  SMSC sim:   %[3]s
  Admin key:  %[2]s   (shown once; "mhero apikey create" makes more)

Try:
  curl -s -H 'Authorization: Bearer %[2]s' '%[1]s/api/v1/workers?cadre=chw&limit=3'
  curl -s -H 'Authorization: Bearer %[2]s' -H 'Content-Type: application/json' -X POST %[1]s/api/v1/targets/preview -d '{"cadres":["nurse","midwife"]}'
  curl -s -H 'Authorization: Bearer %[2]s' -H 'Accept: text/csv' '%[1]s/api/v1/facilities?limit=5'
  curl -s -H 'Authorization: Bearer %[2]s' -H 'Content-Type: application/json' -X POST %[1]s/api/v1/messages -d '{"worker":"ihris-000001","text":"Hello {name}, stock report due Friday"}'
  curl -s -H 'Authorization: Bearer %[2]s' %[1]s/api/v1/messages/1     # queued, submitted, then delivered by the simulator's receipt

Ctrl-C stops it.
`, base, key, simAddr(sim))
	return waitAndClose(ctx, a, log)
}

func simAddr(s *smpptest.Server) string {
	if s == nil {
		return "(none; using the configured SMSCs)"
	}
	return s.Addr()
}
