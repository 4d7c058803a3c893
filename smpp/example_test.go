package smpp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/mhero-health/mhero/smpp"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// simulatorConfig points an MNO account at an in-process SMSC.
func simulatorConfig(s *smpptest.Server) smpp.Config {
	host, port, _ := net.SplitHostPort(s.Addr())
	p, _ := strconv.Atoi(port)
	return smpp.Config{
		Name: "lonestar", Host: host, Port: p, SystemID: "mhero", Password: "secret",
		Binds: 2, Window: 10, SourceAddr: "384", Prefixes: []string{"+23188"},
	}
}

func ExamplePool_Send() {
	smsc := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Password: "secret"})
	defer smsc.Close()

	pool, err := smpp.NewPool([]smpp.Config{simulatorConfig(smsc)}, smpp.Handlers{}, nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	pool.Start(ctx)
	defer pool.Stop(ctx)

	res, err := pool.Send(ctx, &smpp.Message{
		To:   "231881234567",
		Text: "Reminder: send this month's stock report by Friday. Reply STOCK <item> <quantity>.",
	})
	switch {
	case errors.Is(err, smpp.ErrOutcomeUnknown):
		fmt.Println("maybe sent: decide whether to resend")
	case smpp.IsTemporary(err):
		fmt.Println("not sent: retry later")
	case err != nil:
		fmt.Println("failed:", err)
	default:
		fmt.Println(res.MNO, res.Segments, "segment(s),", len(res.MessageIDs), "SMSC id(s)")
	}

	_, err = pool.Send(ctx, &smpp.Message{To: "254712345678", Text: "hello"})
	fmt.Println(errors.Is(err, smpp.ErrUnroutable))
	// Output:
	// lonestar 1 segment(s), 1 SMSC id(s)
	// true
}

func ExampleHandlers() {
	smsc := smpptest.NewServer(smpptest.Config{SystemID: "mhero", Password: "secret"})
	defer smsc.Close()

	got := make(chan smpp.MO, 1)
	h := smpp.Handlers{
		// The SMSC gets its deliver_sm_resp only after this returns nil: store first.
		MO: smpp.MOHandlerFunc(func(ctx context.Context, m smpp.MO) error {
			got <- m
			return nil
		}),
	}
	pool, _ := smpp.NewPool([]smpp.Config{simulatorConfig(smsc)}, h, nil, nil)
	ctx := context.Background()
	pool.Start(ctx)
	defer pool.Stop(ctx)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pool.WaitBound(wctx)

	smsc.DeliverMO(ctx, "231881234567", "384", "STOCK ORS 20")
	m := <-got
	fmt.Println(m.MNO, m.From.E164(), m.Text)
	// Output: lonestar +231881234567 STOCK ORS 20
}
