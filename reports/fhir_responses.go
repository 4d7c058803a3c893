package reports

// FHIR R4 export of workers' responses, for iHRIS to keep on each worker's record, as
// mHero does.
//
// GET /api/v1/exports/fhir/responses answers a Bundle of type transaction: POSTed as it
// is to iHRIS's FHIR base, it stores every resource with PUT under a stable id
// (Communication/mhero-sms-123), so exporting the same responses again updates them
// rather than duplicating them. Each resource points at the worker's Practitioner by the
// worker's iHRIS id; responses of workers without one are left out (nothing in iHRIS to
// attach them to). The resources are the ones mHero itself writes to iHRIS:
//
//	| response                      | resource              | attached by                  |
//	|-------------------------------|-----------------------|------------------------------|
//	| an SMS from the worker        | Communication         | sender = Practitioner/{id}   |
//	| a stock report                | QuestionnaireResponse | author = source = Practitioner/{id}; subject = the facility |
//	| a "my details" check          | QuestionnaireResponse | author = source = subject = Practitioner/{id} |
//
// mHero's FHIR guide (emNutt) records messages as Communication and flow-run answers as
// QuestionnaireResponse, so iHRIS 5 already shows both on a Practitioner. The facility is
// a logical reference (identifier and name): its code is an iHRIS Location id only when
// the registry came from iHRIS, and a literal reference to a Location iHRIS lacks would
// make it refuse the whole transaction.
//
// since compares the time mhero stored each response, so a client that asks "since my
// last export" also gets late reports typed offline. The bundle is streamed from three
// queries, never held whole.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// FHIRSystem is the base of the identifier systems, code systems and questionnaires the
// export names (mHero's FHIR namespace).
const FHIRSystem = "http://mhero.org/fhir"

type fhirIdent struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

type fhirRef struct {
	Reference  string     `json:"reference,omitempty"`
	Type       string     `json:"type,omitempty"`
	Identifier *fhirIdent `json:"identifier,omitempty"`
	Display    string     `json:"display,omitempty"`
}

type fhirCoding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type fhirConcept struct {
	Coding []fhirCoding `json:"coding"`
}

type fhirText struct {
	Text string `json:"text"`
}

type fhirContent struct {
	ContentString string `json:"contentString"`
}

type fhirCommunication struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Identifier   []fhirIdent   `json:"identifier"`
	Status       string        `json:"status"`
	Category     []fhirConcept `json:"category"`
	Sent         string        `json:"sent"`
	Received     string        `json:"received"`
	Sender       fhirRef       `json:"sender"`
	Payload      []fhirContent `json:"payload"`
	Note         []fhirText    `json:"note,omitempty"`
}

type fhirQuestionnaireResponse struct {
	ResourceType  string     `json:"resourceType"`
	ID            string     `json:"id"`
	Identifier    fhirIdent  `json:"identifier"`
	Questionnaire string     `json:"questionnaire"`
	Status        string     `json:"status"`
	Subject       fhirRef    `json:"subject"`
	Authored      string     `json:"authored"`
	Author        fhirRef    `json:"author"`
	Source        fhirRef    `json:"source"`
	Item          []fhirItem `json:"item"`
}

type fhirItem struct {
	LinkID string       `json:"linkId"`
	Text   string       `json:"text"`
	Answer []fhirAnswer `json:"answer"`
}

type fhirAnswer struct {
	ValueInteger *int        `json:"valueInteger,omitempty"`
	ValueString  string      `json:"valueString,omitempty"`
	ValueCoding  *fhirCoding `json:"valueCoding,omitempty"`
}

type fhirRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type fhirEntry struct {
	Resource any         `json:"resource"`
	Request  fhirRequest `json:"request"`
}

func fhirTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func practitioner(ihrisID string) fhirRef { return fhirRef{Reference: "Practitioner/" + ihrisID} }

func intAnswer(linkID, text string, n int) fhirItem {
	return fhirItem{LinkID: linkID, Text: text, Answer: []fhirAnswer{{ValueInteger: &n}}}
}

