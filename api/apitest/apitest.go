// Package apitest checks, for tests, that the OpenAPI document and a router agree.
package apitest

import (
	"slices"
	"strings"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero/api"
	"go.yaml.in/yaml/v3"
)

// RouteDrift compares the endpoints registered on root with the paths of the OpenAPI
// document, both narrowed to the paths ours accepts (nil: all), as "get /api/v1/x".
// It returns how many endpoints the router has, those it has that the document lacks,
// and those documented but not routed, sorted.
func RouteDrift(root *mux.Router, ours func(path string) bool) (routes int, missing, extra []string, err error) {
	if ours == nil {
		ours = func(string) bool { return true }
	}
	routed := map[string]bool{}
	err = root.Walk(func(r *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tpl, err1 := r.GetPathTemplate()
		methods, err2 := r.GetMethods()
		if err1 != nil || err2 != nil || !ours(tpl) {
			return nil // a prefix, not an endpoint, or not ours
		}
		for _, m := range methods {
			routed[strings.ToLower(m)+" "+tpl] = true
		}
		return nil
	})
	if err != nil {
		return 0, nil, nil, err
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI(), &doc); err != nil {
		return 0, nil, nil, err
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" && ours(path) {
				documented[m+" "+path] = true
			}
		}
	}
	for r := range routed {
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !routed[d] {
			extra = append(extra, d)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return len(routed), missing, extra, nil
}
