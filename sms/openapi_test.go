package sms_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/sms"
	"go.yaml.in/yaml/v3"
)

// TestOpenAPIDocumentsTheSMSRoutes keeps the OpenAPI document true for this package's
// routes (cmd/mhero checks the whole router the same way once everything is wired).
func TestOpenAPIDocumentsTheSMSRoutes(t *testing.T) {
	t.Parallel()
	srv := api.New(api.Options{})
	(&sms.Store{}).Routes(srv, nil)
	ours := func(path string) bool {
		return strings.HasPrefix(path, "/api/v1/surveys") || strings.HasPrefix(path, "/api/v1/schedules")
	}
	routes := map[string]bool{}
	_ = srv.Root.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err1 := r.GetPathTemplate()
		methods, err2 := r.GetMethods()
		if err1 == nil && err2 == nil && ours(tpl) {
			for _, m := range methods {
				routes[strings.ToLower(m)+" "+tpl] = true
			}
		}
		return nil
	})
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" && ours(path) {
				documented[m+" "+path] = true
			}
		}
	}
	var missing, extra []string
	for r := range routes {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !routes[d] {
			extra = append(extra, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 || len(routes) != 11 {
		t.Errorf("OpenAPI out of step with the %d SMS routes:\n  not documented: %v\n  documented, not routed: %v", len(routes), missing, extra)
	}
}
