package reports_test

import (
	"strings"
	"testing"

	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/api/apitest"
	"github.com/mhero-health/mhero/reports"
)

// TestOpenAPIDocumentsTheReportRoutes keeps the OpenAPI document true for this package's
// routes (cmd/mhero checks the whole router the same way once everything is wired).
func TestOpenAPIDocumentsTheReportRoutes(t *testing.T) {
	t.Parallel()
	srv := api.New(api.Options{})
	(&reports.Store{}).Routes(srv)
	routes, missing, extra, err := apitest.RouteDrift(srv.Root, func(path string) bool {
		return strings.HasPrefix(path, "/api/v1/reports/") && path != "/api/v1/reports/costs" // costs: the outbox's
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 || len(extra) > 0 || routes < 12 {
		t.Errorf("OpenAPI out of step with the %d report routes:\n  not documented: %v\n  documented, not routed: %v", routes, missing, extra)
	}
}