func textAnswer(linkID, text, v string) fhirItem {
	return fhirItem{LinkID: linkID, Text: text, Answer: []fhirAnswer{{ValueString: v}}}
}

// ResponseFilter says which responses the FHIR export covers.
type ResponseFilter struct {
	Since  time.Time // stored at or after; zero for all
	Worker string    // a worker's id or iHRIS id; empty for every worker in the caller's scope
}

// responseScope is a ResponseFilter resolved: the worker and the caller's subtree.
type responseScope struct {
	since    time.Time
	worker   int64
	phones   []string
	location int64
}

func (s *Store) resolveResponses(ctx context.Context, f ResponseFilter) (*responseScope, error) {
	rs := &responseScope{since: f.Since}
	if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		rs.location = int64(p.Scope.ID)
	}
	if f.Worker == "" {
		return rs, nil
	}
	var ihris, msisdn, alt string
	var path []int64
	err := s.db.QueryRow(ctx, `SELECT id, COALESCE(ihris_id, ''), msisdn, COALESCE(alt_msisdn, ''), location_path FROM workers
		WHERE ihris_id = $1 OR ($2 > 0 AND id = $2) ORDER BY (ihris_id = $1) DESC NULLS LAST LIMIT 1`, f.Worker, refID(f.Worker)).
		Scan(&rs.worker, &ihris, &msisdn, &alt, &path)
	if err != nil {
		return nil, pgError(err, "Worker "+strconv.Quote(truncate(f.Worker, 40)))
	}
	if !inScope(ctx, path) {
		return nil, errOutOfScope("Worker")
	}
	if ihris == "" {
		return nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "This worker has no iHRIS id.",
			Details: []mhero.ErrorDetail{{Field: "worker", Message: "responses attach to a Practitioner by the worker's iHRIS id; this worker has none"}}}
	}
	rs.phones = []string{msisdn}
	if alt != "" {
		rs.phones = append(rs.phones, alt)
	}
	return rs, nil
}

// where writes the conditions every response query shares, on the worker alias w and the
// stored-at column col.
func (rs *responseScope) where(a *sqlArgs, col string) string {
	c := `w.ihris_id IS NOT NULL`
	if !rs.since.IsZero() {
		c += ` AND ` + col + ` >= ` + a.add(rs.since) + `::timestamptz`
	}
	if rs.worker != 0 {
		c += ` AND w.id = ` + a.add(rs.worker) + `::bigint`
	}
	if rs.location != 0 {
		c += ` AND w.location_path @> ARRAY[` + a.add(rs.location) + `::bigint]`
	}
	return c
}

// WriteResponses writes the FHIR transaction bundle of the filter's responses to w, one
// entry at a time. An error before anything reached w leaves w untouched.
func (s *Store) WriteResponses(ctx context.Context, w io.Writer, f ResponseFilter) error {
	_, err := s.writeResponses(ctx, w, f)
	return err
}

func (s *Store) writeResponses(ctx context.Context, w io.Writer, f ResponseFilter) (*countedBuffer, error) {
	out := newCountedBuffer(w)
	rs, err := s.resolveResponses(ctx, f)
	if err != nil {
		return out, err
	}
	out.WriteString(`{"resourceType":"Bundle","type":"transaction","timestamp":"` + fhirTime(s.now()) + `","entry":[`)
	n := 0
	emit := func(id string, res any) error {
		b, err := json.Marshal(fhirEntry{Resource: res, Request: fhirRequest{Method: http.MethodPut, URL: id}})
		if err != nil {
			return err
		}
		if n > 0 {
			out.WriteString(",\n")
		}
		n++
		_, err = out.Write(b)
		return err
	}
	for _, q := range []func(context.Context, *responseScope, func(string, any) error) error{
		s.smsResponses, s.stockResponses, s.validationResponses} {
		if err := q(ctx, rs, emit); err != nil {
			return out, err
		}
	}
	out.WriteString("]}\n")
	return out, out.Flush()
}

