package registry_test

import (
	"context"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
)

// smallCountry builds LR > {bomi > d1, nimba > d2} with a facility in each district and
// four workers, and returns the store.
func smallCountry(t *testing.T) *registry.Store {
	t.Helper()
	s := registrytest.NewStore(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []registry.LocationInput{{Code: "LR", Name: "Liberia"}, {Code: "bomi", Name: "Bomi", Parent: "LR"},
		{Code: "nimba", Name: "Nimba", Parent: "LR"}, {Code: "d1", Name: "Klay", Parent: "bomi"}, {Code: "d2", Name: "Sanniquellie", Parent: "nimba"}} {
		_, err := s.CreateLocation(ctx, l)
		must(err)
	}
	_, err := s.CreateFacility(ctx, registry.FacilityInput{Code: "F1", Name: "Klay HC", Location: "d1"})
	must(err)
	_, err = s.CreateFacility(ctx, registry.FacilityInput{Code: "F2", Name: "Ganta HC", Location: "d2"})
	must(err)
	for _, c := range []string{"chw", "nurse"} {
		_, err := s.UpsertCode(ctx, "cadres", registry.Code{Code: c})
		must(err)
	}
	for _, c := range []string{"ebola-ipc", "epi"} {
		_, err := s.UpsertCode(ctx, "skills", registry.Code{Code: c})
		must(err)
	}
	no := false
	yes := true
	for _, w := range []registry.WorkerInput{
		{Name: "A", MSISDN: "0886000001", Cadre: "chw", Facility: "F1", Skills: []string{"ebola-ipc"}},
		{Name: "B", MSISDN: "0886000002", Cadre: "nurse", Facility: "F1", Language: "fr"},
		{Name: "C", MSISDN: "0776000003", Cadre: "chw", Facility: "F2", Skills: []string{"epi", "ebola-ipc"}},
		{Name: "D", MSISDN: "0776000004", Cadre: "chw", Facility: "F2", Active: &no},
		{Name: "E", MSISDN: "0776000005", Cadre: "chw", Facility: "F2", OptedOut: &yes},
	} {
		_, err := s.CreateWorker(ctx, w)
		must(err)
	}
	return s
}

func names(ws []*mhero.Worker) string {
	out := ""
	for _, w := range ws {
		out += w.Name
	}
	return out
}

func TestTargetSelectsByEveryDimension(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		target registry.Target
		want   string
	}{
		{"everyone reachable", registry.Target{}, "ABC"},
		{"browse includes inactive and opted out", registry.Target{IncludeInactive: true}, "ABCDE"},
		{"subtree by code", registry.Target{Locations: []string{"bomi"}}, "AB"},
		{"country subtree", registry.Target{Locations: []string{"LR"}}, "ABC"},
		{"cadre", registry.Target{Cadres: []string{"chw"}}, "AC"},
		{"cadres are alternatives", registry.Target{Cadres: []string{"chw", "nurse"}}, "ABC"},
		{"skills any of", registry.Target{Skills: []string{"epi"}}, "C"},
		{"fields combine", registry.Target{Cadres: []string{"chw"}, Skills: []string{"ebola-ipc"}, Locations: []string{"nimba"}}, "C"},
		{"language", registry.Target{Languages: []string{"FR"}}, "B"},
		{"facility or location", registry.Target{Facilities: []string{"F2"}, Locations: []string{"d1"}}, "ABC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListWorkers(ctx, tt.target, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if names(got) != tt.want {
				t.Errorf("ListWorkers(%+v) = %s, want %s", tt.target, names(got), tt.want)
			}
		})
	}
	_, err := s.ListWorkers(ctx, registry.Target{Cadres: []string{"wizard"}, Locations: []string{"atlantis"}}, 0, 10)
	if d := mhero.ErrorDetails(err); mhero.ErrorCode(err) != mhero.EVALIDATION || len(d) != 2 {
		t.Errorf("unknown names: err = %v details %v, want both reported", err, d)
	}
}

