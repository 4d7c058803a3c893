package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mhero-health/mhero/registry/demo"
	"github.com/mhero-health/mhero/registry/registrytest"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

type broadcastView struct {
	ID         int64    `json:"id"`
	Recipients int      `json:"recipients"`
	Segments   int      `json:"segments"`
	Encoding   string   `json:"encoding"`
	Warnings   []string `json:"warnings"`
	State      string   `json:"state"`
	Estimate   []struct {
		MNO        string  `json:"mno"`
		Recipients int     `json:"recipients"`
		Cost       float64 `json:"cost"`
	} `json:"estimate"`
	EstimatedCost float64 `json:"estimated_cost"`
	Counts        struct {
		Queued    int `json:"queued"`
		Submitted int `json:"submitted"`
		Delivered int `json:"delivered"`
		Cancelled int `json:"cancelled"`
		Sent      int `json:"sent"`
	} `json:"counts"`
	Rates struct {
		Delivered float64 `json:"delivered"`
	} `json:"rates"`
	Cost float64 `json:"cost"`
}

// TestBroadcastOverHTTP: a broadcast created over the API reaches the simulator, its
// receipts come back, and the API's counts, per-recipient CSV, queue and cost report say so.
func TestBroadcastOverHTTP(t *testing.T) {
	sim := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Receipts: true, ReceiptDelay: 5 * time.Millisecond})
	t.Cleanup(sim.Close)
	a, key := simApp(t, registrytest.NewDatabase(t), sim, nil)
	ctx := t.Context()
	if err := demo.Seed(ctx, a.registry, demo.Size{Counties: 3, DistrictsPerCounty: 2, Depth: 2, Facilities: 12, Workers: 300, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	sender := client{t: t, base: "http://" + a.Addr(), key: key}

	// Bad input: a clear 4xx each, nothing made.
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"text": "Hi", "target": {"cadres": ["chw"]}, "colour": "red"}`, 400, "invalid"},
		{`{"text": "Hi", "target": {"cadres": "chw"}}`, 400, "invalid"},
		{`{"text": "Hi", "target": {}}`, 422, "validation"},
		{`{"text": "Hi", "target": {"languages": ["zz"]}}`, 422, "validation"},
		{`{"text": "Hi", "target": {"cadres": ["chw"]}, "send_at": "2020-01-01T00:00:00Z"}`, 422, "validation"},
		{`{"text": "Hi {nickname}", "target": {"cadres": ["chw"]}}`, 422, "validation"},
		{`{"text": "Hi", "target": {"cadres": ["chw"]}, "max_cost": 0.0001}`, 422, "validation"},
	} {
		var e apiError
		sender.json("POST", "/api/v1/broadcasts", c.body, c.status, &e)
		if e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s: %+v, want %s", c.body, e.Error, c.code)
		}
	}
	var made int
	if err := a.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM broadcasts) + (SELECT count(*) FROM messages)`).Scan(&made); err != nil || made != 0 {
		t.Fatalf("refused broadcasts left %d rows (%v)", made, err)
	}

	// Text GSM cannot carry goes as UCS-2, and the answer says so.
	var b broadcastView
	res, body := sender.do("POST", "/api/v1/broadcasts", "application/json",
		strings.NewReader(`{"text": "Dear {first_name}, the “cold chain” check is due – thank you", "target": {"cadres": ["chw", "nurse"]}}`),
		"Idempotency-Key", "cold-chain-1")
	if res.StatusCode != http.StatusCreated || json.Unmarshal(body, &b) != nil {
		t.Fatalf("create = %d %s", res.StatusCode, body)
	}
	if b.Encoding != "ucs2" || len(b.Warnings) == 0 || b.Recipients == 0 || len(b.Estimate) != 2 || b.EstimatedCost <= 0 {
		t.Errorf("created %+v", b)
	}
	res, body = sender.do("POST", "/api/v1/broadcasts", "application/json",
		strings.NewReader(`{"text": "Dear {first_name}, the “cold chain” check is due – thank you", "target": {"cadres": ["chw", "nurse"]}}`),
		"Idempotency-Key", "cold-chain-1")
	var again broadcastView
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &again) != nil || again.ID != b.ID {
		t.Errorf("repeat = %d %s, want 200 with broadcast %d", res.StatusCode, body, b.ID)
	}

	// It is delivered, and the API counts it.
	deadline := time.Now().Add(30 * time.Second)
	path := "/api/v1/broadcasts/" + strconv.FormatInt(b.ID, 10)
	for {
		sender.json("GET", path, nil, 200, &b)
		if b.State == "finished" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b.State != "finished" || b.Counts.Delivered != b.Recipients || b.Counts.Sent != b.Recipients || b.Rates.Delivered != 1 || b.Cost <= 0 {
		t.Fatalf("broadcast after delivery: %+v", b)
	}
	if got := sim.Stats().Submits; int(got) < b.Segments {
		t.Errorf("the SMSC got %d submit_sm for %d segments", got, b.Segments)
	}

	// Per recipient, as CSV: every recipient with its SMSC id and state.
	res, body = sender.do("GET", path+"/messages", "", nil, "Accept", "text/csv")
	rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if res.StatusCode != 200 || err != nil || len(rows) != b.Recipients+1 {
		t.Fatalf("messages CSV = %d, %d rows (%v)", res.StatusCode, len(rows), err)
	}
	for _, r := range rows[1:] {
		if r[4] != "delivered" || r[6] == "" || !strings.HasPrefix(r[2], "+231") {
			t.Errorf("CSV row %q", r)
			break
		}
	}
	var page struct {
		Items      []json.RawMessage `json:"items"`
		NextCursor string            `json:"next_cursor"`
	}
	sender.json("GET", path+"/messages?limit=10&state=delivered", nil, 200, &page)
	if len(page.Items) != 10 || page.NextCursor == "" {
		t.Errorf("a JSON page: %d items, cursor %q", len(page.Items), page.NextCursor)
	}

	var costs struct {
		Total float64 `json:"total"`
		Items []struct {
			MNO      string `json:"mno"`
			Messages int    `json:"messages"`
		} `json:"items"`
	}
	sender.json("GET", "/api/v1/reports/costs?period="+time.Now().UTC().Format("200601"), nil, 200, &costs)
	if len(costs.Items) != 2 || costs.Total < b.Cost-1e-6 {
		t.Errorf("cost report %+v, broadcast cost %v", costs, b.Cost)
	}
	sender.json("GET", "/api/v1/reports/costs?period=2026-11", nil, 400, nil)

	// A scheduled broadcast waits in the queue, visible by MNO and priority, until cancelled.
	var later broadcastView
	sender.json("POST", "/api/v1/broadcasts", map[string]any{"text": "Weekly stock report due Friday",
		"target": map[string]any{"cadres": []string{"chw"}}, "priority": "bulk",
		"send_at": time.Now().Add(time.Hour).Format(time.RFC3339)}, 201, &later)
	var queue struct {
		Items []struct {
			MNO      string `json:"mno"`
			Priority string `json:"priority"`
			Queued   int    `json:"queued"`
			Due      int    `json:"due"`
		} `json:"items"`
	}
	sender.json("GET", "/api/v1/queue", nil, 200, &queue)
	queued := 0
	for _, q := range queue.Items {
		queued += q.Queued
		if q.Priority != "bulk" || q.Due != 0 || (q.MNO != "lonestar" && q.MNO != "orange") {
			t.Errorf("queue row %+v", q)
		}
	}
	if queued != later.Recipients {
		t.Errorf("queue holds %d, want the scheduled %d", queued, later.Recipients)
	}
	_, metrics := client{t: t, base: sender.base}.do("GET", "/metrics", "", nil)
	if !strings.Contains(string(metrics), `mhero_outbox_queued{mno="lonestar",priority="bulk"}`) {
		t.Errorf("metrics lack the queue length per MNO and priority")
	}
	var cancelled struct {
		Cancelled int `json:"cancelled"`
	}
	sender.json("POST", "/api/v1/broadcasts/"+strconv.FormatInt(later.ID, 10)+"/cancel", nil, 200, &cancelled)
	sender.json("GET", "/api/v1/broadcasts/"+strconv.FormatInt(later.ID, 10), nil, 200, &later)
	if cancelled.Cancelled != later.Recipients || later.State != "cancelled" || later.Counts.Cancelled != later.Recipients {
		t.Errorf("cancel: %d cancelled, broadcast %+v", cancelled.Cancelled, later)
	}
	// A reader may look but not send.
	rkey, _, err := a.registry.CreateAPIKey(context.Background(), "viewer", "reader", "")
	if err != nil {
		t.Fatal(err)
	}
	reader := client{t: t, base: sender.base, key: rkey}
	reader.json("POST", "/api/v1/broadcasts", `{"text": "Hi", "target": {"cadres": ["chw"]}}`, 403, nil)
	reader.json("GET", path, nil, 200, nil)
}

