package reports

import (
	"context"
	"iter"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/api"
)

// viewTimeout bounds the views that aggregate (a handful of rows, whatever the country's
// size). Exports stream for as long as the client keeps reading.
const viewTimeout = 30 * time.Second

// Routes registers the reports' views under /api/v1/reports, for keys with the reader
// role; a scoped key sees only its subtree.
func (s *Store) Routes(srv *api.Server) {
	get := func(path string, h http.HandlerFunc) {
		srv.API.HandleFunc("/reports"+path, api.Require(mhero.RoleReader, h)).Methods(http.MethodGet)
	}
	h := &handler{s: s, srv: srv}
	get("/stock", h.stockReports)
	get("/stock/latest", h.latestStock)
	get("/stock/trend", h.stockTrend)
	get("/stock/{ref}", api.Get(srv.Log, func(r *http.Request) (*StockReport, error) {
		return s.FindStockReport(r.Context(), mux.Vars(r)["ref"])
	}))
	get("/stockouts", h.stockOuts)
	get("/stockouts/facilities", h.stockOutFacilities)
	get("/reporting-rates", h.reportingRates)
	get("/referrals", h.referralCounts)
	get("/referrals/overdue", h.overdueReferrals)
	get("/referrals/{ref}", api.Get(srv.Log, func(r *http.Request) (*Referral, error) {
		return s.FindReferral(r.Context(), mux.Vars(r)["ref"])
	}))
	get("/validations", h.validationCounts)
	get("/validations/records", h.validations)
}

type handler struct {
	s   *Store
	srv *api.Server
}

// query reads a view's query parameters. Any parameter the view does not take is an
// error: a misspelt filter (?perod=) silently ignored would give the right-looking
// answer to the wrong question.
type query struct {
	r *http.Request
	f Filter
}

// Parameters every view takes.
const (
	pLocation  = "location"
	pLevel     = "level"
	pPeriod    = "period"
	pCommodity = "commodity"
	pFacility  = "facility"
	pFormat    = "format" // format=csv, as the api package reads it
)

func (h *handler) params(r *http.Request, allowed ...string) (*query, error) {
	q := &query{r: r}
	v := r.URL.Query()
	takes := append(slices.Clone(allowed), pFormat)
	var d []mhero.ErrorDetail
	for name := range v {
		if !slices.Contains(takes, name) {
			d = append(d, mhero.ErrorDetail{Field: name, Message: "unknown query parameter; this view takes " + strings.Join(allowed, ", ")})
		}
	}
	for name, vals := range v {
		if len(vals) > 1 && slices.Contains(takes, name) {
			d = append(d, mhero.ErrorDetail{Field: name, Message: "give " + name + " once"})
		}
	}
	if f := v.Get(pFormat); f != "" && f != "csv" && f != "json" {
		d = append(d, mhero.ErrorDetail{Field: pFormat, Message: "format must be csv or json"})
	}
	if len(d) > 0 {
		slices.SortFunc(d, func(a, b mhero.ErrorDetail) int { return strings.Compare(a.Field, b.Field) })
		return nil, &mhero.Error{Code: mhero.EINVALID, Message: "The query has parameters this view does not take or cannot read.", Details: d}
	}
	q.f = Filter{Location: v.Get(pLocation), Commodity: v.Get(pCommodity), Facility: v.Get(pFacility)}
	if p := v.Get(pPeriod); p != "" {
		period, err := h.s.ParsePeriod(p)
		if err != nil {
			return nil, err
		}
		q.f.Period = period
	}
	if l := v.Get(pLevel); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return nil, &mhero.Error{Code: mhero.EINVALID, Message: "Level must be a number.",
				Details: []mhero.ErrorDetail{{Field: pLevel, Message: "level is a depth in the location tree: 0 for the country, 1 below it, ..."}}}
		}
		q.f.Level = &n
	}
	return q, nil
}

func (q *query) get(name string) string { return q.r.URL.Query().Get(name) }

// serve runs a view and streams its answer; aggregates get viewTimeout.
func serve[T any](h *handler, w http.ResponseWriter, r *http.Request, q *query, err error, t table[T],
	view func(ctx context.Context, q *query) iter.Seq2[T, error], aggregate bool) {
	if err != nil {
		api.Error(w, r, h.srv.Log, err)
		return
	}
	ctx := r.Context()
	if aggregate {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, viewTimeout)
		defer cancel()
	}
	writeStream(w, r, h.srv.Log, q.f.Period, t, view(ctx, q))
}

func (h *handler) stockReports(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pFacility, pCommodity, pPeriod)
	serve(h, w, r, q, err, stockReportTable, func(ctx context.Context, q *query) iter.Seq2[StockReportRow, error] {
		return h.s.StockReports(ctx, q.f)
	}, false)
}

