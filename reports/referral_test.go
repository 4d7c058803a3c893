package reports_test

import (
	"context"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/reports"
)

func TestReferralLifecycle(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	r, err := c.rep.SubmitReferral(ctx, reports.ReferralInput{WorkerID: c.workers["A"], To: "F2", Reason: "Danger-Sign",
		Urgency: reports.Urgent, AgeBand: "1-4", Sex: "f", IdempotencyKey: "sess-1*4"})
	if err != nil {
		t.Fatal(err)
	}
	// The caller SMSes the receiving facility's workers: it needs the facility.
	if r.To.Code != "F2" || r.To.Name != "Tubmanburg Hospital" || r.From.Code != "F1" || r.State != reports.Sent ||
		r.Reason != "danger-sign" || r.AgeBand != "1-4" || r.Sex != "F" || len(r.Ref) != 7 || r.Ref[:2] != "R-" || !r.DueAt.Equal(now.Add(24*time.Hour)) {
		t.Errorf("referral = %+v", r)
	}
	again, err := c.rep.SubmitReferral(ctx, reports.ReferralInput{WorkerID: c.workers["A"], To: "F2", Reason: "danger-sign",
		Urgency: reports.Urgent, IdempotencyKey: "sess-1*4"})
	if err != nil || again.ID != r.ID {
		t.Errorf("a retried submission = %+v, %v; want the first referral", again, err)
	}

	// A worker at another facility cannot receive it.
	if _, err := c.rep.UpdateReferralState(ctx, r.Ref, reports.Received, c.workers["D"]); mhero.ErrorCode(err) != mhero.EFORBIDDEN {
		t.Errorf("received by a worker elsewhere = %v, want EFORBIDDEN", err)
	}
	c.clock.t = now.Add(3 * time.Hour)
	got, err := c.rep.UpdateReferralState(ctx, r.Ref, reports.Received, c.workers["C"])
	if err != nil || got.State != reports.Received || got.ReceivedAt == nil || !got.ReceivedAt.Equal(c.clock.t) {
		t.Fatalf("received = %+v, %v", got, err)
	}
	// The receiving worker's phone retries: nothing changes, nothing is added.
	if got, err := c.rep.UpdateReferralState(ctx, r.Ref, reports.Received, c.workers["C"]); err != nil || len(got.History) != 2 {
		t.Errorf("received twice = %+v, %v; want the same two-step history", got, err)
	}
	c.clock.t = now.Add(5 * time.Hour)
	if got, err = c.rep.UpdateReferralState(ctx, r.Ref, reports.Completed, 0); err != nil || got.State != reports.Completed {
		t.Fatalf("completed = %+v, %v", got, err)
	}
	if _, err := c.rep.UpdateReferralState(ctx, r.Ref, reports.Received, c.workers["C"]); mhero.ErrorCode(err) != mhero.ECONFLICT {
		t.Errorf("back to received = %v, want ECONFLICT", err)
	}
	found, err := c.rep.FindReferral(ctx, r.Ref)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range found.History {
		steps = append(steps, string(e.State))
	}
	if found.AgeBand != "1-4" || found.Sex != "F" || found.Reason != "danger-sign" {
		t.Errorf("found = %+v, want what was submitted", found)
	}
	if len(found.History) != 3 || found.History[0].WorkerID != c.workers["A"] || found.History[1].WorkerID != c.workers["C"] ||
		found.History[2].WorkerID != 0 || !found.History[2].At.Equal(now.Add(5*time.Hour)) {
		t.Errorf("history = %v %+v, want sent by A, received by C, completed by the ministry", steps, found.History)
	}
	if _, err := c.rep.UpdateReferralState(ctx, "R-ZZZZZ", reports.Received, 0); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("update of a number never given = %v, want ENOTFOUND", err)
	}
	if _, err := c.rep.UpdateReferralState(ctx, r.Ref, reports.Sent, 0); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("update to sent = %v, want EVALIDATION", err)
	}
}

func TestSubmitReferralRefusesBadReferrals(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	a := c.workers["A"]
	tests := []struct {
		name   string
		in     reports.ReferralInput
		fields []string
	}{
		{"receiving facility not found", reports.ReferralInput{WorkerID: a, To: "F9", Reason: "fever", Urgency: reports.Routine}, []string{"to"}},
		{"no receiving facility", reports.ReferralInput{WorkerID: a, Reason: "fever", Urgency: reports.Routine}, []string{"to"}},
		{"free text reason", reports.ReferralInput{WorkerID: a, To: "F2", Reason: "Patient Mary K. bleeding", Urgency: reports.Routine}, []string{"reason"}},
		{"a name for an age band", reports.ReferralInput{WorkerID: a, To: "F2", Reason: "fever", Urgency: reports.Routine, AgeBand: "Mary"}, []string{"age_band"}},
		{"unknown sex", reports.ReferralInput{WorkerID: a, To: "F2", Reason: "fever", Urgency: reports.Routine, Sex: "x"}, []string{"sex"}},
		{"unknown urgency", reports.ReferralInput{WorkerID: a, To: "F2", Reason: "fever", Urgency: "asap"}, []string{"urgency"}},
		{"unknown referring facility", reports.ReferralInput{WorkerID: a, From: "F9", To: "F2", Reason: "fever", Urgency: reports.Routine}, []string{"from"}},
		{"unknown worker", reports.ReferralInput{WorkerID: 424242, To: "F2", Reason: "fever", Urgency: reports.Routine}, []string{"worker_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.rep.SubmitReferral(context.Background(), tt.in)
			if mhero.ErrorCode(err) != mhero.EVALIDATION {
				t.Fatalf("SubmitReferral = %v, want EVALIDATION", err)
			}
			for _, f := range tt.fields {
				if !details(err)[f] {
					t.Errorf("details %v lack %q", mhero.ErrorDetails(err), f)
				}
			}
		})
	}
}

