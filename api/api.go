// Package api is the HTTP edge shared by every REST resource: routing on gorilla/mux,
// bearer API-key authentication and roles, the error envelope, strict JSON decoding,
// cursor pagination with CSV, health and readiness, Prometheus metrics and the OpenAPI
// document. It has no home among the domain packages because it spans all of them:
// registry, reports and broadcasts each register their own routes on it.
package api

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the API's OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

// Authenticator turns a bearer key into a principal (registry.Store implements it).
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (*mhero.Principal, error)
}

// Check is one readiness dependency. It returns a short detail (e.g. per-bind states) and
// an error when the dependency is not usable.
type Check struct {
	Name string
	Func func(ctx context.Context) (detail any, err error)
}

// Options configures a Server.
type Options struct {
	Auth     Authenticator
	Log      *slog.Logger
	Metrics  prometheus.Registerer // nil: a private registry
	Gatherer prometheus.Gatherer   // what /metrics serves; nil: the private registry
	Ready    []Check
}

// Server owns the router. Resources add their routes to API (under /api/v1, behind
// authentication) or to Root (e.g. gateway callbacks with their own auth).
type Server struct {
	Root *mux.Router
	API  *mux.Router
	Log  *slog.Logger

	auth     Authenticator
	ready    []Check
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New builds the server with its common routes: /healthz, /readyz, /metrics and
// /api/v1/openapi.yaml.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		reg := prometheus.NewRegistry()
		o.Metrics, o.Gatherer = reg, reg
	}
	if o.Gatherer == nil {
		o.Gatherer = prometheus.DefaultGatherer
	}
	s := &Server{Root: mux.NewRouter(), Log: o.Log.With("comp", "http"), auth: o.Auth, ready: o.Ready}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mhero_http_requests_total", Help: "HTTP requests by route template, method and status code.",
	}, []string{"route", "method", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mhero_http_request_duration_seconds", Help: "HTTP request latency by route template and method.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method"})
	o.Metrics.MustRegister(s.requests, s.latency)

	s.Root.Use(s.recoverer, s.observe)
	s.Root.NotFoundHandler = s.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Error(w, r, s.Log, mhero.Errorf(mhero.ENOTFOUND, "No such endpoint: %s %s.", r.Method, r.URL.Path))
	}))
	s.Root.MethodNotAllowedHandler = s.observe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		JSON(w, http.StatusMethodNotAllowed, errorBody("method_not_allowed", "Method "+r.Method+" is not allowed on "+r.URL.Path+"."))
	}))
	s.Root.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		JSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}).Methods(http.MethodGet)
	s.Root.HandleFunc("/readyz", s.readyz).Methods(http.MethodGet)
	s.Root.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	s.Root.HandleFunc("/api/v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openAPI)
	}).Methods(http.MethodGet)
	s.API = s.Root.PathPrefix("/api/v1").Subrouter()
	s.API.Use(s.authenticate)
	return s
}

func errorBody(code, msg string) ErrorBody {
	var b ErrorBody
	b.Error.Code, b.Error.Message, b.Error.Details = code, msg, []mhero.ErrorDetail{}
	return b
}

// ServeHTTP makes the server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.Root.ServeHTTP(w, r) }

// Require wraps h so that only keys with at least role may call it.
func Require(role mhero.Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p := mhero.PrincipalFromContext(r.Context())
		if p == nil || !p.Role.Allows(role) {
			Error(w, r, nil, mhero.Errorf(mhero.EFORBIDDEN, "This needs a key with the %s role.", role))
			return
		}
		h(w, r)
	}
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		key, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || key == "" {
			Error(w, r, s.Log, mhero.Errorf(mhero.EUNAUTHORIZED, "Send an API key: Authorization: Bearer <key>."))
			return
		}
		p, err := s.auth.Authenticate(r.Context(), strings.TrimSpace(key))
		if err != nil {
			Error(w, r, s.Log, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(mhero.NewContextWithPrincipal(r.Context(), p)))
	})
}

// statusWriter remembers the status code for metrics and logs.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush on the real writer (CSV streaming).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe records metrics by route template (never the raw path, which would explode
// the label space) and logs one line per request without bodies.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := "unmatched"
		if cr := mux.CurrentRoute(r); cr != nil {
			if t, err := cr.GetPathTemplate(); err == nil {
				route = t
			}
		}
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		d := time.Since(start)
		s.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.code)).Inc()
		s.latency.WithLabelValues(route, r.Method).Observe(d.Seconds())
		if route != "/metrics" && route != "/healthz" {
			s.Log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("route", route),
				slog.Int("status", sw.code), slog.Duration("took", d))
		}
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Log.ErrorContext(r.Context(), "panic handling request", "method", r.Method, "path", r.URL.Path, "panic", v)
				Error(w, r, nil, mhero.Errorf(mhero.EINTERNAL, "Internal error."))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// readyz runs every check concurrently with a short deadline and answers 503 when any
// fails, with each dependency's state.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	type result struct {
		Status string `json:"status"`
		Error  string `json:"error,omitempty"`
		Detail any    `json:"detail,omitempty"`
	}
	results := make(map[string]result, len(s.ready))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range s.ready {
		wg.Go(func() {
			detail, err := c.Func(ctx)
			res := result{Status: "ok", Detail: detail}
			if err != nil {
				res.Status, res.Error = "fail", err.Error()
			}
			mu.Lock()
			results[c.Name] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	status, code := "ok", http.StatusOK
	for _, res := range results {
		if res.Status != "ok" {
			status, code = "fail", http.StatusServiceUnavailable
		}
	}
	JSON(w, code, map[string]any{"status": status, "checks": results})
}