func (h *handler) latestStock(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pFacility, pCommodity)
	serve(h, w, r, q, err, latestStockTable, func(ctx context.Context, q *query) iter.Seq2[LatestStock, error] {
		return h.s.LatestStock(ctx, q.f)
	}, false)
}

func (h *handler) stockTrend(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pFacility, pCommodity, pPeriod, "interval")
	serve(h, w, r, q, err, trendTable, func(ctx context.Context, q *query) iter.Seq2[TrendPoint, error] {
		interval := PeriodType(q.get("interval"))
		if interval == "" {
			// A year reads best by month; anything shorter by week.
			interval = Week
			if q.f.Period.Type == Year {
				interval = Month
			}
		}
		return h.s.StockTrend(ctx, TrendFilter{Filter: q.f, Interval: interval})
	}, true)
}

func (h *handler) stockOuts(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pLevel, pCommodity, pPeriod)
	serve(h, w, r, q, err, stockOutTable, func(ctx context.Context, q *query) iter.Seq2[StockOutCount, error] {
		return h.s.StockOuts(ctx, q.f)
	}, true)
}

func (h *handler) stockOutFacilities(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pFacility, pCommodity, pPeriod)
	serve(h, w, r, q, err, stockOutFacilityTable, func(ctx context.Context, q *query) iter.Seq2[StockOutFacility, error] {
		return h.s.StockOutFacilities(ctx, q.f)
	}, false)
}

func (h *handler) reportingRates(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pLevel, pCommodity, pPeriod)
	serve(h, w, r, q, err, reportingRateTable, func(ctx context.Context, q *query) iter.Seq2[ReportingRate, error] {
		return h.s.ReportingRates(ctx, q.f)
	}, true)
}

// referralFilter reads ?side=from|to.
func referralFilter(q *query) (ReferralFilter, error) {
	f := ReferralFilter{Filter: q.f}
	switch q.get("side") {
	case "", "from":
	case "to":
		f.ByReceiver = true
	default:
		return f, &mhero.Error{Code: mhero.EINVALID, Message: "Unknown side.",
			Details: []mhero.ErrorDetail{{Field: "side", Message: "side must be from (the referring facility) or to (the receiving one)"}}}
	}
	return f, nil
}

func (h *handler) referralCounts(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pLevel, pPeriod, "side")
	serve(h, w, r, q, err, referralCountTable, func(ctx context.Context, q *query) iter.Seq2[ReferralCount, error] {
		f, err := referralFilter(q)
		if err != nil {
			return failed[ReferralCount](err)
		}
		return h.s.ReferralCounts(ctx, f)
	}, true)
}

func (h *handler) overdueReferrals(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pFacility, pPeriod, "side")
	serve(h, w, r, q, err, overdueTable, func(ctx context.Context, q *query) iter.Seq2[OverdueReferral, error] {
		f, err := referralFilter(q)
		if err != nil {
			return failed[OverdueReferral](err)
		}
		return h.s.OverdueReferrals(ctx, f)
	}, false)
}

func (h *handler) validationCounts(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pLevel, pPeriod)
	serve(h, w, r, q, err, validationCountTable, func(ctx context.Context, q *query) iter.Seq2[ValidationCount, error] {
		return h.s.ValidationCounts(ctx, q.f)
	}, true)
}

func (h *handler) validations(w http.ResponseWriter, r *http.Request) {
	q, err := h.params(r, pLocation, pFacility, pPeriod, "state")
	serve(h, w, r, q, err, validationTable, func(ctx context.Context, q *query) iter.Seq2[Validation, error] {
		return h.s.Validations(ctx, ValidationFilter{Filter: q.f, State: ValidationState(q.get("state"))})
	}, false)
}

// failed is a view that is only an error.
func failed[T any](err error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		yield(zero, err)
	}
}

// The CSV and JSON shapes of each view: CSV columns are the JSON field names, in the
// same order.

func itoa(n int) string { return strconv.Itoa(n) }

