package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
)

type adminKey struct{}

func (adminKey) Authenticate(context.Context, string) (*mhero.Principal, error) {
	return &mhero.Principal{Name: "test", Role: mhero.RoleAdmin}, nil
}

// TestImportOverTheLimitIs413 checks that an import body over the limit answers 413 and
// writes nothing, rather than a generic failure.
func TestImportOverTheLimitIs413(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	s.MaxImportBody = 64
	srv := api.New(api.Options{Auth: adminKey{}})
	s.Routes(srv)
	body := "code,name,parent_code\n" + strings.Repeat("LR,Liberia,\n", 20)
	req := httptest.NewRequest("POST", "/api/v1/imports", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer x")
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), `"too_large"`) {
		t.Errorf("oversized import = %d %s, want 413 too_large", w.Code, w.Body)
	}
	if locs, err := s.ListLocations(context.Background(), registry.LocationFilter{}); err != nil || len(locs) != 0 {
		t.Errorf("an oversized import wrote %d locations (%v)", len(locs), err)
	}
}
