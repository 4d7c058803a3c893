package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mhero-health/mhero"
)

// The resource types an mCSD sync reads, in the order it asks for them.
var mcsdTypes = []string{"Location", "Organization", "Practitioner", "PractitionerRole"}

// historyEntry is one entry of a history or search bundle, as the sync reads it.
type historyEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
	Response struct {
		LastModified string `json:"lastModified"`
	} `json:"response"`
}

// bundlePage is what a page of a bundle says about itself.
type bundlePage struct {
	next string    // link[relation=next], as written
	time time.Time // Bundle.timestamp, else meta.lastUpdated; zero when neither
}

// readBundlePage walks a history or search Bundle's tokens and calls fn for each entry,
// one at a time, as the import reads bundles: no single value may exceed maxFHIREntry
// bytes, so memory stays bounded whatever the page holds.
func readBundlePage(ctx context.Context, r io.Reader, fn func(line int, e *historyEntry) error) (*bundlePage, error) {
	lim := &limitedReader{r: r, max: maxFHIREntry}
	dec := json.NewDecoder(lim)
	if err := expectDelim(dec, '{', 0); err != nil {
		return nil, err
	}
	page := &bundlePage{}
	var lastUpdated time.Time
	isBundle := false
	for dec.More() {
		lim.reset()
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err, 0)
		}
		key, _ := tok.(string)
		lim.reset()
		switch key {
		case "resourceType":
			var rt string
			if err := dec.Decode(&rt); err != nil {
				return nil, jsonError(err, 0)
			}
			if rt != "Bundle" {
				return nil, mhero.Errorf(mhero.EINVALID, "The FHIR server answered a %s, not a Bundle.", truncate(rt, 40))
			}
			isBundle = true
		case "timestamp":
			var ts string
			if err := dec.Decode(&ts); err != nil {
				return nil, jsonError(err, 0)
			}
			page.time = parseInstant(ts)
		case "meta":
			var m struct {
				LastUpdated string `json:"lastUpdated"`
			}
			if err := dec.Decode(&m); err != nil {
				return nil, jsonError(err, 0)
			}
			lastUpdated = parseInstant(m.LastUpdated)
		case "link":
			var links []struct {
				Relation string `json:"relation"`
				URL      string `json:"url"`
			}
			if err := dec.Decode(&links); err != nil {
				return nil, jsonError(err, 0)
			}
			for _, l := range links {
				if l.Relation == "next" {
					page.next = strings.TrimSpace(l.URL)
				}
			}
		case "entry":
			if err := readPageEntries(ctx, dec, lim, fn); err != nil {
				return nil, err
			}
		default:
			if err := skipValue(dec); err != nil {
				return nil, jsonError(err, 0)
			}
		}
	}
	if err := expectDelim(dec, '}', 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, mhero.Errorf(mhero.EINVALID, "The FHIR server's bundle has data after its closing brace.")
	}
	if !isBundle {
		return nil, mhero.Errorf(mhero.EINVALID, "The FHIR server's answer has no resourceType: not a Bundle.")
	}
	if page.time.IsZero() {
		page.time = lastUpdated
	}
	return page, nil
}

func readPageEntries(ctx context.Context, dec *json.Decoder, lim *limitedReader, fn func(int, *historyEntry) error) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err, 0)
	}
	if tok == nil {
		return nil // "entry": null, an empty page
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return mhero.Errorf(mhero.EINVALID, "The FHIR server's Bundle.entry is not a list.")
	}
	for line := 1; dec.More(); line++ {
		if line%256 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		lim.reset()
		var e historyEntry
		if err := dec.Decode(&e); err != nil {
			return jsonError(err, line)
		}
		if err := fn(line, &e); err != nil {
			return err
		}
	}
	return expectDelim(dec, ']', 0)
}

// parseInstant reads a FHIR instant or dateTime with a time zone; anything else is zero.
func parseInstant(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}
	}
	return t
}

// fhirInstant writes t as the FHIR search parameters take it.
func fhirInstant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// change is the newest version of one changed resource: its JSON is in the spool file.
type change struct {
	typ, id      string
	deleted      bool      // request.method DELETE
	inactive     bool      // a Practitioner with active=false
	fetched      bool      // unchanged, fetched to complete a changed role
	at           time.Time // the version's time; zero when the server gave none
	seq          int       // order read
	off, n       int64     // the resource in the spool
	practitioner string    // a role's practitioner id
}

// resourceHead is what the sync reads of a resource before the import reads the rest.
type resourceHead struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
}

type resourceDetail struct {
	Active *bool `json:"active"`
	Meta   struct {
		LastUpdated string `json:"lastUpdated"`
	} `json:"meta"`
	Practitioner *fhirRef `json:"practitioner"`
}

// fetcher reads a sync's changes into a spool file, keeping the newest version of each.
type fetcher struct {
	sy         *Syncer
	run        *SyncRun
	spool      spool
	size       int64
	changes    map[string]*change
	seq        int
	serverTime time.Time // the earliest time the server gave for a type's first page
}

