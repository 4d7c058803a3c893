package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// server is an `mhero serve` process of the test's own build.
type server struct {
	t    *testing.T
	bin  string
	env  []string
	addr string
	cmd  *exec.Cmd
	log  *syncBuffer
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the server and waits until /readyz answers 200 (database, Valkey, a bind).
func (s *server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "serve")
	s.cmd.Env = append(os.Environ(), s.env...)
	s.log = &syncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + s.addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server never became ready; its log:\n%s", s.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// TestKill9MidBroadcast kills the server with SIGKILL in the middle of a 20,000-recipient
// broadcast and starts it again: every recipient gets the message, no message is lost,
// and the duplicates are at most the sends in flight at the kill (messaging.concurrency).
func TestKill9MidBroadcast(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	bin := filepath.Join(t.TempDir(), "mhero")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const concurrency = 50
	dbURL := registrytest.NewDatabase(t)
	sim := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Receipts: true, ReceiptDelay: 2 * time.Millisecond})
	t.Cleanup(sim.Close)
	host, port, _ := net.SplitHostPort(sim.Addr())
	conf := filepath.Join(t.TempDir(), "mhero.yaml")
	writeFile(t, conf, fmt.Sprintf(`country: LR
smsc:
  - {name: lonestar, host: %[1]s, port: %[2]s, system_id: mhero, binds: 2, window: 10, source_addr: "384", prefixes: ["+23188"], rate_per_segment: 0.004}
  - {name: orange, host: %[1]s, port: %[2]s, system_id: mhero, binds: 2, window: 10, source_addr: "384", prefixes: ["+23177"], rate_per_segment: 0.005}
messaging: {concurrency: %[3]d, lease: 3s}
`, host, port, concurrency))

	// The registry, before the server starts (migrations first, as serve would).
	ctx := t.Context()
	if err := migrateAll(ctx, dbURL, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	reg := registry.NewStore(db, "LR", nil)
	if err := demo.Seed(ctx, reg, demo.Size{Counties: 15, DistrictsPerCounty: 6, Depth: 2, Facilities: 200, Workers: 20_400, Seed: 9}); err != nil {
		t.Fatal(err)
	}
	key, _, err := reg.CreateAPIKey(ctx, "ops", mhero.RoleSender, "")
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	srv := &server{t: t, bin: bin, addr: addr, env: []string{"MHERO_DATABASE_URL=" + dbURL, "MHERO_VALKEY_URL=" + registrytest.ValkeyURL(), "MHERO_VALKEY_PREFIX=" + registrytest.KeyPrefix(t),
		"MHERO_HTTP_ADDR=" + addr, "MHERO_CONFIG=" + conf, "MHERO_LOG_LEVEL=warn", "MHERO_LOG_FORMAT=json"}}
	srv.start()
	t.Cleanup(srv.stop)

	id := postBroadcast(t, "http://"+addr, key, map[string]any{"text": "Dear {first_name}: Ebola screening training at {facility} on Monday.",
		"target": map[string]any{"locations": []string{"LR"}}, "quiet_hours": false})
	var recipients int
	if err := db.QueryRow(ctx, `SELECT recipients FROM broadcasts WHERE id = $1`, id).Scan(&recipients); err != nil || recipients < 20_000 {
		t.Fatalf("broadcast of %d recipients (%v), want over 20,000", recipients, err)
	}
	waitUntil := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; server log:\n%s", what, srv.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitUntil("a quarter of the broadcast sent", 60*time.Second, func() bool { return sim.Stats().Submits >= int64(recipients/4) })
	srv.kill()
	atKill := sim.Stats().Submits
	if atKill >= int64(recipients) {
		t.Fatalf("the broadcast was over (%d submits) before the kill; nothing was tested", atKill)
	}
	t.Logf("killed after %d of %d submits", atKill, recipients)

	srv.start()
	waitUntil("every message settled", 120*time.Second, func() bool {
		var open int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM messages WHERE broadcast_id = $1 AND state = 'queued'`, id).Scan(&open); err != nil {
			t.Fatal(err)
		}
		return open == 0
	})
	time.Sleep(200 * time.Millisecond) // the last submits' receipts

	// Every recipient got it; duplicates are bounded by the sends in flight at the kill.
	got := map[string]int{}
	for _, s := range sim.Submits() {
		got[s.Dst]++
	}
	rows, err := db.Query(ctx, `SELECT msisdn, state FROM messages WHERE broadcast_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	missing, states := 0, map[string]int{}
	for rows.Next() {
		var to, state string
		if err := rows.Scan(&to, &state); err != nil {
			t.Fatal(err)
		}
		states[state]++
		if got[to] == 0 {
			missing++
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	dups := int(sim.Stats().Submits) - len(got)
	t.Logf("after restart: %d submits for %d recipients (%d duplicates), states %v", sim.Stats().Submits, recipients, dups, states)
	if missing > 0 || len(got) != recipients {
		t.Errorf("%d recipients never got the message (%d distinct numbers reached of %d)", missing, len(got), recipients)
	}
	if dups > concurrency {
		t.Errorf("%d duplicates, more than the %d sends that can be in flight", dups, concurrency)
	}
	// A response that comes after its send's deadline (the lease is short here, and a
	// machine starved by other jobs can be that slow) leaves a message "unknown": never
	// resent, by design; the simulator's count above shows it arrived all the same.
	if states["submitted"]+states["delivered"]+states["unknown"] != recipients {
		t.Errorf("message states %v: every message should be submitted, delivered or (late answer) unknown", states)
	}
	if states["unknown"] > concurrency {
		t.Errorf("%d messages unknown, more than the sends in flight at any moment", states["unknown"])
	}
	if strings.Contains(srv.log.String(), `"level":"ERROR"`) {
		t.Logf("server log after restart:\n%s", srv.log.String())
	}
}
