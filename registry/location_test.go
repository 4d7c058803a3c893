package registry_test

import (
	"context"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
)

func TestLocationTreeMoveRewritesSubtree(t *testing.T) {
	t.Parallel()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	mustLoc := func(code, parent string) *mhero.Location {
		t.Helper()
		l, err := s.CreateLocation(ctx, registry.LocationInput{Code: code, Name: code, Parent: parent})
		if err != nil {
			t.Fatalf("CreateLocation(%s): %v", code, err)
		}
		return l
	}
	lr := mustLoc("LR", "")
	bomi := mustLoc("bomi", "LR")
	nimba := mustLoc("nimba", "LR")
	d1 := mustLoc("d1", "bomi")
	d1a := mustLoc("d1a", "d1")
	if d1a.Level != 3 || d1a.Path == "" {
		t.Fatalf("d1a = %+v, want level 3", d1a)
	}
	if _, err := s.UpdateLocation(ctx, "d1", registry.LocationInput{Code: "d1", Name: "District 1", Parent: "nimba"}); err != nil {
		t.Fatalf("move d1: %v", err)
	}
	got, err := s.FindLocation(ctx, "d1a")
	if err != nil {
		t.Fatal(err)
	}
	want := registryPath(lr.ID, nimba.ID, d1.ID, d1a.ID)
	if got.Path != want || got.Level != 3 {
		t.Errorf("after move d1a path = %q level %d, want %q level 3", got.Path, got.Level, want)
	}
	under, err := s.ListLocations(ctx, registry.LocationFilter{Under: "bomi"})
	if err != nil {
		t.Fatal(err)
	}
	if len(under) != 1 || under[0].ID != bomi.ID {
		t.Errorf("bomi subtree after move = %v, want only bomi", under)
	}
	if _, err := s.UpdateLocation(ctx, "nimba", registry.LocationInput{Code: "nimba", Name: "Nimba", Parent: "d1a"}); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("moving nimba under its own descendant: err = %v, want validation", err)
	}
	if err := s.DeleteLocation(ctx, "nimba"); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("delete nimba with children: err = %v, want conflict", err)
	}
}