// spool is where fetched resources wait for the import: a temporary file (a first sync
// reads the whole registry).
type spool interface {
	io.Writer
	io.ReaderAt
}

func (sy *Syncer) newFetcher(run *SyncRun) (*fetcher, error) {
	f, err := os.CreateTemp("", "mhero-mcsd-*.json")
	if err != nil {
		return nil, err
	}
	return &fetcher{sy: sy, run: run, spool: f, changes: map[string]*change{}}, nil
}

func (f *fetcher) close() {
	if file, ok := f.spool.(*os.File); ok {
		_ = file.Close()
		_ = os.Remove(file.Name())
	}
}

// add keeps an entry when it is the newest version seen of its resource.
func (f *fetcher) add(e *historyEntry, fetched bool) error {
	c := &change{fetched: fetched, at: parseInstant(e.Response.LastModified)}
	switch {
	case len(e.Resource) > 0 && string(e.Resource) != "null":
		var h resourceHead
		if json.Unmarshal(e.Resource, &h) != nil {
			h.ResourceType = "" // not an object: ignored below
		}
		var d resourceDetail
		_ = json.Unmarshal(e.Resource, &d) // wrong types are the import's to report
		c.typ, c.id = h.ResourceType, strings.TrimSpace(h.ID)
		c.inactive = c.typ == "Practitioner" && d.Active != nil && !*d.Active
		c.practitioner = d.Practitioner.id("Practitioner")
		if c.at.IsZero() {
			c.at = parseInstant(d.Meta.LastUpdated)
		}
	case strings.EqualFold(e.Request.Method, http.MethodDelete):
		c.deleted = true
		c.typ, c.id = refParts(e.Request.URL)
		if c.typ == "" {
			c.typ, c.id = refParts(e.FullURL)
		}
	}
	if !slices.Contains(mcsdTypes, c.typ) {
		return nil // an OperationOutcome, an included resource of another type, an empty entry
	}
	key := c.typ + "/" + c.id
	if c.id == "" {
		key += "#" + strconv.Itoa(f.seq) // kept apart, for the import to report
	}
	if old := f.changes[key]; old != nil && !c.at.After(old.at) {
		return nil // servers list the newest version first
	}
	if !c.deleted {
		n, err := f.spool.Write(e.Resource)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		c.off, c.n = f.size, int64(n)
		f.size += int64(n)
	}
	c.seq = f.seq
	f.seq++
	f.changes[key] = c
	return nil
}

// refParts reads "Practitioner/p1", "Practitioner/p1/_history/3" or a full URL.
func refParts(ref string) (typ, id string) {
	parts := strings.Split(strings.TrimSpace(ref), "/")
	for i := len(parts) - 2; i >= 0; i-- {
		if slices.Contains(mcsdTypes, parts[i]) && parts[i+1] != "" && parts[i+1] != "_history" {
			return parts[i], parts[i+1]
		}
	}
	return "", ""
}

// typeURL is where the changes of one type since the cursor are asked for.
func (sy *Syncer) typeURL(typ string, since *time.Time) string {
	q := url.Values{}
	path := sy.cfg.FHIRURL + "/" + typ
	switch {
	case since == nil:
	case sy.cfg.Mode == ModeLastUpdated:
		q.Set("_lastUpdated", "gt"+fhirInstant(*since))
	default:
		path += "/_history"
		q.Set("_since", fhirInstant(*since))
	}
	q.Set("_count", strconv.Itoa(sy.cfg.PageSize))
	return path + "?" + q.Encode()
}

// maxPages bounds the pages of one query, against a server whose next links never end.
const maxPages = 100_000

// fetchAll reads every page of a query. The first page of a type's changes gives the
// server's time for the cursor.
func (f *fetcher) fetchAll(ctx context.Context, u string, fetched bool) error {
	seen := map[string]bool{}
	for first := true; u != ""; first = false {
		if seen[u] || len(seen) >= maxPages {
			return mhero.Errorf(mhero.EINVALID, "The FHIR server's next links go round in circles (at %s).", truncate(u, 200))
		}
		seen[u] = true
		page, date, err := f.get(ctx, u, fetched)
		if err != nil {
			return err
		}
		f.run.Pages++
		if first && !fetched {
			t := page.time
			if t.IsZero() {
				t = date
			}
			if t.IsZero() {
				return mhero.Errorf(mhero.EINVALID, "The FHIR server gave no time (no Bundle.timestamp, meta.lastUpdated or Date header), so the next sync would not know where to start.")
			}
			if f.serverTime.IsZero() || t.Before(f.serverTime) {
				f.serverTime = t
			}
		}
		if u, err = f.sy.nextURL(u, page.next); err != nil {
			return err
		}
	}
	return nil
}