func TestPreviewCountsByCadreAndCounty(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	p, err := s.PreviewTarget(context.Background(), registry.Target{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 3 || len(p.Sample) != 2 {
		t.Fatalf("preview = count %d sample %d, want 3 and 2", p.Count, len(p.Sample))
	}
	byCadre := map[string]int{}
	for _, c := range p.ByCadre {
		byCadre[c.Code] = c.Count
	}
	byCounty := map[string]int{}
	for _, c := range p.ByLocation {
		byCounty[c.Code] = c.Count
	}
	if byCadre["chw"] != 2 || byCadre["nurse"] != 1 || byCounty["bomi"] != 2 || byCounty["nimba"] != 1 {
		t.Errorf("by cadre %v by county %v", byCadre, byCounty)
	}
}

func TestMovingAFacilityMovesItsWorkersTargeting(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	ctx := context.Background()
	if _, err := s.UpdateFacility(ctx, "F1", registry.FacilityInput{Code: "F1", Name: "Klay HC", Location: "d2"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListWorkers(ctx, registry.Target{Locations: []string{"nimba"}}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "ABC" {
		t.Errorf("nimba after moving F1 there = %s, want ABC", names(got))
	}
}

func TestScopedPrincipalIsFencedIn(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	bomi, err := s.FindLocation(context.Background(), "bomi")
	if err != nil {
		t.Fatal(err)
	}
	ctx := mhero.NewContextWithPrincipal(context.Background(), &mhero.Principal{Name: "bomi", Role: mhero.RoleAdmin, Scope: bomi})
	got, err := s.ListWorkers(ctx, registry.Target{}, 0, 100)
	if err != nil || names(got) != "AB" {
		t.Errorf("scoped ListWorkers = %s, %v; want AB", names(got), err)
	}
	if _, err := s.ListWorkers(ctx, registry.Target{Locations: []string{"nimba"}}, 0, 100); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("scoped target outside scope: err = %v, want forbidden", err)
	}
	if _, err := s.CreateWorker(ctx, registry.WorkerInput{Name: "X", MSISDN: "0886000009", Facility: "F2"}); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("scoped create outside scope: err = %v, want forbidden", err)
	}
	if _, err := s.CreateLocation(ctx, registry.LocationInput{Code: "root2", Name: "Elsewhere"}); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("scoped key creating a root: err = %v, want forbidden", err)
	}
	if _, err := s.UpdateLocation(ctx, "bomi", registry.LocationInput{Code: "bomi", Name: "Bomi", Parent: "nimba"}); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("scoped key moving its own root: err = %v, want forbidden", err)
	}
	if _, err := s.UpdateLocation(ctx, "bomi", registry.LocationInput{Code: "bomi", Name: "Bomi"}); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("scoped key detaching its own root to the top: err = %v, want forbidden", err)
	}
	if _, err := s.UpdateLocation(ctx, "bomi", registry.LocationInput{Code: "bomi", Name: "Bomi County", Parent: "LR"}); err != nil {
		t.Errorf("scoped key renaming its own root in place: %v", err)
	}
	if _, err := s.FindWorkerByMSISDN(ctx, "231776000003"); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("scoped lookup of a nimba worker: err = %v, want forbidden", err)
	}
}

func TestAPIKeysStoreOnlyAHashAndRevokeAtOnce(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	ctx := context.Background()
	key, k, err := s.CreateAPIKey(ctx, "ops", mhero.RoleSender, "nimba")
	if err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := s.DB().QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE key_hash::text LIKE '%' || $1 || '%' OR key_prefix = $2`, key, key).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Error("the clear key is stored")
	}
	p, err := s.Authenticate(ctx, key)
	if err != nil || p.Role != mhero.RoleSender || p.Scope == nil || p.Scope.Code != "nimba" || p.KeyID != k.ID {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	if _, _, err := s.CreateAPIKey(ctx, "x", "root", ""); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("unknown role: err = %v", err)
	}
	if err := s.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, key); mhero.ErrorCode(err) != mhero.EUNAUTHORIZED {
		t.Errorf("revoked key: err = %v, want unauthorized", err)
	}
}

// TestPreviewSummaryAgreesWithTheWorkers checks the worker_counts summary (kept by
// triggers) against a count of the workers themselves, after every kind of change.
func TestPreviewSummaryAgreesWithTheWorkers(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	ctx := context.Background()
	targets := []registry.Target{
		{}, {Cadres: []string{"chw"}}, {Locations: []string{"bomi"}}, {Locations: []string{"LR"}},
		{Skills: []string{"ebola-ipc"}}, {Skills: []string{"epi", "ebola-ipc"}, Cadres: []string{"chw"}},
		{Languages: []string{"fr"}}, {Locations: []string{"nimba"}, Languages: []string{"en"}},
	}
	check := func(step string) {
		t.Helper()
		for _, tg := range targets {
			p, err := s.PreviewTarget(ctx, tg, 0)
			if err != nil {
				t.Fatal(err)
			}
			ws, err := s.ListWorkers(ctx, tg, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if p.Count != len(ws) {
				t.Errorf("%s: preview of %+v counts %d, the workers are %d", step, tg, p.Count, len(ws))
			}
		}
	}
	check("created")
	no, yes := false, true
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.UpdateWorker(ctx, "1", registry.WorkerInput{Name: "A", MSISDN: "0886000001", Cadre: "nurse", Facility: "F2", Skills: []string{"epi"}, Language: "fr"})
	mustDo(err)
	check("worker moved, retrained, relanguaged")
	mustDo(s.DeactivateWorker(ctx, "2"))
	check("worker deactivated")
	_, err = s.UpdateWorker(ctx, "4", registry.WorkerInput{Name: "D", MSISDN: "0776000004", Cadre: "chw", Facility: "F2", Active: &yes})
	mustDo(err)
	mustDo(s.SetOptOut(ctx, "231776000003", true))
	check("reactivated and opted out")
	_, err = s.UpdateLocation(ctx, "d2", registry.LocationInput{Code: "d2", Name: "Sanniquellie", Parent: "bomi"})
	mustDo(err)
	check("district moved to another county")
	_, err = s.UpdateFacility(ctx, "F2", registry.FacilityInput{Code: "F2", Name: "Ganta HC", Location: "nimba"})
	mustDo(err)
	_, err = s.UpdateWorker(ctx, "5", registry.WorkerInput{Name: "E", MSISDN: "0776000005", Facility: "F1", OptedOut: &no})
	mustDo(err)
	check("facility moved, opted back in")
}
