package sms_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/sms"
)

func scheduleInput(target string) sms.ScheduleInput {
	return sms.ScheduleInput{Name: "Weekly stock", Spec: "weekly MON 08:00", Text: "{first_name}, your weekly stock report is due today.",
		Target: json.RawMessage(target)}
}

// TestSchedulerFiresASlotOnce runs two schedulers (two instances) on one database at the
// same slot, then replays the slot as an instance that died after creating its broadcast
// would: one broadcast, one run, no message twice.
func TestSchedulerFiresASlotOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 200, nil)
	ctx := context.Background()
	sc, err := e.sms.CreateSchedule(ctx, scheduleInput(`{"cadres": ["chw", "nurse"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Spec != "0 8 * * 1" || sc.NextRunAt.Weekday() != time.Monday || !sc.NextRunAt.After(e.clock.Now()) {
		t.Fatalf("schedule %+v", sc)
	}
	slot := sc.NextRunAt
	e.clock.Set(slot.Add(time.Minute))

	// A second instance: its own store and scheduler on the same database.
	other, err := sms.NewStore(e.db, sms.Deps{Outbox: e.out, Audience: e.reg, OptOuts: e.reg}, sms.Config{Now: e.clock.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	scheds := []*sms.Scheduler{e.sms.NewScheduler(sms.SchedulerConfig{}), other.NewScheduler(sms.SchedulerConfig{})}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 2 {
		for _, s := range scheds {
			wg.Go(func() { errs <- s.Tick(ctx) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := e.count(t, `SELECT count(*) FROM workers w JOIN cadres c ON c.id = w.cadre_id
		WHERE c.code IN ('chw', 'nurse') AND w.active AND NOT w.opted_out`)
	check := func(when string) {
		t.Helper()
		if n := e.count(t, `SELECT count(*) FROM broadcasts WHERE idempotency_key = $1`,
			"schedule:"+itoa(sc.ID)+":"+slot.UTC().Format(time.RFC3339)); n != 1 {
			t.Errorf("%s: %d broadcasts for the slot, want 1", when, n)
		}
		if n := e.count(t, `SELECT count(*) FROM messages`); n != want {
			t.Errorf("%s: %d messages, want %d (one per worker)", when, n, want)
		}
		if n := e.count(t, `SELECT count(*) FROM schedule_runs WHERE schedule_id = $1 AND outcome = 'sent' AND recipients = $2`, sc.ID, want); n != 1 {
			t.Errorf("%s: %d runs recorded", when, n)
		}
	}
	check("two schedulers")
	got, err := e.sms.FindSchedule(ctx, sc.ID)
	if err != nil || !got.NextRunAt.Equal(slot.AddDate(0, 0, 7)) || !got.LastRunAt.Equal(slot) || len(got.Runs) != 1 {
		t.Fatalf("after firing: %v %+v", err, got)
	}

	// An instance that created the slot's broadcast and died before moving the schedule on:
	// the slot fires again and gets the same broadcast.
	if _, err := e.db.Exec(ctx, `DELETE FROM schedule_runs`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `UPDATE schedules SET next_run_at = $1`, slot); err != nil {
		t.Fatal(err)
	}
	if err := scheds[1].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	check("replayed slot")

	// Paused, a schedule does not fire; resumed, it fires from the next slot on, not the
	// ones it was paused over.
	if _, err := e.sms.PauseSchedule(ctx, sc.ID, true); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(slot.AddDate(0, 0, 7).Add(time.Minute))
	if err := scheds[0].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	resumed, err := e.sms.PauseSchedule(ctx, sc.ID, false)
	if err != nil || resumed.Paused || !resumed.NextRunAt.Equal(slot.AddDate(0, 0, 14)) {
		t.Fatalf("resumed: %v %+v", err, resumed)
	}
	if err := scheds[0].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM broadcasts`); n != 1 {
		t.Errorf("%d broadcasts after a paused week, want 1", n)
	}

	// Deleted, it is gone for good; its runs stay.
	if err := e.sms.DeleteSchedule(ctx, sc.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sms.FindSchedule(ctx, sc.ID); mhero.ErrorCode(err) != mhero.ENOTFOUND {
		t.Errorf("deleted schedule: %v", err)
	}
	e.clock.Set(slot.AddDate(0, 0, 14).Add(time.Minute))
	if err := scheds[1].Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `SELECT count(*) FROM broadcasts`); n != 1 {
		t.Errorf("a deleted schedule fired: %d broadcasts", n)
	}
}

// TestSchedulerMissedSlots: after a long stop the latest slot fires if it is within the
// catch-up window, and the slots before it are recorded as missed, not sent in a burst;
// a slot later than the window is only recorded.
func TestSchedulerMissedSlots(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 150, nil)
	ctx := context.Background()
	in := scheduleInput(`{"locations": ["LR"]}`)
	in.Spec = "0 * * * *" // hourly
	sc, err := e.sms.CreateSchedule(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	sched := e.sms.NewScheduler(sms.SchedulerConfig{CatchUp: 30 * time.Minute})
	e.clock.Set(sc.NextRunAt.Add(5*time.Hour + 10*time.Minute)) // six slots passed, the latest 10 minutes ago
	if err := sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := e.sms.FindSchedule(ctx, sc.ID)
	if len(got.Runs) != 2 || got.Runs[0].Outcome != "sent" || !got.Runs[0].Slot.Equal(sc.NextRunAt.Add(5*time.Hour)) ||
		got.Runs[1].Outcome != "missed" || !got.NextRunAt.Equal(sc.NextRunAt.Add(6*time.Hour)) {
		t.Errorf("after a stop: runs %+v, next %v", got.Runs, got.NextRunAt)
	}
	e.clock.Set(got.NextRunAt.Add(45 * time.Minute)) // later than the catch-up window
	if err := sched.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ = e.sms.FindSchedule(ctx, sc.ID)
	if got.Runs[0].Outcome != "missed" || e.count(t, `SELECT count(*) FROM broadcasts`) != 1 {
		t.Errorf("a slot past the window: %+v", got.Runs[0])
	}
}

