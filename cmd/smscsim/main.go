// Command smscsim is an SMSC simulator for development, demos and load tests: the
// in-process SMSC of package smpp/smpptest on a fixed port, with an HTTP control endpoint.
//
//	go run ./cmd/smscsim -receipts -receipt-mix "DELIVRD=0.9,UNDELIV=0.1" -throttle-tps 200
//
// HTTP control (on -http):
//
//	POST /mo    from, to, text                    inject an MO SMS (form or JSON)
//	POST /ussd  from, to, text, op, session       inject a USSD deliver_sm (op 1 = PSSR indication;
//	                                              session = its_session_info as a number 0-65535)
//	GET  /stats                                   counters as JSON
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mhero-health/mhero/smpp/smpptest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "smscsim:", err)
		os.Exit(2)
	}
}

// options are the command line.
type options struct {
	addr, httpAddr, logLevel string
	cfg                      smpptest.Config
	receiptMix               string
}

func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("smscsim", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:2775", "SMPP listen address")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:2776", "HTTP control address (\"\" = none)")
	fs.StringVar(&o.cfg.SystemID, "system-id", "", "accepted system_id (\"\" = any)")
	fs.StringVar(&o.cfg.Password, "password", "", "accepted password (\"\" = any)")
	fs.StringVar(&o.cfg.MessageIDFormat, "id-format", "decimal", "message ids in submit_sm_resp: decimal or hex")
	fs.StringVar(&o.cfg.ReceiptIDFormat, "receipt-id-format", "", "message ids in receipts: decimal or hex (\"\" = as -id-format)")
	fs.BoolVar(&o.cfg.Receipts, "receipts", false, "send delivery receipts when registered_delivery asks")
	fs.DurationVar(&o.cfg.ReceiptDelay, "receipt-delay", 0, "delay from submit_sm to its receipt")
	fs.StringVar(&o.receiptMix, "receipt-mix", "", `receipt stat words by weight, e.g. "DELIVRD=0.9,UNDELIV=0.1" (default all DELIVRD)`)
	fs.BoolVar(&o.cfg.ReceiptTLVs, "receipt-tlvs", false, "receipts also carry receipted_message_id and message_state TLVs")
	fs.BoolVar(&o.cfg.ReceiptBeforeResp, "receipt-before-resp", false, "send each receipt before its submit_sm_resp")
	fs.IntVar(&o.cfg.ThrottleTPS, "throttle-tps", 0, "answer ESME_RTHROTTLED above this many submit_sm per second (0 = unlimited)")
	fs.IntVar(&o.cfg.MaxWindow, "max-window", 0, "answer ESME_RMSGQFUL above this many unanswered submit_sm per bind (0 = unlimited)")
	fs.DurationVar(&o.cfg.Latency, "latency", 0, "delay before each submit_sm_resp")
	fs.IntVar(&o.cfg.DropEvery, "drop-every", 0, "close a connection every N PDUs received (0 = never)")
	fs.BoolVar(&o.cfg.RejectBinds, "reject-binds", false, "answer every bind with ESME_RBINDFAIL")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error (debug logs every PDU)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var errs []error
	for _, f := range []struct{ name, v string }{{"-id-format", o.cfg.MessageIDFormat}, {"-receipt-id-format", o.cfg.ReceiptIDFormat}} {
		if f.v != "" && f.v != "decimal" && f.v != "hex" {
			errs = append(errs, fmt.Errorf("%s %q: want decimal or hex", f.name, f.v))
		}
	}
	if o.receiptMix != "" {
		m, err := smpptest.ParseReceiptMix(o.receiptMix)
		if err != nil {
			errs = append(errs, err)
		}
		o.cfg.ReceiptStates = m
	}
	o.cfg.SubmitHistory = -1 // a long load run must not grow without bound
	return o, errors.Join(errs...)
}