func TestReferralViews(t *testing.T) {
	t.Parallel()
	c := newCountry(t)
	ctx := context.Background()
	submit := func(worker, to, reason string, u reports.Urgency, at time.Time) *reports.Referral {
		t.Helper()
		c.clock.t = at
		r, err := c.rep.SubmitReferral(ctx, reports.ReferralInput{WorkerID: c.workers[worker], To: to, Reason: reason, Urgency: u})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	emergency := submit("A", "F2", "danger-sign", reports.Emergency, now.Add(-7*time.Hour)) // due an hour ago
	submit("A", "F2", "danger-sign", reports.Emergency, now.Add(-time.Hour))                // not yet due
	received := submit("A", "F3", "malaria", reports.Urgent, now.Add(-48*time.Hour))
	routine := submit("D", "F1", "malaria", reports.Routine, now.Add(-8*24*time.Hour)) // due a day ago
	submit("D", "F3", "malaria", reports.Routine, day(2026, 10, 1))                    // October
	c.clock.t = now.Add(-47 * time.Hour)
	if _, err := c.rep.UpdateReferralState(ctx, received.Ref, reports.Received, c.workers["D"]); err != nil {
		t.Fatal(err)
	}
	c.clock.t = now

	nov := period(t, "202611")
	counts := collect(t, c.rep.ReferralCounts(ctx, reports.ReferralFilter{Filter: reports.Filter{Period: nov}}))
	got := map[string][2]int{}
	for _, r := range counts {
		got[r.LocationCode+" "+r.Reason+" "+string(r.Urgency)+" "+string(r.State)] = [2]int{r.Count, r.Overdue}
	}
	want := map[string][2]int{
		"bomi danger-sign emergency sent": {2, 1},
		"bomi malaria urgent received":    {1, 0},
		"nimba malaria routine sent":      {1, 1},
	}
	if len(got) != len(want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (count, overdue)", k, got[k], v)
		}
	}
	// Placed at the receiving facility instead: Nimba received one, Bomi three.
	byReceiver := collect(t, c.rep.ReferralCounts(ctx, reports.ReferralFilter{Filter: reports.Filter{Period: nov, Level: level(0)}, ByReceiver: true}))
	total := 0
	for _, r := range byReceiver {
		total += r.Count
	}
	if total != 4 {
		t.Errorf("November referrals by receiver = %+v, want 4 in all", byReceiver)
	}

	if all := collect(t, c.rep.OverdueReferrals(ctx, reports.ReferralFilter{})); len(all) != 3 {
		t.Errorf("overdue at any time = %d referrals, want 3 (October's too)", len(all))
	}
	overdue := collect(t, c.rep.OverdueReferrals(ctx, reports.ReferralFilter{Filter: reports.Filter{Period: nov}}))
	if len(overdue) != 2 || overdue[0].Ref != routine.Ref || overdue[1].Ref != emergency.Ref {
		t.Fatalf("overdue = %+v, want the routine then the emergency referral, oldest first", overdue)
	}
	if overdue[1].OverdueHours != 1 || overdue[1].ToFacilityCode != "F2" || overdue[0].OverdueHours != 24 {
		t.Errorf("overdue = %+v, want 24 h and 1 h late", overdue)
	}
	// A receiving facility's view: what it has yet to receive.
	toF1 := collect(t, c.rep.OverdueReferrals(ctx, reports.ReferralFilter{Filter: reports.Filter{Facility: "F1"}, ByReceiver: true}))
	if len(toF1) != 1 || toF1[0].Ref != routine.Ref {
		t.Errorf("overdue to F1 = %+v, want the routine one", toF1)
	}
	// The ministry can give emergencies longer, per deployment.
	c.rep.ReferralDue = map[reports.Urgency]time.Duration{reports.Emergency: 12 * time.Hour}
	if later := collect(t, c.rep.OverdueReferrals(ctx, reports.ReferralFilter{Filter: reports.Filter{Period: nov}})); len(later) != 1 {
		t.Errorf("with 12 h for emergencies, overdue = %+v, want only the routine one", later)
	}
}