func id64[T ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

var locationHeader = []string{"location_code", "location_name", "level"}

func (l *LocationCount) cells(dst []string) []string {
	return append(dst, l.LocationCode, l.LocationName, itoa(l.Level))
}

func (l *LocationCount) json(b []byte) *jsonRow {
	o := newJSONRow(b)
	return o.str("location_code", l.LocationCode).str("location_name", l.LocationName).int("level", int64(l.Level))
}

var stockReportTable = table[StockReportRow]{name: "stock-reports",
	header: []string{"ref", "facility_code", "facility_name", "location_code", "commodity", "quantity", "stockout_days",
		"worker_id", "worker_ihris_id", "reported_at", "received_at"},
	row: func(r *StockReportRow, dst []string) []string {
		return append(dst, r.Ref, r.FacilityCode, r.FacilityName, r.LocationCode, r.Commodity, itoa(r.Quantity),
			itoa(r.StockoutDays), id64(r.WorkerID), r.WorkerIHRISID, csvTime(r.ReportedAt), csvTime(r.ReceivedAt))
	},
	json: func(r *StockReportRow, b []byte) []byte {
		o := newJSONRow(b)
		o.str("ref", r.Ref).str("facility_code", r.FacilityCode).str("facility_name", r.FacilityName).
			str("location_code", r.LocationCode).str("commodity", r.Commodity).int("quantity", int64(r.Quantity)).
			int("stockout_days", int64(r.StockoutDays)).int("worker_id", int64(r.WorkerID)).
			str("worker_ihris_id", r.WorkerIHRISID).time("reported_at", r.ReportedAt).time("received_at", r.ReceivedAt)
		return o.done()
	}}

var latestStockTable = table[LatestStock]{name: "latest-stock",
	header: []string{"facility_code", "facility_name", "location_code", "commodity", "quantity", "stockout_days",
		"stocked_out", "reported_at", "age_days", "ref", "worker_id"},
	row: func(r *LatestStock, dst []string) []string {
		return append(dst, r.FacilityCode, r.FacilityName, r.LocationCode, r.Commodity, itoa(r.Quantity), itoa(r.StockoutDays),
			strconv.FormatBool(r.StockedOut), csvTime(r.ReportedAt), itoa(r.AgeDays), r.Ref, id64(r.WorkerID))
	},
	json: func(r *LatestStock, b []byte) []byte {
		o := newJSONRow(b)
		o.str("facility_code", r.FacilityCode).str("facility_name", r.FacilityName).str("location_code", r.LocationCode).
			str("commodity", r.Commodity).int("quantity", int64(r.Quantity)).int("stockout_days", int64(r.StockoutDays)).
			bool("stocked_out", r.StockedOut).time("reported_at", r.ReportedAt).int("age_days", int64(r.AgeDays)).
			str("ref", r.Ref).int("worker_id", int64(r.WorkerID))
		return o.done()
	}}

var trendTable = table[TrendPoint]{name: "stock-trend",
	header: []string{"period", "start", "end", "reports", "facilities_reporting", "facilities_stocked_out", "quantity"},
	row: func(r *TrendPoint, dst []string) []string {
		return append(dst, r.Period, csvTime(r.Start), csvTime(r.End), itoa(r.Reports), itoa(r.FacilitiesReporting),
			itoa(r.FacilitiesStockedOut), strconv.FormatInt(r.Quantity, 10))
	},
	json: func(r *TrendPoint, b []byte) []byte {
		o := newJSONRow(b)
		o.str("period", r.Period).time("start", r.Start).time("end", r.End).int("reports", int64(r.Reports)).
			int("facilities_reporting", int64(r.FacilitiesReporting)).
			int("facilities_stocked_out", int64(r.FacilitiesStockedOut)).int("quantity", r.Quantity)
		return o.done()
	}}

var stockOutTable = table[StockOutCount]{name: "stockouts",
	header: append(slices.Clone(locationHeader), "commodity", "facilities", "reporting", "stocked_out"),
	row: func(r *StockOutCount, dst []string) []string {
		return append(r.cells(dst), r.Commodity, itoa(r.Facilities), itoa(r.Reporting), itoa(r.StockedOut))
	},
	json: func(r *StockOutCount, b []byte) []byte {
		o := r.LocationCount.json(b)
		o.str("commodity", r.Commodity).int("facilities", int64(r.Facilities)).int("reporting", int64(r.Reporting)).
			int("stocked_out", int64(r.StockedOut))
		return o.done()
	}}

var stockOutFacilityTable = table[StockOutFacility]{name: "stockout-facilities",
	header: []string{"facility_code", "facility_name", "location_code", "commodity", "stockout_reports", "max_stockout_days",
		"first_reported_at", "last_reported_at", "latest_quantity", "latest_reported_at", "still_out"},
	row: func(r *StockOutFacility, dst []string) []string {
		return append(dst, r.FacilityCode, r.FacilityName, r.LocationCode, r.Commodity, itoa(r.StockoutReports),
			itoa(r.MaxStockoutDays), csvTime(r.FirstReportedAt), csvTime(r.LastReportedAt), itoa(r.LatestQuantity),
			csvTime(r.LatestReportedAt), strconv.FormatBool(r.StillOut))
	},
	json: func(r *StockOutFacility, b []byte) []byte {
		o := newJSONRow(b)
		o.str("facility_code", r.FacilityCode).str("facility_name", r.FacilityName).str("location_code", r.LocationCode).
			str("commodity", r.Commodity).int("stockout_reports", int64(r.StockoutReports)).
			int("max_stockout_days", int64(r.MaxStockoutDays)).time("first_reported_at", r.FirstReportedAt).
			time("last_reported_at", r.LastReportedAt).int("latest_quantity", int64(r.LatestQuantity)).
			time("latest_reported_at", r.LatestReportedAt).bool("still_out", r.StillOut)
		return o.done()
	}}

var reportingRateTable = table[ReportingRate]{name: "reporting-rates",
	header: append(slices.Clone(locationHeader), "expected", "reported", "rate"),
	row: func(r *ReportingRate, dst []string) []string {
		return append(r.cells(dst), itoa(r.Expected), itoa(r.Reported), strconv.FormatFloat(r.Rate, 'f', 4, 64))
	},
	json: func(r *ReportingRate, b []byte) []byte {
		o := r.LocationCount.json(b)
		o.int("expected", int64(r.Expected)).int("reported", int64(r.Reported)).float("rate", r.Rate)
		return o.done()
	}}

var referralCountTable = table[ReferralCount]{name: "referrals",
	header: append(slices.Clone(locationHeader), "reason", "urgency", "state", "count", "overdue"),
	row: func(r *ReferralCount, dst []string) []string {
		return append(r.cells(dst), r.Reason, string(r.Urgency), string(r.State), itoa(r.Count), itoa(r.Overdue))
	},
	json: func(r *ReferralCount, b []byte) []byte {
		o := r.LocationCount.json(b)
		o.str("reason", r.Reason).str("urgency", string(r.Urgency)).str("state", string(r.State)).
			int("count", int64(r.Count)).int("overdue", int64(r.Overdue))
		return o.done()
	}}

var overdueTable = table[OverdueReferral]{name: "overdue-referrals",
	header: []string{"ref", "reason", "urgency", "from_facility_code", "from_facility_name", "to_facility_code",
		"to_facility_name", "worker_id", "sent_at", "due_at", "overdue_hours"},
	row: func(r *OverdueReferral, dst []string) []string {
		return append(dst, r.Ref, r.Reason, string(r.Urgency), r.FromFacilityCode, r.FromFacilityName, r.ToFacilityCode,
			r.ToFacilityName, id64(r.WorkerID), csvTime(r.SentAt), csvTime(r.DueAt), itoa(r.OverdueHours))
	},
	json: func(r *OverdueReferral, b []byte) []byte {
		o := newJSONRow(b)
		o.str("ref", r.Ref).str("reason", r.Reason).str("urgency", string(r.Urgency)).
			str("from_facility_code", r.FromFacilityCode).str("from_facility_name", r.FromFacilityName).
			str("to_facility_code", r.ToFacilityCode).str("to_facility_name", r.ToFacilityName).
			int("worker_id", int64(r.WorkerID)).time("sent_at", r.SentAt).time("due_at", r.DueAt).
			int("overdue_hours", int64(r.OverdueHours))
		return o.done()
	}}

var validationCountTable = table[ValidationCount]{name: "validations",
	header: append(slices.Clone(locationHeader), "workers", "confirmed", "corrected", "pending_review", "not_validated"),
	row: func(r *ValidationCount, dst []string) []string {
		return append(r.cells(dst), itoa(r.Workers), itoa(r.Confirmed), itoa(r.Corrected), itoa(r.PendingReview),
			itoa(r.NotValidated))
	},
	json: func(r *ValidationCount, b []byte) []byte {
		o := r.LocationCount.json(b)
		o.int("workers", int64(r.Workers)).int("confirmed", int64(r.Confirmed)).int("corrected", int64(r.Corrected)).
			int("pending_review", int64(r.PendingReview)).int("not_validated", int64(r.NotValidated))
		return o.done()
	}}

var validationTable = table[Validation]{name: "validation-records",
	header: []string{"id", "ref", "worker_id", "state", "registry_facility", "registry_cadre", "stated_facility",
		"stated_facility_code", "stated_cadre", "validated_at"},
	row: func(r *Validation, dst []string) []string {
		return append(dst, id64(r.ID), r.Ref, id64(r.WorkerID), string(r.State), r.RegistryFacility,
			r.RegistryCadre, r.StatedFacility, r.StatedFacilityCode, r.StatedCadre, csvTime(r.ValidatedAt))
	},
	json: func(r *Validation, b []byte) []byte {
		o := newJSONRow(b)
		o.int("id", r.ID).str("ref", r.Ref).int("worker_id", int64(r.WorkerID)).str("state", string(r.State)).
			str("registry_facility", r.RegistryFacility).str("registry_cadre", r.RegistryCadre).
			str("stated_facility", r.StatedFacility).str("stated_facility_code", r.StatedFacilityCode).
			str("stated_cadre", r.StatedCadre).time("validated_at", r.ValidatedAt)
		return o.done()
	}}