// TestTwoInstances runs two servers on one database and one Valkey: they share the
// broadcast's work, every recipient gets exactly one message (no crash, so no
// duplicate), and together they never hold more binds than each account allows.
func TestTwoInstances(t *testing.T) {
	sim := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Receipts: true, ReceiptDelay: time.Millisecond})
	t.Cleanup(sim.Close)
	dbURL := registrytest.NewDatabase(t)
	var maxConns atomic.Int64
	watch, stopWatch := context.WithCancel(t.Context())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watch.Err() == nil {
			if c := sim.Stats().Conns; c > maxConns.Load() {
				maxConns.Store(c)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	prefix := registrytest.KeyPrefix(t) // one deployment: the two share their Valkey keys
	shared := func(c *Config) { c.ValkeyPrefix = prefix }
	// Started together, as a deployment's instances are.
	one := startSimApp(t, dbURL, sim, shared)
	two := startSimApp(t, dbURL, sim, shared)
	waitBinds(t, one)
	waitBinds(t, two)
	key, _, err := one.registry.CreateAPIKey(t.Context(), "ops", "sender", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := demo.Seed(ctx, one.registry, demo.Size{Counties: 3, DistrictsPerCounty: 2, Depth: 2, Facilities: 12, Workers: 3000, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	id := postBroadcast(t, "http://"+one.Addr(), key, map[string]any{"text": "Dear {first_name}: polio round starts Monday.",
		"target": map[string]any{"locations": []string{demo.CountryCode}}})
	var b broadcastView
	reader := client{t: t, base: "http://" + two.Addr(), key: key}
	deadline := time.Now().Add(60 * time.Second)
	for b.State != "finished" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		reader.json("GET", "/api/v1/broadcasts/"+strconv.FormatInt(id, 10), nil, 200, &b)
	}
	stopWatch()
	<-watched
	if b.State != "finished" || b.Counts.Delivered != b.Recipients {
		t.Fatalf("broadcast %+v", b)
	}
	perNumber := map[string]int{}
	for _, s := range sim.Submits() {
		perNumber[s.Dst]++
	}
	for to, n := range perNumber {
		if n != 1 {
			t.Errorf("%s got %d messages", to, n)
		}
	}
	if len(perNumber) != b.Recipients {
		t.Errorf("%d numbers reached, want %d", len(perNumber), b.Recipients)
	}
	// Both instances held binds, so both sent: started together, they took one slot of
	// each account each.
	for i, a := range []*App{one, two} {
		if len(a.smpp.Sendable()) != 2 {
			t.Errorf("instance %d can send to %v, want both accounts", i+1, a.smpp.Sendable())
		}
	}
	if m := maxConns.Load(); m > 4 {
		t.Errorf("%d connections at once to the SMSC: two accounts of two binds allow 4", m)
	}
}