// run starts the simulator and blocks until ctx is done. ready, if not nil, is called
// with the SMPP and HTTP addresses once both listen (tests pass ":0").
func run(ctx context.Context, args []string, logw io.Writer, ready func(smppAddr, httpAddr string)) error {
	o, err := parseFlags(args, logw)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: level})).With("comp", "smscsim")
	o.cfg.Logger = log
	srv, err := smpptest.NewServerAt(o.addr, o.cfg)
	if err != nil {
		return fmt.Errorf("listen smpp: %w", err)
	}
	defer srv.Close()
	log.Info("smscsim started", "addr", srv.Addr(), "system_id", o.cfg.SystemID, "receipts", o.cfg.Receipts,
		"receipt_delay", o.cfg.ReceiptDelay, "throttle_tps", o.cfg.ThrottleTPS, "latency", o.cfg.Latency,
		"drop_every", o.cfg.DropEvery, "reject_binds", o.cfg.RejectBinds, "id_format", o.cfg.MessageIDFormat)

	httpAddr := ""
	var hs *http.Server
	httpErr := make(chan error, 1)
	if o.httpAddr != "" {
		ln, err := net.Listen("tcp", o.httpAddr)
		if err != nil {
			return fmt.Errorf("listen http: %w", err)
		}
		httpAddr = ln.Addr().String()
		hs = &http.Server{Handler: newHandler(srv, log), ReadHeaderTimeout: 5 * time.Second}
		go func() { httpErr <- hs.Serve(ln) }()
		log.Info("control endpoint", "addr", httpAddr)
	}
	if ready != nil {
		ready(srv.Addr(), httpAddr)
	}

	report(ctx, srv, log)

	log.Info("smscsim stopping")
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("http shutdown", "error", err)
		}
		if err := <-httpErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
	}
	return nil
}

// report logs the counts of the last second, once a second when any is not zero, until
// ctx is done.
func report(ctx context.Context, srv *smpptest.Server, log *slog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last smpptest.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := srv.Stats()
		d := smpptest.Stats{
			Submits: st.Submits - last.Submits, Throttled: st.Throttled - last.Throttled,
			ReceiptsSent: st.ReceiptsSent - last.ReceiptsSent, MOSent: st.MOSent - last.MOSent,
		}
		last = st
		if d.Submits+d.Throttled+d.ReceiptsSent+d.MOSent == 0 {
			continue
		}
		log.Info("per second", "submits", d.Submits, "throttled", d.Throttled, "receipts", d.ReceiptsSent,
			"mo", d.MOSent, "binds", st.Conns)
	}
}

// injectTimeout bounds how long an HTTP injection waits for the deliver_sm_resp.
const injectTimeout = 10 * time.Second

func newHandler(srv *smpptest.Server, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(srv.Stats())
	})
	mux.HandleFunc("POST /mo", func(w http.ResponseWriter, r *http.Request) {
		in, err := readInjection(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), injectTimeout)
		defer cancel()
		writeResult(w, log, "mo", srv.DeliverMO(ctx, in.From, in.To, in.Text))
	})
	mux.HandleFunc("POST /ussd", func(w http.ResponseWriter, r *http.Request) {
		in, err := readInjection(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		op, session, err := in.ussd()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), injectTimeout)
		defer cancel()
		writeResult(w, log, "ussd", srv.DeliverUSSD(ctx, in.From, in.To, in.Text, op, session))
	})
	return mux
}

// injection is the body of POST /mo and /ussd, as a form or as JSON.
type injection struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Text    string `json:"text"`
	Op      string `json:"op"`      // ussd_service_op, default 1 (PSSR indication)
	Session string `json:"session"` // its_session_info as a number 0-65535, "" = none
}

func readInjection(r *http.Request) (injection, error) {
	var in injection
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10)).Decode(&in); err != nil {
			return in, fmt.Errorf("bad JSON: %w", err)
		}
	} else {
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return in, fmt.Errorf("bad form: %w", err)
		}
		in = injection{From: r.PostFormValue("from"), To: r.PostFormValue("to"), Text: r.PostFormValue("text"),
			Op: r.PostFormValue("op"), Session: r.PostFormValue("session")}
	}
	if in.From == "" || in.To == "" {
		return in, errors.New("from and to are required")
	}
	return in, nil
}

func (in injection) ussd() (op byte, session []byte, err error) {
	op = 1
	if in.Op != "" {
		n, err := strconv.ParseUint(in.Op, 10, 8)
		if err != nil {
			return 0, nil, fmt.Errorf("op %q: want 0-255", in.Op)
		}
		op = byte(n)
	}
	if in.Session != "" {
		n, err := strconv.ParseUint(in.Session, 10, 16)
		if err != nil {
			return 0, nil, fmt.Errorf("session %q: want 0-65535", in.Session)
		}
		session = []byte{byte(n >> 8), byte(n)}
	}
	return op, session, nil
}

func writeResult(w http.ResponseWriter, log *slog.Logger, kind string, err error) {
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"ok":true}`)
	case errors.Is(err, smpptest.ErrNoReceiver):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case errors.Is(err, context.DeadlineExceeded):
		http.Error(w, "no deliver_sm_resp in time", http.StatusGatewayTimeout)
	default:
		log.Warn("inject", "kind", kind, "error", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
}
