package reports

import (
	"strings"
	"testing"
	"time"
)

// Import summaries as DHIS2 versions write them.
const (
	// 2.36 and later: a WebMessage around the summary; conflicts with codes and indexes.
	summary236 = `{"httpStatus":"Conflict","httpStatusCode":409,"status":"WARNING","message":"One more conflicts encountered, please check import summary.",
		"response":{"responseType":"ImportSummary","status":"WARNING","importOptions":{"idSchemes":{},"dryRun":false},
		"description":"Import process completed successfully","importCount":{"imported":2,"updated":1,"ignored":1,"deleted":0},
		"conflicts":[{"object":"Rp268JB6Ne4","objects":{"orgUnit":"Rp268JB6Ne4"},"value":"Org unit not found or not accessible","errorCode":"E7617","property":"orgUnit","indexes":[3]}],
		"rejectedIndexes":[3],"dataSetComplete":"false"}}`
	// Before 2.36: the bare summary; a conflict is an object and a message.
	summaryOld = `{"responseType":"ImportSummary","status":"SUCCESS","importOptions":{},"description":"Import process completed successfully",
		"importCount":{"imported":"5","updated":0,"ignored":0,"deleted":0},"conflicts":[],"dataSetComplete":"false"}`
)

func TestReadImportSummary(t *testing.T) {
	for _, tt := range []struct {
		name, in  string
		status    string
		count     ImportCount
		conflicts []Conflict
		err       string
	}{
		{"2.36+", summary236, DHIS2StatusWarning, ImportCount{Imported: 2, Updated: 1, Ignored: 1},
			[]Conflict{{Object: "Rp268JB6Ne4", Value: "Org unit not found or not accessible", ErrorCode: "E7617", Property: "orgUnit", Indexes: []int{3}}}, ""},
		{"older", summaryOld, DHIS2StatusSuccess, ImportCount{Imported: 5}, nil, ""},
		{"older with a conflict and no status", `{"importCount":{"imported":1,"ignored":1},"conflicts":[{"object":"x","value":7}]}`,
			DHIS2StatusWarning, ImportCount{Imported: 1, Ignored: 1}, []Conflict{{Object: "x", Value: "7"}}, ""},
		{"error", `{"status":"ERROR","response":{"status":"ERROR","description":"Data set not found","importCount":{"ignored":3}}}`,
			DHIS2StatusError, ImportCount{Ignored: 3}, nil, ""},
		{"unknown status is not a success", `{"status":"PARTIAL","importCount":{}}`, DHIS2StatusWarning, ImportCount{}, nil, ""},
		{"only a message", `{"httpStatus":"Conflict","status":"ERROR","message":"Period is not valid"}`, "", ImportCount{}, nil, "Period is not valid"},
		{"HTML login page", `<html><body>Login</body></html>`, "", ImportCount{}, nil, "not JSON: <html><body>Login</body></html>"},
		{"negative count", `{"importCount":{"imported":-1}}`, "", ImportCount{}, nil, "not an import summary: count -1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := readImportSummary(strings.NewReader(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("readImportSummary = %+v, %v; want an error with %q", s, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != tt.status || s.ImportCount != tt.count || len(s.Conflicts) != len(tt.conflicts) || s.ConflictsTotal != len(tt.conflicts) {
				t.Fatalf("readImportSummary = %+v", s)
			}
			for i, c := range tt.conflicts {
				got := s.Conflicts[i]
				if got.Object != c.Object || got.Value != c.Value || got.ErrorCode != c.ErrorCode || got.Property != c.Property ||
					len(got.Indexes) != len(c.Indexes) {
					t.Errorf("conflict %d = %+v, want %+v", i, got, c)
				}
			}
		})
	}
}

