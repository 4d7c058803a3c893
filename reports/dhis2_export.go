package reports

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"iter"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// SentValue is one data value of a payload, with the facility and commodity it is about:
// what a push keeps so that DHIS2's conflicts can be traced back to them.
type SentValue struct {
	Facility            string `json:"facility"`  // the facility's code
	Commodity           string `json:"commodity"` // the commodity's code
	Kind                string `json:"kind"`      // stock or stockout_days
	OrgUnit             string `json:"org_unit"`
	DataElement         string `json:"data_element"`
	CategoryOptionCombo string `json:"category_option_combo,omitempty"`
	Value               string `json:"value"`
}

// The kinds of value a commodity gives.
const (
	KindStock        = "stock"
	KindStockoutDays = "stockout_days"
)

// ExportWarning names what an export left out and why.
type ExportWarning struct {
	Facility  string `json:"facility,omitempty"`  // the facility's code, when it has no org unit
	Commodity string `json:"commodity,omitempty"` // the commodity's code, when it has no data element
	Skipped   int    `json:"skipped"`             // facility-commodity pairs with reports in the period left out
	Message   string `json:"message"`
}

// ExportSummary is what an export sent and left out.
type ExportSummary struct {
	Values   int             `json:"values"`
	Skipped  int             `json:"skipped"`
	Warnings []ExportWarning `json:"warnings"`
}

// dhis2Row is one facility and commodity's aggregate for a period.
type dhis2Row struct {
	facility, name, uid, code, commodity string
	quantity                             int
	stockoutDays                         int64
}

// dhis2Rows aggregates the period's stock reports per facility and commodity in the
// caller's scope (or under location), by facility code then commodity.
func (s *Store) dhis2Rows(ctx context.Context, p Period, location string) iter.Seq2[dhis2Row, error] {
	return view(ctx, s, Filter{Location: location, Period: p}, needPeriod, func(sc *scope, a *sqlArgs) (string, error) {
		return `WITH fac AS MATERIALIZED (` + sc.facilities(a) + `),
			agg AS (SELECT s.facility_id, s.commodity_id,
					(array_agg(s.quantity ORDER BY s.reported_at DESC, s.id DESC))[1] AS quantity,
					sum(s.stockout_days) AS days
				FROM stock_reports s WHERE s.facility_id IN (SELECT id FROM fac) AND ` + sc.inPeriod(a, "s.reported_at") + `
				GROUP BY 1, 2)
			SELECT f.code, f.name, COALESCE(f.dhis2_uid, ''), COALESCE(f.dhis2_code, ''), c.code, agg.quantity, agg.days
			FROM agg JOIN facilities f ON f.id = agg.facility_id JOIN commodities c ON c.id = agg.commodity_id
			ORDER BY f.code, c.code`, nil
	}, func(rows pgx.Rows, r *dhis2Row) error {
		return rows.Scan(&r.facility, &r.name, &r.uid, &r.code, &r.commodity, &r.quantity, &r.stockoutDays)
	})
}

// exportValues turns the period's aggregates into data values, calling emit for each in
// payload order, and gathers what could not be mapped. An error resolving or running the
// query comes back before the first emit.
func exportValues(ctx context.Context, s *Store, cfg *DHIS2Config, p Period, location string, emit func(*SentValue) error) (*ExportSummary, error) {
	sum := &ExportSummary{}
	noOrgUnit := map[string]*ExportWarning{}
	noElement := map[string]*ExportWarning{}
	days := int64(p.End.Sub(p.Start).Hours()/24 + 0.5)
	var v SentValue
	for r, err := range s.dhis2Rows(ctx, p, location) {
		if err != nil {
			return nil, err
		}
		ou := r.uid
		if cfg.IDScheme == "code" {
			ou = r.code
		}
		if _, mapped := cfg.Commodities[r.commodity]; !mapped {
			warn(noElement, r.commodity, func() ExportWarning {
				return ExportWarning{Commodity: r.commodity,
					Message: "commodity " + r.commodity + " has no data element in dhis2.commodities: its stock is not exported"}
			})
			continue
		}
		if ou == "" {
			warn(noOrgUnit, r.facility, func() ExportWarning {
				return ExportWarning{Facility: r.facility, Message: "facility " + r.facility + " (" + r.name + ") has no DHIS2 " +
					cfg.IDScheme + " (dhis2_" + cfg.IDScheme + "): its stock is not exported"}
			})
			continue
		}
		stock, outs, hasOuts := cfg.targets(r.commodity)
		v = SentValue{Facility: r.facility, Commodity: r.commodity, Kind: KindStock, OrgUnit: ou,
			DataElement: stock.element, CategoryOptionCombo: stock.combo, Value: strconv.Itoa(r.quantity)}
		if err := emit(&v); err != nil {
			return nil, err
		}
		sum.Values++
		if hasOuts {
			v.Kind, v.DataElement, v.CategoryOptionCombo = KindStockoutDays, outs.element, outs.combo
			v.Value = strconv.FormatInt(min(r.stockoutDays, days), 10)
			if err := emit(&v); err != nil {
				return nil, err
			}
			sum.Values++
		}
	}
	sum.Warnings = make([]ExportWarning, 0, len(noOrgUnit)+len(noElement))
	for _, m := range []map[string]*ExportWarning{noElement, noOrgUnit} {
		for _, w := range m {
			sum.Skipped += w.Skipped
			sum.Warnings = append(sum.Warnings, *w)
		}
	}
	slices.SortFunc(sum.Warnings, func(a, b ExportWarning) int {
		// Commodities first (they affect every facility), then facilities, each by code.
		return cmp.Or(cmp.Compare(a.Facility, b.Facility), cmp.Compare(a.Commodity, b.Commodity))
	})
	return sum, nil
}

