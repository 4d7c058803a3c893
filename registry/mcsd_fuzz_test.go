package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzBundlePage feeds arbitrary bytes to the history/search page reader and the change
// set behind it: an error or entries, never a panic; entries numbered in order; a next
// link only from a Bundle; every spooled change a JSON value whose type is one the sync
// reads, and the bundle made of them valid JSON.
func FuzzBundlePage(f *testing.F) {
	f.Add(`{"resourceType":"Bundle","type":"history","meta":{"lastUpdated":"2026-11-20T10:00:00Z"},"entry":[` +
		`{"fullUrl":"http://x/fhir/Practitioner/p1","resource":{"resourceType":"Practitioner","id":"p1","active":false},` +
		`"request":{"method":"PUT","url":"Practitioner/p1"},"response":{"lastModified":"2026-11-20T09:00:00.123+00:00"}},` +
		`{"request":{"method":"DELETE","url":"Practitioner/p2/_history/3"},"response":{"lastModified":"2026-11-20T09:01:00Z"}}]}`) // a history page: an update, a delete
	f.Add(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"a"},{"relation":"next","url":"/fhir?_getpages=x&_page=2"}],` +
		`"entry":[{"resource":{"resourceType":"PractitionerRole","id":"r1","practitioner":{"reference":"Practitioner/p1"}}},` +
		`{"resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}}]}`) // a search page with a next link and an outcome
	f.Add(`{"entry":null,"resourceType":"Bundle","timestamp":"2026-11-20T10:00:00Z"}`)                                // an empty page, resourceType last
	f.Add(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Practitioner","id":"p1","active":"no"}},` + // wrong types
		`{"resource":[1]},{"resource":"Practitioner/p1"},{"request":{"method":"DELETE","url":"Nope/1"}},{"fullUrl":7}]}`)
	f.Add(`{"resourceType":"OperationOutcome","issue":[]}`)                   // not a bundle
	f.Add(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"L`) // truncated
	f.Add(`{"resourceType":"Bundle","link":{"relation":"next"}}`)             // link of the wrong shape
	f.Add(`{"resourceType":"Bundle"} {}`)                                     // trailing data
	f.Fuzz(func(t *testing.T, in string) {
		spool := &memSpool{}
		fe := &fetcher{spool: spool, changes: map[string]*change{}}
		last := 0
		page, err := readBundlePage(context.Background(), strings.NewReader(in), func(line int, e *historyEntry) error {
			if line != last+1 {
				t.Errorf("entry %d after %d", line, last)
			}
			last = line
			return fe.add(e, false)
		})
		if err != nil {
			if page != nil {
				t.Errorf("a page and an error: %+v, %v", page, err)
			}
			return
		}
		if !strings.Contains(in, "Bundle") {
			t.Errorf("accepted a page that never says Bundle: %q", in)
		}
		var items []*change
		for _, c := range fe.changes {
			if c.typ != "Location" && c.typ != "Organization" && c.typ != "Practitioner" && c.typ != "PractitionerRole" {
				t.Errorf("kept a change of type %q", c.typ)
			}
			if c.deleted {
				continue
			}
			b := make([]byte, c.n)
			if _, err := spool.ReadAt(b, c.off); err != nil || !json.Valid(b) {
				t.Errorf("spooled %q (%v), not JSON", b, err)
			}
			items = append(items, c)
		}
		all, err := io.ReadAll(&bundleReader{spool: spool, items: items})
		if err != nil || !json.Valid(all) {
			t.Errorf("the bundle made of the changes is not JSON (%v): %s", err, all)
		}
		_ = page.time.Before(time.Now())
	})
}

// memSpool is a spool in memory.
type memSpool struct{ bytes.Buffer }

func (m *memSpool) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(m.Bytes()).ReadAt(p, off)
}
