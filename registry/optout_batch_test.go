package registry_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
)

// setOptOuts calls SetOptOuts in a transaction of its own.
func setOptOuts(t *testing.T, s *registry.Store, msisdns []mhero.MSISDN, optedOut []bool) []error {
	t.Helper()
	var errs []error
	err := pgx.BeginFunc(context.Background(), s.DB(), func(tx pgx.Tx) error {
		var err error
		errs, err = s.SetOptOuts(context.Background(), tx, msisdns, optedOut)
		return err
	})
	if err != nil {
		t.Fatalf("SetOptOuts: %v", err)
	}
	if len(errs) != len(msisdns) {
		t.Fatalf("%d outcomes for %d changes", len(errs), len(msisdns))
	}
	return errs
}

// optOutAudit lists the opt-out audit rows as "action worker-id", oldest first.
func optOutAudit(t *testing.T, s *registry.Store) []string {
	t.Helper()
	rows, err := s.DB().Query(context.Background(), `SELECT action || ' ' || entity_id FROM audit_log
		WHERE action IN ('opt_out', 'opt_in') ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func workerByName(t *testing.T, s *registry.Store, name string) *mhero.Worker {
	t.Helper()
	var id int64
	if err := s.DB().QueryRow(context.Background(), `SELECT id FROM workers WHERE name = $1`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	w, err := s.FindWorker(context.Background(), strconv.FormatInt(id, 10))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestSetOptOuts: a batch of STOP and START is each one as SetOptOut records it: the
// worker found by either phone, an audit row per change, an unknown number reported,
// and a worker's later change winning over an earlier one.
func TestSetOptOuts(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	ctx := context.Background()
	f, err := s.CreateWorker(ctx, registry.WorkerInput{Name: "F", MSISDN: "0776000006", AltMSISDN: "0886000009", Cadre: "chw", Facility: "F2"})
	if err != nil {
		t.Fatal(err)
	}
	a, b, e := workerByName(t, s, "A"), workerByName(t, s, "B"), workerByName(t, s, "E")
	errs := setOptOuts(t, s, []mhero.MSISDN{a.MSISDN, "231886999999", f.AltMSISDN, b.MSISDN, e.MSISDN, b.MSISDN},
		[]bool{true, true, true, true, false, false})
	for i, err := range errs {
		if i == 1 {
			if mhero.ErrorCode(err) != mhero.ENOTFOUND {
				t.Errorf("an unknown number = %v, want ENOTFOUND", err)
			}
		} else if err != nil {
			t.Errorf("change %d = %v", i, err)
		}
	}
	for _, x := range []struct {
		name string
		want bool
	}{{"A", true}, {"F", true}, {"B", false}, {"E", false}, {"C", false}} {
		if w := workerByName(t, s, x.name); w.OptedOut != x.want {
			t.Errorf("%s opted out = %v, want %v", x.name, w.OptedOut, x.want)
		}
	}
	id := func(w *mhero.Worker) string { return strconv.FormatInt(int64(w.ID), 10) }
	want := []string{"opt_out " + id(a), "opt_out " + id(f), "opt_out " + id(b), "opt_in " + id(e), "opt_in " + id(b)}
	if got := optOutAudit(t, s); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] ||
		got[3] != want[3] || got[4] != want[4] {
		t.Errorf("audit = %v, want %v", got, want)
	}
	// The single call and the batch write the same: compare with SetOptOut's row.
	if err := s.SetOptOut(ctx, a.MSISDN, false); err != nil {
		t.Fatal(err)
	}
	var single, batch string
	if err := s.DB().QueryRow(ctx, `SELECT actor || ' ' || entity || ' ' || detail::text FROM audit_log WHERE action = 'opt_in' ORDER BY id DESC LIMIT 1`).Scan(&single); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().QueryRow(ctx, `SELECT actor || ' ' || entity || ' ' || detail::text FROM audit_log WHERE action = 'opt_in' ORDER BY id LIMIT 1`).Scan(&batch); err != nil {
		t.Fatal(err)
	}
	if single != batch {
		t.Errorf("batch audit row %q, SetOptOut's %q", batch, single)
	}
}

// TestSetOptOutsOneRefused: a change PostgreSQL refuses is refused alone; the others of
// the batch are kept and the caller's transaction goes on.
func TestSetOptOutsOneRefused(t *testing.T) {
	t.Parallel()
	s := smallCountry(t)
	ctx := context.Background()
	if _, err := s.DB().Exec(ctx, `CREATE FUNCTION refuse_c() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.name = 'C' THEN RAISE EXCEPTION 'C is frozen'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_c BEFORE UPDATE ON workers FOR EACH ROW EXECUTE FUNCTION refuse_c()`); err != nil {
		t.Fatal(err)
	}
	a, c := workerByName(t, s, "A"), workerByName(t, s, "C")
	errs := setOptOuts(t, s, []mhero.MSISDN{c.MSISDN, a.MSISDN}, []bool{true, true})
	if errs[0] == nil || mhero.ErrorCode(errs[0]) == mhero.ENOTFOUND || errs[1] != nil {
		t.Errorf("outcomes = %v, want C refused and A done", errs)
	}
	if !workerByName(t, s, "A").OptedOut || workerByName(t, s, "C").OptedOut {
		t.Errorf("want A opted out and C not")
	}
	if got := optOutAudit(t, s); len(got) != 1 || got[0] != "opt_out "+strconv.FormatInt(int64(a.ID), 10) {
		t.Errorf("audit = %v, want A's only", got)
	}
}
