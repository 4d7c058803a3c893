package reports_test

import (
	"context"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

func TestSubmitValidation(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	a := c.workers["A"] // a chw at F1
	tests := []struct {
		name  string
		in    reports.ValidationInput
		state reports.ValidationState
		code  string // the known facility the answer names
	}{
		{"confirms both", reports.ValidationInput{WorkerID: a}, reports.Confirmed, ""},
		{"types the registry's own facility", reports.ValidationInput{WorkerID: a, Facility: "F1", Cadre: "CHW"}, reports.Confirmed, "F1"},
		{"moved to another facility", reports.ValidationInput{WorkerID: a, Facility: "F3"}, reports.Corrected, "F3"},
		{"another cadre", reports.ValidationInput{WorkerID: a, Cadre: "nurse"}, reports.Corrected, ""},
		{"a facility name typed", reports.ValidationInput{WorkerID: a, Facility: "klay clinic"}, reports.PendingReview, ""},
		{"an unknown cadre", reports.ValidationInput{WorkerID: a, Facility: "F3", Cadre: "vaccinator"}, reports.PendingReview, "F3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := c.rep.SubmitValidation(ctx, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if v.State != tt.state || v.StatedFacilityCode != tt.code || v.RegistryFacility != "F1" || v.RegistryCadre != "chw" ||
				v.Ref[:2] != "V-" || v.StatedFacility != tt.in.Facility {
				t.Errorf("validation = %+v, want state %s naming %q", v, tt.state, tt.code)
			}
		})
	}
	if _, err := c.rep.SubmitValidation(ctx, reports.ValidationInput{WorkerID: 987654}); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("validation by an unknown worker = %v, want EVALIDATION", err)
	}
	first, _ := c.rep.SubmitValidation(ctx, reports.ValidationInput{WorkerID: c.workers["B"], IdempotencyKey: "k"})
	again, err := c.rep.SubmitValidation(ctx, reports.ValidationInput{WorkerID: c.workers["B"], Cadre: "chw", IdempotencyKey: "k"})
	if err != nil || again.Ref != first.Ref || again.State != reports.Confirmed {
		t.Errorf("retry = %+v, %v; want the first answer %+v", again, err, first)
	}
	all := collect(t, c.rep.Validations(ctx, reports.ValidationFilter{Filter: reports.Filter{Facility: "F1"}}))
	if len(all) != len(tests)+1 {
		t.Errorf("F1's checks = %d, want every one kept (%d)", len(all), len(tests)+1)
	}
	pending := collect(t, c.rep.Validations(ctx, reports.ValidationFilter{State: reports.PendingReview}))
	if len(pending) != 2 || pending[0].StatedFacility != "klay clinic" {
		t.Errorf("pending review = %+v, want the two answers a person must read", pending)
	}
}

func TestValidationCounts(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	submit := func(worker string, in reports.ValidationInput, at time.Time) {
		t.Helper()
		c.clock.t = at
		in.WorkerID = c.workers[worker]
		if _, err := c.rep.SubmitValidation(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	submit("A", reports.ValidationInput{Facility: "nowhere"}, day(2026, 11, 2))
	submit("A", reports.ValidationInput{}, day(2026, 11, 9)) // A's latest: confirmed
	submit("B", reports.ValidationInput{Cadre: "chw"}, day(2026, 11, 3))
	submit("C", reports.ValidationInput{Facility: "??"}, day(2026, 10, 20)) // October
	submit("D", reports.ValidationInput{}, day(2026, 11, 4))
	c.clock.t = now

	rows := collect(t, c.rep.ValidationCounts(ctx, reports.Filter{Period: period(t, "202611")}))
	if len(rows) != 2 {
		t.Fatalf("counts = %+v, want Bomi and Nimba", rows)
	}
	bomi, nimba := rows[0], rows[1]
	if bomi.LocationCode != "bomi" || bomi.Workers != 3 || bomi.Confirmed != 1 || bomi.Corrected != 1 || bomi.PendingReview != 0 || bomi.NotValidated != 1 {
		t.Errorf("Bomi = %+v, want 3 workers: 1 confirmed, 1 corrected, 1 not validated", bomi)
	}
	if nimba.Workers != 1 || nimba.Confirmed != 1 {
		t.Errorf("Nimba = %+v, want its one worker confirmed", nimba)
	}
	ever := collect(t, c.rep.ValidationCounts(ctx, reports.Filter{Location: "d1"}))
	if len(ever) != 1 || ever[0].LocationCode != "d1" || ever[0].PendingReview != 1 || ever[0].NotValidated != 0 {
		t.Errorf("d1 at any time = %+v, want C's October answer pending", ever)
	}
}
