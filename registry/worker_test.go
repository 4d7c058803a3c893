package registry_test

import (
	"context"
	"reflect"
	"strconv"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
)

// The USSD dial's one-query lookup answers what the two lookups it replaces answer:
// the worker on either of their phones, their facility (none for a worker without one),
// ENOTFOUND for strangers, and nothing outside the caller's scope.
func TestFindWorkerAndFacilityAnswersAsTheTwoLookups(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	ctx := context.Background()
	if _, err := s.CreateWorker(ctx, registry.WorkerInput{Name: "F", MSISDN: "0776000006", AltMSISDN: "0886000009", Cadre: "chw"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []mhero.MSISDN{"231886000001", "231886000002", "231776000003", "231776000004", "231776000005",
		"231776000006", "231886000009"} {
		want, err := s.FindWorkerByMSISDN(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		var wantF *mhero.Facility
		if want.FacilityID != 0 {
			if wantF, err = s.FindFacility(ctx, strconv.FormatInt(int64(want.FacilityID), 10)); err != nil {
				t.Fatal(err)
			}
		}
		w, f, err := s.FindWorkerAndFacility(ctx, m)
		if err != nil || !reflect.DeepEqual(w, want) || !reflect.DeepEqual(f, wantF) {
			t.Errorf("FindWorkerAndFacility(%s) = %+v, %+v, %v; want %+v, %+v", m, w, f, err, want, wantF)
		}
	}
	if _, _, err := s.FindWorkerAndFacility(ctx, "231776999999"); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("a stranger: err = %v, want not found", err)
	}
	bomi, err := s.FindLocation(ctx, "bomi")
	if err != nil {
		t.Fatal(err)
	}
	scoped := mhero.NewContextWithPrincipal(ctx, &mhero.Principal{Name: "bomi", Role: mhero.RoleAdmin, Scope: bomi})
	if w, f, err := s.FindWorkerAndFacility(scoped, "231886000001"); err != nil || w.Name != "A" || f == nil || f.Code != "F1" {
		t.Errorf("scoped lookup of a bomi worker = %+v, %+v, %v", w, f, err)
	}
	if _, _, err := s.FindWorkerAndFacility(scoped, "231776000003"); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("scoped lookup of a nimba worker: err = %v, want forbidden", err)
	}
}