// TestReportingReminder goes only to the workers whose facility has not reported in the
// period.
func TestReportingReminder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 200, nil)
	ctx := context.Background()
	in := scheduleInput(`{"locations": ["LR"]}`)
	in.Reporting = &sms.Reporting{Period: "week"}
	sc, err := e.sms.CreateSchedule(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	// The slot: a minute ago, so a stock report can be counted in its week.
	slot := e.clock.Now().Add(-time.Minute).Truncate(time.Minute)
	if _, err := e.db.Exec(ctx, `UPDATE schedules SET next_run_at = $1 WHERE id = $2`, slot, sc.ID); err != nil {
		t.Fatal(err)
	}
	wid, _ := e.worker(t, "en")
	var facility int64
	if err := e.db.QueryRow(ctx, `SELECT facility_id FROM workers WHERE id = $1`, int64(wid)).Scan(&facility); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rep.SubmitStockReport(ctx, reports.StockInput{WorkerID: wid, Commodity: "ors", Quantity: 12, ReportedAt: slot}); err != nil {
		t.Fatal(err)
	}
	if err := e.sms.NewScheduler(sms.SchedulerConfig{}).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	reachable := e.count(t, `SELECT count(*) FROM workers WHERE active AND NOT opted_out`)
	reported := e.count(t, `SELECT count(*) FROM workers WHERE active AND NOT opted_out AND facility_id = $1`, facility)
	if reported == 0 {
		t.Fatal("the reporting facility has no reachable worker")
	}
	if n := e.count(t, `SELECT count(*) FROM messages`); n != reachable-reported {
		t.Errorf("%d reminders, want %d (everyone but the %d workers of the facility that reported)", n, reachable-reported, reported)
	}
	if n := e.count(t, `SELECT count(*) FROM messages m JOIN workers w ON w.id = m.worker_id WHERE w.facility_id = $1`, facility); n != 0 {
		t.Errorf("%d reminders to the facility that reported", n)
	}
}

// TestSchedulesOverHTTP drives the schedule routes with API keys: a sender creates,
// pauses, resumes and deletes; a reader reads and may do nothing else.
func TestSchedulesOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 100, nil)
	ctx := context.Background()
	srv := api.New(api.Options{Auth: e.reg})
	e.sms.Routes(srv, nil)
	sender, _, err := e.reg.CreateAPIKey(ctx, "ops", mhero.RoleSender, "")
	if err != nil {
		t.Fatal(err)
	}
	reader, _, err := e.reg.CreateAPIKey(ctx, "viewer", mhero.RoleReader, "")
	if err != nil {
		t.Fatal(err)
	}
	do := func(key, method, path, body string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	body := `{"name": "Weekly stock", "spec": "weekly MON 08:00", "text": "{first_name}: stock report due.",
		"target": {"cadres": ["chw"]}, "reporting": {"period": "week"}}`
	if w := do(reader, http.MethodPost, "/api/v1/schedules", body); w.Code != http.StatusForbidden {
		t.Errorf("reader creates: %d", w.Code)
	}
	for _, bad := range []string{
		`{"spec": "weekly FUNDAY 08:00", "text": "x", "target": {"cadres": ["chw"]}}`,
		`{"spec": "daily 08:00", "text": "Hi {nickname}", "target": {"cadres": ["chw"]}}`,
		`{"spec": "daily 08:00", "text": "x", "target": {"cadres": ["astronaut"]}}`,
		`{"spec": "daily 08:00", "text": "x", "target": {"cadres": ["chw"]}, "reporting": {"period": "year"}}`,
	} {
		if w := do(sender, http.MethodPost, "/api/v1/schedules", bad); w.Code != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s", bad, w.Code, w.Body)
		}
	}
	w := do(sender, http.MethodPost, "/api/v1/schedules", body)
	var sc sms.Schedule
	if err := json.Unmarshal(w.Body.Bytes(), &sc); err != nil || w.Code != http.StatusCreated || sc.ID == 0 || sc.Reporting == nil || sc.CreatedBy != "ops" {
		t.Fatalf("create: %d %s", w.Code, w.Body)
	}
	path := "/api/v1/schedules/" + itoa(sc.ID)
	if w := do(reader, http.MethodGet, path, ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"spec":"0 8 * * 1"`) {
		t.Errorf("get: %d %s", w.Code, w.Body)
	}
	if w := do(reader, http.MethodGet, "/api/v1/schedules", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"items":[{`) {
		t.Errorf("list: %d %s", w.Code, w.Body)
	}
	if w := do(reader, http.MethodPost, path+"/pause", ""); w.Code != http.StatusForbidden {
		t.Errorf("reader pauses: %d", w.Code)
	}
	if w := do(sender, http.MethodPost, path+"/pause", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"paused":true`) {
		t.Errorf("pause: %d %s", w.Code, w.Body)
	}
	if w := do(sender, http.MethodPost, path+"/resume", ""); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"paused":false`) {
		t.Errorf("resume: %d %s", w.Code, w.Body)
	}
	if w := do(sender, http.MethodDelete, path, ""); w.Code != http.StatusNoContent {
		t.Errorf("delete: %d %s", w.Code, w.Body)
	}
	if w := do(reader, http.MethodGet, path, ""); w.Code != http.StatusNotFound {
		t.Errorf("get after delete: %d", w.Code)
	}
}
