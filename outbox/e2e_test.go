package outbox_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/outbox/outboxsmpp"
	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// TestEndToEnd sends messages through a real Pool to the simulator and checks that
// every one ends delivered in PostgreSQL with every receipt matched, whatever the order
// of receipts and responses and however the SMSC writes its ids.
func TestEndToEnd(t *testing.T) {
	long := strings.Repeat("Cholera alert: boil drinking water, wash hands, refer any case of watery diarrhoea. ", 5)[:420]
	cases := []struct {
		name                  string
		smsc                  smpptest.Config
		msgFormat, rcptFormat string
		text                  string
		parts                 int
	}{
		{"receipt after response", smpptest.Config{ReceiptDelay: 5 * time.Millisecond}, "", "", "Stock report due Friday", 1},
		{"receipt before response", smpptest.Config{ReceiptBeforeResp: true, ReceiptDelay: 20 * time.Millisecond}, "", "", "Stock report due Friday", 1},
		{"decimal response hex receipt", smpptest.Config{MessageIDFormat: "decimal", ReceiptIDFormat: "hex", ReceiptTLVs: true}, "decimal", "hex", "Stock report due Friday", 1},
		{"hex response decimal receipt", smpptest.Config{MessageIDFormat: "hex", ReceiptIDFormat: "decimal"}, "hex", "decimal", "Stock report due Friday", 1},
		{"three parts", smpptest.Config{ReceiptDelay: 2 * time.Millisecond}, "", "", long, 3},
		{"three parts receipts before response", smpptest.Config{ReceiptBeforeResp: true, ReceiptDelay: 10 * time.Millisecond}, "", "", long, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			store, db := newStore(t)
			c.smsc.SystemID, c.smsc.Password, c.smsc.Receipts = "mhero", "secret", true
			smsc := smpptest.NewServer(c.smsc)
			t.Cleanup(smsc.Close)
			host, port, _ := net.SplitHostPort(smsc.Addr())
			p, _ := strconv.Atoi(port)
			cfg := smpp.Config{Name: "lonestar", Host: host, Port: p, SystemID: "mhero", Password: "secret",
				SourceAddr: "384", Prefixes: []string{"+23188"}, Binds: 2, Window: 10, ResponseTimeout: 5 * time.Second,
				MessageIDFormat: c.msgFormat, ReceiptIDFormat: c.rcptFormat}
			pool, err := smpp.NewPool([]smpp.Config{cfg}, outboxsmpp.Handlers(store, nil), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := pool.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pool.Stop(context.Background()) })

			const n, workers = 60, 8
			var wg sync.WaitGroup
			errs := make(chan error, n)
			next := make(chan int, n)
			for i := range n {
				next <- i
			}
			close(next)
			for range workers {
				wg.Go(func() {
					for i := range next {
						errs <- sendOne(ctx, store, pool, fmt.Sprintf("2318812%05d", i), c.text)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}

			deadline := time.Now().Add(20 * time.Second)
			// Wait for every part's receipt: a message is delivered on its first part's.
			for count(t, db, `SELECT count(*) FROM message_parts WHERE state = 'delivered'`) < n*c.parts {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d parts delivered; %d receipts unmatched",
						count(t, db, `SELECT count(*) FROM message_parts WHERE state = 'delivered'`), n*c.parts,
						count(t, db, `SELECT count(*) FROM receipts WHERE message_id IS NULL`))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if got := count(t, db, `SELECT count(*) FROM messages WHERE state = 'delivered' AND segments = $1 AND final_at IS NOT NULL`, c.parts); got != n {
				t.Errorf("%d messages delivered with %d segments; want %d", got, c.parts, n)
			}
			// Every part holds its receipt's stat word.
			if got := count(t, db, `SELECT count(*) FROM message_parts WHERE stat = 'DELIVRD'`); got != n*c.parts {
				t.Errorf("%d parts hold their DELIVRD receipt, want %d", got, n*c.parts)
			}
			if got := count(t, db, `SELECT count(*) FROM receipts WHERE message_id IS NULL`); got != 0 {
				t.Errorf("%d receipts left unmatched", got)
			}

			// MO is stored before the SMSC's DeliverMO returns (it waits for our response).
			if err := smsc.DeliverMO(ctx, "231881234567", "384", "STOCK ORS 20"); err != nil {
				t.Fatal(err)
			}
			if got := count(t, db, `SELECT count(*) FROM inbound_messages WHERE body = 'STOCK ORS 20' AND from_msisdn = '231881234567'`); got != 1 {
				t.Errorf("%d inbound stored, want 1", got)
			}
		})
	}
}

// sendOne is a dispatcher's path for one message: enqueue, send, record the outcome.
func sendOne(ctx context.Context, s *outbox.Store, p *smpp.Pool, to, text string) error {
	m, err := s.Enqueue(ctx, outbox.NewMessage{To: mhero.MSISDN(to), Body: text, Priority: outbox.PriorityNormal})
	if err != nil {
		return err
	}
	res, err := p.Send(ctx, &smpp.Message{ID: strconv.FormatInt(m.ID, 10), To: m.To, Text: m.Body, RequestReceipt: true})
	if err != nil {
		return fmt.Errorf("send %d: %w", m.ID, err)
	}
	return s.RecordSubmitted(ctx, m.ID, res.MNO, res.MessageIDs, res.Segments)
}
