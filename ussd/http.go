package ussd

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
)

// Gateway is one aggregator's dialect. Decode turns its request into the engine's model
// (new, continue, end, timeout; the input as it carries it); Encode writes the Reply the
// way it expects. Adding a gateway is a file with its type, a line in gateways below,
// and recorded requests in testdata/<name>/.
type Gateway interface {
	Name() string // its path, /ussd/<name>, and its key under ussd.gateways
	Decode(r *http.Request) (Request, error)
	Encode(w http.ResponseWriter, rep Reply) error
}

// gateways is every dialect the server speaks.
var gateways = []Gateway{africasTalking{}, jsonOp{}}

// GatewayNames lists the gateways the configuration may name.
func GatewayNames() []string {
	names := make([]string, len(gateways))
	for i, g := range gateways {
		names[i] = g.Name()
	}
	return names
}

// GatewayConfig authenticates one gateway and sets its screen size. A gateway needs an
// allow-list, a secret, or both (then both must pass): none is refused rather than
// served open.
type GatewayConfig struct {
	Allow []netip.Prefix // client addresses allowed to call
	// Secret is sent by the gateway in an X-Mhero-Secret header, as a bearer token, or,
	// for aggregators that only let you set a callback URL, as ?secret= in it.
	Secret      string
	ScreenLimit int // 0: the engine's
}

// HTTPConfig configures a Handler.
type HTTPConfig struct {
	Gateways map[string]GatewayConfig // by name; only the gateways named here are served
	// Budget bounds one hop; keep it below the gateways' own timeouts (often a few
	// seconds). Default 4 s.
	Budget time.Duration
	Log    *slog.Logger
}

// DefaultBudget is the default time one hop may take.
const DefaultBudget = 4 * time.Second

// maxBody bounds a gateway request; real ones are a few hundred bytes.
const maxBody = 16 << 10

// Handler serves the USSD gateways over HTTP.
type Handler struct {
	engine *Engine
	served []served
	budget time.Duration
	log    *slog.Logger
}

type served struct {
	g   Gateway
	cfg GatewayConfig
}

// NewHandler checks the gateway configuration: every name must be a known gateway, with
// an allow-list or a secret.
func NewHandler(e *Engine, c HTTPConfig) (*Handler, error) {
	h := &Handler{engine: e, budget: c.Budget, log: c.Log}
	if h.budget <= 0 {
		h.budget = DefaultBudget
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("comp", "ussd")
	var errs []error
	names := make([]string, 0, len(c.Gateways))
	for name := range c.Gateways {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cfg := c.Gateways[name]
		var g Gateway
		for _, x := range gateways {
			if x.Name() == name {
				g = x
			}
		}
		switch {
		case g == nil:
			errs = append(errs, fmt.Errorf("ussd gateway %q: unknown (want one of %s)", name, strings.Join(GatewayNames(), ", ")))
		case len(cfg.Allow) == 0 && cfg.Secret == "":
			errs = append(errs, fmt.Errorf("ussd gateway %q: needs an allow-list or a secret", name))
		case cfg.ScreenLimit != 0 && cfg.ScreenLimit < minScreenLimit:
			errs = append(errs, fmt.Errorf("ussd gateway %q: screen limit %d is below %d", name, cfg.ScreenLimit, minScreenLimit))
		default:
			h.served = append(h.served, served{g: g, cfg: cfg})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return h, nil
}

// Register adds POST /ussd/<gateway> for every configured gateway.
func (h *Handler) Register(r *mux.Router) {
	for _, s := range h.served {
		r.Handle("/ussd/"+s.g.Name(), h.serve(s)).Methods(http.MethodPost)
	}
}

func (h *Handler) serve(s served) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.allowed(r) {
			h.log.LogAttrs(r.Context(), slog.LevelWarn, "ussd request refused", slog.String("gateway", s.g.Name()),
				slog.String("status", "forbidden"))
			http.Error(w, "Forbidden.", http.StatusForbidden)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		req, err := s.g.Decode(r)
		if err != nil {
			// A gateway ends the session on a 4xx; the body says why for whoever reads
			// its logs.
			h.log.LogAttrs(r.Context(), slog.LevelWarn, "ussd request unreadable", slog.String("gateway", s.g.Name()), slog.Any("error", err))
			http.Error(w, mhero.ErrorMessage(err), http.StatusBadRequest)
			return
		}
		if req.Limit == 0 {
			req.Limit = s.cfg.ScreenLimit
		}
		ctx, cancel := context.WithTimeout(r.Context(), h.budget)
		defer cancel()
		rep := h.engine.Handle(ctx, req)
		if err := s.g.Encode(w, rep); err != nil {
			h.log.LogAttrs(r.Context(), slog.LevelWarn, "ussd answer not written", slog.String("gateway", s.g.Name()), slog.Any("error", err))
		}
	})
}

func (s served) allowed(r *http.Request) bool {
	if len(s.cfg.Allow) > 0 {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return false
		}
		addr, ok := ap.Addr().Unmap(), false
		for _, p := range s.cfg.Allow {
			if p.Contains(addr) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if s.cfg.Secret != "" {
		got := r.Header.Get("X-Mhero-Secret")
		if got == "" {
			got, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		}
		if got == "" {
			got = r.URL.Query().Get("secret")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Secret)) != 1 {
			return false
		}
	}
	return true
}

// parseMSISDN reads a gateway's phone number: international, with or without '+'. A
// national number (leading 0) is refused rather than looked up as something it is not:
// reading it needs the country, which the gateway configuration should fix instead.
func parseMSISDN(s, field string) (mhero.MSISDN, error) {
	var m mhero.MSISDN
	if err := m.UnmarshalText([]byte(s)); err != nil || m == "" || m[0] == '0' {
		return "", mhero.Errorf(mhero.EINVALID, "%s must be an international number such as +231886123456.", field)
	}
	return m, nil
}