// each runs a query and calls row for each result.
func (s *Store) each(ctx context.Context, q string, args []any, row func(pgx.Rows) error) error {
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// smsResponses are the SMS workers sent, matched to them by phone number (primary first).
func (s *Store) smsResponses(ctx context.Context, rs *responseScope, emit func(string, any) error) error {
	var a sqlArgs
	q := `SELECT i.id, i.body, i.partial, i.received_at, i.stored_at, w.ihris_id
		FROM inbound_messages i
		CROSS JOIN LATERAL (
			(SELECT w.id, w.ihris_id, w.location_path FROM workers w WHERE w.msisdn = i.from_msisdn)
			UNION ALL (SELECT w.id, w.ihris_id, w.location_path FROM workers w WHERE w.alt_msisdn = i.from_msisdn)
			LIMIT 1) w
		WHERE ` + rs.where(&a, "i.stored_at")
	if len(rs.phones) > 0 {
		q += ` AND i.from_msisdn = ANY (` + a.add(rs.phones) + `::text[])`
	}
	var id int64
	var partial bool
	var sent, received time.Time
	var body, ihris string
	return s.each(ctx, q+` ORDER BY i.id`, a, func(rows pgx.Rows) error {
		if err := rows.Scan(&id, &body, &partial, &sent, &received, &ihris); err != nil {
			return err
		}
		c := fhirCommunication{ResourceType: "Communication", ID: "mhero-sms-" + strconv.FormatInt(id, 10),
			Identifier: []fhirIdent{{System: FHIRSystem + "/sid/inbound-sms", Value: strconv.FormatInt(id, 10)}},
			Status:     "completed",
			Category:   []fhirConcept{{Coding: []fhirCoding{{System: FHIRSystem + "/CodeSystem/response-type", Code: "sms", Display: "SMS from a health worker"}}}},
			Sent:       fhirTime(sent), Received: fhirTime(received), Sender: practitioner(ihris),
			Payload: []fhirContent{{ContentString: body}}}
		if partial {
			c.Note = []fhirText{{Text: "Some parts of this SMS never arrived."}}
		}
		return emit("Communication/"+c.ID, &c)
	})
}

func (s *Store) stockResponses(ctx context.Context, rs *responseScope, emit func(string, any) error) error {
	var a sqlArgs
	q := `SELECT s.id, s.quantity, s.stockout_days, s.reported_at, f.code, f.name, c.code, c.name, w.ihris_id
		FROM stock_reports s JOIN workers w ON w.id = s.worker_id JOIN facilities f ON f.id = s.facility_id
		JOIN commodities c ON c.id = s.commodity_id
		WHERE ` + rs.where(&a, "s.received_at") + ` ORDER BY s.id`
	var id int64
	var qty, days int
	var at time.Time
	var fcode, fname, ccode, cname, ihris string
	return s.each(ctx, q, a, func(rows pgx.Rows) error {
		if err := rows.Scan(&id, &qty, &days, &at, &fcode, &fname, &ccode, &cname, &ihris); err != nil {
			return err
		}
		ref := Ref(RefStock, id)
		qr := fhirQuestionnaireResponse{ResourceType: "QuestionnaireResponse", ID: "mhero-stock-" + strconv.FormatInt(id, 10),
			Identifier:    fhirIdent{System: FHIRSystem + "/sid/stock-report", Value: ref},
			Questionnaire: FHIRSystem + "/Questionnaire/mhero-stock-report", Status: "completed",
			Subject:  fhirRef{Type: "Location", Identifier: &fhirIdent{System: FHIRSystem + "/sid/facility", Value: fcode}, Display: fname},
			Authored: fhirTime(at), Author: practitioner(ihris), Source: practitioner(ihris),
			Item: []fhirItem{
				{LinkID: "commodity", Text: "Commodity", Answer: []fhirAnswer{{ValueCoding: &fhirCoding{
					System: FHIRSystem + "/CodeSystem/commodity", Code: ccode, Display: cname}}}},
				intAnswer("quantity", "Quantity on hand", qty),
				intAnswer("stockout-days", "Days out of stock since the last report", days),
			}}
		return emit("QuestionnaireResponse/"+qr.ID, &qr)
	})
}

func (s *Store) validationResponses(ctx context.Context, rs *responseScope, emit func(string, any) error) error {
	var a sqlArgs
	q := `SELECT v.id, v.state, COALESCE(rf.code, ''), v.registry_cadre, v.stated_facility, COALESCE(sf.code, ''),
			v.stated_cadre, v.validated_at, w.ihris_id
		FROM worker_validations v JOIN workers w ON w.id = v.worker_id
		LEFT JOIN facilities rf ON rf.id = v.registry_facility_id LEFT JOIN facilities sf ON sf.id = v.stated_facility_id
		WHERE ` + rs.where(&a, "v.validated_at") + ` ORDER BY v.id`
	var id int64
	var state, regFac, regCadre, statedFac, statedFacCode, statedCadre, ihris string
	var at time.Time
	return s.each(ctx, q, a, func(rows pgx.Rows) error {
		if err := rows.Scan(&id, &state, &regFac, &regCadre, &statedFac, &statedFacCode, &statedCadre, &at, &ihris); err != nil {
			return err
		}
		items := []fhirItem{{LinkID: "state", Text: "Outcome", Answer: []fhirAnswer{{ValueCoding: &fhirCoding{
			System: FHIRSystem + "/CodeSystem/validation-state", Code: state}}}}}
		for _, it := range []struct{ link, text, v string }{
			{"registry-facility", "Facility the registry had", regFac},
			{"registry-cadre", "Cadre the registry had", regCadre},
			{"stated-facility", "Facility the worker gave", statedFac},
			{"stated-facility-code", "Known facility the worker's answer names", statedFacCode},
			{"stated-cadre", "Cadre the worker gave", statedCadre},
		} {
			if strings.TrimSpace(it.v) != "" {
				items = append(items, textAnswer(it.link, it.text, it.v))
			}
		}
		qr := fhirQuestionnaireResponse{ResourceType: "QuestionnaireResponse", ID: "mhero-validation-" + strconv.FormatInt(id, 10),
			Identifier:    fhirIdent{System: FHIRSystem + "/sid/worker-validation", Value: Ref(RefValidation, id)},
			Questionnaire: FHIRSystem + "/Questionnaire/mhero-worker-details", Status: "completed",
			Subject: practitioner(ihris), Authored: fhirTime(at), Author: practitioner(ihris), Source: practitioner(ihris), Item: items}
		return emit("QuestionnaireResponse/"+qr.ID, &qr)
	})
}

// fhirResponses answers GET /api/v1/exports/fhir/responses?since=&worker=.
func (h *handler) fhirResponses(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, "since", "worker")
	var f ResponseFilter
	if err == nil && api.WantsCSV(r) {
		err = mhero.Errorf(mhero.EINVALID, "The responses export is FHIR JSON only.")
	}
	if err == nil {
		f.Worker = q.get("worker")
		f.Since, err = h.s.parseSince(q.get("since"))
	}
	if err != nil {
		api.Error(w, r, h.srv.Log, err)
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json; charset=utf-8")
	out, err := h.s.writeResponses(r.Context(), w, f)
	if err != nil {
		if out.written() == 0 {
			api.Error(w, r, h.srv.Log, err)
			return
		}
		h.srv.Log.ErrorContext(r.Context(), "FHIR responses export broken", "error", err)
		panic(http.ErrAbortHandler)
	}
}

// parseSince reads an RFC 3339 time or a date (midnight in the store's time zone).
func (s *Store) parseSince(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", v, s.tz()); err == nil {
		return t, nil
	}
	return time.Time{}, &mhero.Error{Code: mhero.EINVALID, Message: "since is not a time.",
		Details: []mhero.ErrorDetail{{Field: "since", Message: "give an RFC 3339 time (2026-11-01T00:00:00Z) or a date (2026-11-01)"}}}
}
