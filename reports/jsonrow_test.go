package reports

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// fill sets every field of v (a pointer to a row struct, embedded structs included) to a
// value that exercises escaping: strings with quotes, control bytes, HTML, non-ASCII and
// invalid UTF-8.
func fill(v reflect.Value, i *int) {
	for f := 0; f < v.NumField(); f++ {
		field := v.Field(f)
		*i++
		switch field.Kind() {
		case reflect.String:
			field.SetString([]string{"F\"1\\<b>&\x01\n\tÉ\u2028", "Ganta HC", "\xff\xfe bad", ""}[*i%4])
		case reflect.Int, reflect.Int64, reflect.Int16:
			field.SetInt(int64(*i*1000 - 3))
		case reflect.Bool:
			field.SetBool(*i%2 == 0)
		case reflect.Float64:
			field.SetFloat(float64(*i) / 3)
		case reflect.Struct:
			if t, ok := field.Addr().Interface().(*time.Time); ok {
				*t = time.Date(2026, 11, 20, 12, 0, *i, 123456789, time.FixedZone("", 3600))
			} else {
				fill(field, i)
			}
		}
	}
}

func checkTable[T any](t *testing.T, tbl table[T]) {
	t.Helper()
	var row T
	n := 0
	fill(reflect.ValueOf(&row).Elem(), &n)
	got := tbl.json(&row, nil)
	want, err := json.Marshal(&row)
	if err != nil {
		t.Fatal(err)
	}
	var g, w map[string]any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: row JSON %s does not parse: %v", tbl.name, got, err)
	}
	_ = json.Unmarshal(want, &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: row JSON\n%s\nwant (encoding/json)\n%s", tbl.name, got, want)
	}
	// The CSV columns are the JSON keys, in order.
	dec := json.NewDecoder(bytes.NewReader(got))
	_, _ = dec.Token()
	for i := 0; dec.More(); i++ {
		key, _ := dec.Token()
		var skip any
		_ = dec.Decode(&skip)
		if i >= len(tbl.header) || tbl.header[i] != key {
			t.Errorf("%s: JSON key %d is %v, CSV column is %v", tbl.name, i, key, tbl.header[min(i, len(tbl.header)-1)])
		}
	}
	if cells := tbl.row(&row, nil); len(cells) != len(tbl.header) {
		t.Errorf("%s: %d CSV cells for %d columns", tbl.name, len(cells), len(tbl.header))
	}
}

func TestJSONRowsMatchEncodingJSON(t *testing.T) {
	t.Parallel()
	checkTable(t, stockReportTable)
	checkTable(t, latestStockTable)
	checkTable(t, trendTable)
	checkTable(t, stockOutTable)
	checkTable(t, stockOutFacilityTable)
	checkTable(t, reportingRateTable)
	checkTable(t, referralCountTable)
	checkTable(t, overdueTable)
	checkTable(t, validationCountTable)
	checkTable(t, validationTable)
}

func BenchmarkJSONRow(b *testing.B) {
	row := LatestStock{FacilityCode: "FAC-0001", FacilityName: "Bellu Hospital", LocationCode: "LR-01-01-02-03", Commodity: "ors",
		Quantity: 123, ReportedAt: time.Now(), AgeDays: 3, Ref: "S-7K3Q9", WorkerID: 1234}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = latestStockTable.json(&row, buf[:0])
	}
}