func warn(m map[string]*ExportWarning, key string, newWarning func() ExportWarning) {
	w := m[key]
	if w == nil {
		nw := newWarning()
		w = &nw
		m[key] = w
	}
	w.Skipped++
}

// Export writes the period's data value set to w as DHIS2 reads it, with the warnings
// after the values ("warnings": [...], which DHIS2 ignores), and returns what it sent and
// left out. location limits it to a subtree ("" for the caller's scope). When it fails
// before anything reached w, w is untouched (see dataValueSet.written).
func (p *Pusher) Export(ctx context.Context, w io.Writer, period Period, location string) (*ExportSummary, error) {
	_, sum, err := p.export(ctx, w, period, location)
	return sum, err
}

func (p *Pusher) export(ctx context.Context, w io.Writer, period Period, location string) (*dataValueSet, *ExportSummary, error) {
	d := newDataValueSet(w)
	d.begin(&p.cfg, period)
	sum, err := exportValues(ctx, p.s, &p.cfg, period, location, func(v *SentValue) error {
		d.value(v)
		return nil
	})
	if err != nil {
		return d, nil, err
	}
	tail, err := json.Marshal(sum.Warnings)
	if err != nil {
		return d, nil, err
	}
	return d, sum, d.end(append([]byte(`"warnings":`), tail...))
}

// dataValueSet writes a payload as DHIS2 reads it:
//
//	{"dataSet":"…","period":"202611","dataValues":[{"dataElement":"…","categoryOptionCombo":"…","orgUnit":"…","value":"20"}, …]}
//
// one value at a time.
type dataValueSet struct {
	w   *countedBuffer
	n   int
	buf []byte
}

func newDataValueSet(w io.Writer) *dataValueSet { return &dataValueSet{w: newCountedBuffer(w)} }

func (d *dataValueSet) written() int64 { return d.w.written() }

// countedBuffer buffers writes (nothing reaches the writer before 32 KiB or Flush) and
// counts the bytes that reached it: a handler whose stream fails while that is still 0
// can answer a proper error instead.
type countedBuffer struct {
	*bufio.Writer
	out *countingWriter
}

func newCountedBuffer(w io.Writer) *countedBuffer {
	cw := &countingWriter{w: w}
	return &countedBuffer{Writer: bufio.NewWriterSize(cw, 32<<10), out: cw}
}

// written reports how many bytes reached the underlying writer.
func (c *countedBuffer) written() int64 { return c.out.n }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (d *dataValueSet) begin(cfg *DHIS2Config, p Period) {
	b := append(d.buf[:0], `{"dataSet":`...)
	b = appendJSONString(b, cfg.DataSet)
	b = append(b, `,"period":`...)
	b = appendJSONString(b, p.String())
	if cfg.AttributeOptionCombo != "" {
		b = append(b, `,"attributeOptionCombo":`...)
		b = appendJSONString(b, cfg.AttributeOptionCombo)
	}
	b = append(b, `,"dataValues":[`...)
	d.buf = b
	_, _ = d.w.Write(b)
}

func (d *dataValueSet) value(v *SentValue) {
	b := d.buf[:0]
	if d.n > 0 {
		b = append(b, ",\n"...)
	}
	d.n++
	b = append(b, `{"dataElement":`...)
	b = appendJSONString(b, v.DataElement)
	if v.CategoryOptionCombo != "" {
		b = append(b, `,"categoryOptionCombo":`...)
		b = appendJSONString(b, v.CategoryOptionCombo)
	}
	b = append(b, `,"orgUnit":`...)
	b = appendJSONString(b, v.OrgUnit)
	b = append(b, `,"value":`...)
	b = appendJSONString(b, v.Value)
	d.buf = append(b, '}')
	_, _ = d.w.Write(d.buf)
}

// end closes the value list, adds tail (raw JSON members, e.g. `"warnings":[…]`) when
// given, and flushes.
func (d *dataValueSet) end(tail []byte) error {
	_, _ = d.w.WriteString("]")
	if len(tail) > 0 {
		_ = d.w.WriteByte(',')
		_, _ = d.w.Write(tail)
	}
	_, _ = d.w.WriteString("}\n")
	return d.w.Flush()
}
