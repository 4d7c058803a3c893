package registry

import (
	"bufio"
	"context"
	"strings"
	"testing"
)

// FuzzCSVRow feeds one data line, under a full workers header, through the CSV reader
// and the per-row parser: bad input gives row errors, never a panic, and a row the
// parser accepts always has a name and a normalised phone.
func FuzzCSVRow(f *testing.F) {
	f.Add("P-1001,Mary Kollie,0886 123 456,,nurse,redemption,imci;ebola-ipc,en,true,false") // a clean iHRIS row
	f.Add(`P-1004,"Sumo, Emmanuel",00231888765432,,chw,ganta-hc,,,,`)                       // quoted comma, 00 prefix, empty tail
	f.Add("P-1,Ann,+231 77 012 3456,0880001111,chw,jfk,a|b|a,EN-lr,Yes,No")                 // international, repeated skill, region tag
	f.Add("P-2,Bob,12345,,,,,,,")                                                           // invalid phone
	f.Add("P-3,,0886123456,0886123456,,,,,maybe,2")                                         // no name, phone2 repeats, bad booleans
	f.Add(`P-4,"unterminated,0886123456`)                                                   // bad quoting
	f.Add("P-5,Too,Few")                                                                    // wrong field count
	f.Add("P-6,Tel Ext,0886123456 ext. 12,+44 20 7946 0958,,,,,,")                          // extension, foreign number
	f.Add("\xff\xfe,\x00,０８８６１２３４５６,,,,,,,")                                                // invalid UTF-8, NUL, full-width digits
	const header = "ihris_id,name,phone,phone2,cadre,facility_code,skills,language,active,opted_out\n"
	phones := newPhoneParser("LR")
	f.Fuzz(func(t *testing.T, line string) {
		br := bufio.NewReader(strings.NewReader(header + line + "\n"))
		cr := newCSVReader(br)
		rec, err := cr.Read()
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		h, missing := newCSVHeader(rec, FormatCSVWorkers)
		if len(missing) > 0 {
			t.Fatalf("missing %v", missing)
		}
		col, res := &collector{}, &ImportResult{}
		var rows []workerRow
		err = readCSVRows(context.Background(), cr, h, col, res, func(rec []string, line int) {
			r, d := h.parseWorker(rec, line, phones)
			if len(d) == 0 {
				rows = append(rows, r)
			}
			for _, e := range d {
				if e.Message == "" || e.Field == "" {
					t.Errorf("row error without field or message: %+v", e)
				}
			}
		})
		if err != nil {
			t.Fatalf("readCSVRows: %v", err)
		}
		for _, r := range rows {
			if r.name == "" || r.msisdn == "" || strings.Trim(r.msisdn, "0123456789") != "" || r.alt == r.msisdn {
				t.Errorf("accepted row %+v", r)
			}
			if m, err := ParseMSISDN(r.msisdn, "LR"); err != nil || string(m) != r.msisdn {
				t.Errorf("phone %q does not round-trip: %q, %v", r.msisdn, m, err)
			}
		}
	})
}

// FuzzFHIRBundle feeds arbitrary bytes to the streaming bundle reader: it returns an
// error or calls back per entry, never panics, and never reads a single value beyond
// maxFHIREntry bytes.
func FuzzFHIRBundle(f *testing.F) {
	f.Add(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Practitioner","id":"p1","name":[{"given":["Mary"],"family":"Kollie"}],"telecom":[{"system":"phone","value":"0886123456"}]}}]}`) // a minimal practitioner
	f.Add(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Location","id":"f1","name":"Clinic","type":[{"coding":[{"code":"facility"}]}],"partOf":{"reference":"Location/d1"}}}]}`)        // a facility
	f.Add(`{"entry":[{"resource":{"resourceType":"PractitionerRole","practitioner":{"reference":"Practitioner/p1"},"code":{"coding":[]}}}],"resourceType":"Bundle"}`)                                     // wrong type for code; resourceType last
	f.Add(`{"resourceType":"Bundle","entry":[{"request":{"method":"DELETE"}},{"resource":null},{"resource":7}]}`)                                                                                         // deleted entries, a number
	f.Add(`{"resourceType":"Bundle","entry":[`)                                                                                                                                                           // truncated
	f.Add(`{"resourceType":"Patient"}`)                                                                                                                                                                   // not a bundle
	f.Add(`{"resourceType":"Bundle","link":[[[[{}]]]],"entry":[]} trailing`)                                                                                                                              // nested skip, trailing data
	f.Add(`[1,2,3]`)                                                                                                                                                                                      // not an object
	phones := newPhoneParser("LR")
	f.Fuzz(func(t *testing.T, in string) {
		b := &fhirBundle{byID: map[string]*fhirWorker{}, roles: map[string]*fhirRole{}}
		col, res := &collector{}, &ImportResult{}
		lim := 0
		_ = readFHIRBundle(context.Background(), strings.NewReader(in), func(line int, r *fhirResource) {
			if line <= lim {
				t.Errorf("entry numbers not increasing: %d after %d", line, lim)
			}
			lim = line
			b.add(line, r, phones, col, res)
		})
		for _, w := range b.workers {
			_ = w.row()
		}
		if len(col.errs) > MaxImportErrors {
			t.Errorf("collector kept %d errors", len(col.errs))
		}
	})
}

// FuzzPhoneQuick checks that the fast path agrees with ParseMSISDN whenever it answers.
func FuzzPhoneQuick(f *testing.F) {
	for _, s := range []string{"0886123456", "+231 77 012 3456", "00231888765432", "0770-223-344", "(0886) 123 456",
		"+2310886123456", "0886 123 45", "0555123456", "+231 (0) 88 612 3456", "0 0886123456", "00 231 886123456"} {
		f.Add(s) // national, international, 00, separators, trunk zero after +231, short, other ranges
	}
	p := newPhoneParser("LR")
	f.Fuzz(func(t *testing.T, raw string) {
		got, ok := p.quick(raw)
		if !ok {
			return
		}
		want, err := ParseMSISDN(raw, "LR")
		if err != nil || want != got {
			t.Errorf("quick(%q) = %q, ParseMSISDN = %q, %v", raw, got, want, err)
		}
	})
}