// FuzzImportSummary feeds arbitrary answers to the import-summary reader: an error or a
// summary, never a panic, and a summary always has a known status, counts of 0 or more,
// and no more conflicts kept than counted or than MaxConflicts.
func FuzzImportSummary(f *testing.F) {
	f.Add(summary236)                                                                                    // 2.36+ WebMessage, a conflict with code and index
	f.Add(summaryOld)                                                                                    // pre-2.36, a count as a string
	f.Add(`{"status":"OK","response":{"importCount":null},"importCount":{"imported":1}}`)                // a null inner count: the outer one
	f.Add(`{"importCount":{"imported":1e3}}`)                                                            // a count as a float
	f.Add(`{"importCount":{},"conflicts":[{"object":{"a":1},"value":null,"indexes":[-1,99999999999]}]}`) // odd conflict shapes
	f.Add(`{"importCount":{}} {"importCount":{}}`)                                                       // two documents
	f.Add(``)                                                                                            // nothing
	f.Fuzz(func(t *testing.T, in string) {
		s, err := readImportSummary(strings.NewReader(in))
		if err != nil {
			return
		}
		switch s.Status {
		case DHIS2StatusSuccess, DHIS2StatusWarning, DHIS2StatusError:
		default:
			t.Errorf("status %q", s.Status)
		}
		if s.Imported < 0 || s.Updated < 0 || s.Ignored < 0 || s.Deleted < 0 {
			t.Errorf("negative count %+v", s.ImportCount)
		}
		if len(s.Conflicts) > MaxConflicts || len(s.Conflicts) > s.ConflictsTotal {
			t.Errorf("%d conflicts kept of %d", len(s.Conflicts), s.ConflictsTotal)
		}
		if s.ConflictsTotal > 0 && s.Status == DHIS2StatusSuccess {
			t.Error("a success with conflicts")
		}
		for _, c := range s.Conflicts {
			if len(c.Indexes) > maxConflictIndex || len(c.Value) > maxConflictTextSz+len("…") {
				t.Errorf("conflict kept whole: %d indexes, %d bytes", len(c.Indexes), len(c.Value))
			}
		}
	})
}

func TestPushDue(t *testing.T) {
	loc := time.FixedZone("GMT", 0)
	at := func(d, h, m int) time.Time { return time.Date(2026, 11, d, h, m, 0, 0, loc) }
	every := &DHIS2Config{PushEvery: 24 * time.Hour}
	daily := &DHIS2Config{PushAt: "02:00"}
	for _, tt := range []struct {
		name       string
		cfg        *DHIS2Config
		now, last  time.Time
		lastFailed bool
		want       bool
	}{
		{"never pushed", every, at(20, 12, 0), time.Time{}, false, true},
		{"within push_every", every, at(20, 12, 0), at(20, 1, 0), false, false},
		{"push_every passed", every, at(21, 1, 0), at(20, 1, 0), false, true},
		{"failed, retried after 15m", every, at(20, 1, 20), at(20, 1, 0), true, true},
		{"failed, not yet", every, at(20, 1, 10), at(20, 1, 0), true, false},
		{"daily: before today's slot, pushed yesterday after it", daily, at(20, 1, 0), at(19, 2, 1), false, false},
		{"daily: today's slot passed", daily, at(20, 2, 0), at(19, 2, 1), false, true},
		{"daily: done today", daily, at(20, 9, 0), at(20, 2, 0), false, false},
		{"no schedule", &DHIS2Config{}, at(20, 9, 0), at(1, 2, 0), false, false},
	} {
		if got := tt.cfg.due(tt.now, tt.last, tt.lastFailed, loc); got != tt.want {
			t.Errorf("%s: due = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestPreviousPeriod(t *testing.T) {
	for _, tt := range []struct {
		t    PeriodType
		now  time.Time
		want string
	}{
		{Month, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "202610"},
		{Month, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "202512"},
		{Week, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "2026W46"}, // a Friday of week 47
		{Week, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), "2026W47"},  // the Monday after
		{Week, time.Date(2026, 1, 6, 0, 0, 0, 0, time.UTC), "2026W1"},     // week 1 began on 29 December
	} {
		p := PreviousPeriod(tt.t, tt.now, nil)
		if p.String() != tt.want || p.End.Sub(p.Start) <= 0 || !p.End.After(p.Start) || p.Contains(tt.now) {
			t.Errorf("PreviousPeriod(%s, %v) = %s [%v, %v), want %s", tt.t, tt.now, p, p.Start, p.End, tt.want)
		}
	}
}
