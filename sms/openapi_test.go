package sms_test

import (
	"strings"
	"testing"

	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/api/apitest"
	"github.com/mhero-health/mhero/sms"
)

// TestOpenAPIDocumentsTheSMSRoutes keeps the OpenAPI document true for this package's
// routes (cmd/mhero checks the whole router the same way once everything is wired).
func TestOpenAPIDocumentsTheSMSRoutes(t *testing.T) {
	t.Parallel()
	srv := api.New(api.Options{})
	(&sms.Store{}).Routes(srv, nil)
	routes, missing, extra, err := apitest.RouteDrift(srv.Root, func(path string) bool {
		return strings.HasPrefix(path, "/api/v1/surveys") || strings.HasPrefix(path, "/api/v1/schedules")
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 || len(extra) > 0 || routes != 11 {
		t.Errorf("OpenAPI out of step with the %d SMS routes:\n  not documented: %v\n  documented, not routed: %v", routes, missing, extra)
	}
}