// get reads one page, spooling its entries.
func (f *fetcher) get(ctx context.Context, u string, fetched bool) (*bundlePage, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, f.sy.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if f.sy.cfg.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.sy.cfg.token)
	}
	resp, err := f.sy.hc.Do(req)
	if err != nil {
		return nil, time.Time{}, mhero.Errorf(mhero.EUNAVAILABLE, "The iHRIS FHIR server did not answer: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, time.Time{}, mhero.Errorf(mhero.EUNAVAILABLE, "The iHRIS FHIR server answered %d to GET %s: %s",
			resp.StatusCode, truncate(u, 200), truncate(strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " "), 200))
	}
	date, _ := http.ParseTime(resp.Header.Get("Date"))
	page, err := readBundlePage(ctx, resp.Body, func(_ int, e *historyEntry) error { return f.add(e, fetched) })
	var me *mhero.Error
	if errors.As(err, &me) {
		// Say which page: the sync's record shows only the message.
		return nil, time.Time{}, &mhero.Error{Code: me.Code, Message: "GET " + truncate(u, 200) + ": " + me.Message, Details: me.Details}
	} else if err != nil {
		return nil, time.Time{}, fmt.Errorf("GET %s: %w", truncate(u, 200), err)
	}
	return page, date, nil
}

// nextURL resolves a next link. Servers behind a proxy often write their own address in
// it; the request (and the token) goes to the configured server all the same.
func (sy *Syncer) nextURL(cur, next string) (string, error) {
	if next == "" {
		return "", nil
	}
	c, err := url.Parse(cur)
	if err != nil {
		return "", err
	}
	u, err := c.Parse(next)
	if err != nil {
		return "", mhero.Errorf(mhero.EINVALID, "The FHIR server's next link %q is not a URL.", truncate(next, 200))
	}
	if u.Scheme != sy.base.Scheme || u.Host != sy.base.Host {
		u.Scheme, u.Host, u.User = sy.base.Scheme, sy.base.Host, nil
	}
	return u.String(), nil
}

// fetch reads every type's changes since the run's cursor, then what changed roles need.
func (sy *Syncer) fetch(ctx context.Context, run *SyncRun) (*fetcher, error) {
	f, err := sy.newFetcher(run)
	if err != nil {
		return nil, err
	}
	for _, typ := range mcsdTypes {
		if err := f.fetchAll(ctx, sy.typeURL(typ, run.Since), false); err != nil {
			return f, err
		}
	}
	if run.Since != nil {
		return f, f.completeRoles(ctx)
	}
	return f, nil
}

// roleBatch is how many ids one completing request names.
const roleBatch = 50

// completeRoles fetches, for every practitioner whose roles changed, all its current roles
// (so that the import still picks its first active one) and the practitioner itself when
// it did not change (the import joins roles to practitioners in the same bundle).
func (f *fetcher) completeRoles(ctx context.Context) error {
	touched := map[string]bool{}
	for _, c := range f.changes {
		if c.typ == "PractitionerRole" && !c.deleted && !c.fetched && c.practitioner != "" {
			touched[c.practitioner] = true
		}
	}
	refs := func(ids []string) string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = "Practitioner/" + id
		}
		return strings.Join(out, ",")
	}
	if err := f.fetchBatches(ctx, "PractitionerRole", "practitioner", slices.Sorted(maps.Keys(touched)), refs); err != nil {
		return err
	}
	need := map[string]bool{}
	for _, c := range f.changes {
		if c.typ == "PractitionerRole" && !c.deleted && c.practitioner != "" && f.changes["Practitioner/"+c.practitioner] == nil {
			need[c.practitioner] = true
		}
	}
	return f.fetchBatches(ctx, "Practitioner", "_id", slices.Sorted(maps.Keys(need)), func(ids []string) string {
		return strings.Join(ids, ",")
	})
}

func (f *fetcher) fetchBatches(ctx context.Context, typ, param string, ids []string, value func([]string) string) error {
	for batch := range slices.Chunk(ids, roleBatch) {
		q := url.Values{}
		q.Set(param, value(batch))
		q.Set("_count", strconv.Itoa(f.sy.cfg.PageSize))
		if err := f.fetchAll(ctx, f.sy.cfg.FHIRURL+"/"+typ+"?"+q.Encode(), true); err != nil {
			return err
		}
	}
	return nil
}

// bundleReader presents the kept changes as one collection Bundle for the import,
// reading each resource from the spool as the import gets to it.
type bundleReader struct {
	spool          io.ReaderAt
	items          []*change
	i              int
	started, ended bool
	cur            io.Reader
}

func (b *bundleReader) Read(p []byte) (int, error) {
	for {
		if b.cur != nil {
			n, err := b.cur.Read(p)
			if err == io.EOF {
				b.cur, err = nil, nil
			}
			if n > 0 || err != nil {
				return n, err
			}
		}
		switch {
		case !b.started:
			b.started, b.cur = true, strings.NewReader(`{"resourceType":"Bundle","type":"collection","entry":[`)
		case b.i < len(b.items):
			c, sep := b.items[b.i], `{"resource":`
			if b.i > 0 {
				sep = `,{"resource":`
			}
			b.cur = io.MultiReader(strings.NewReader(sep), io.NewSectionReader(b.spool, c.off, c.n), strings.NewReader("}"))
			b.i++
		case !b.ended:
			b.ended, b.cur = true, strings.NewReader("]}")
		default:
			return 0, io.EOF
		}
	}
}
