package demo_test

import (
	"bytes"
	"encoding/csv"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/demo"
)

// generate returns the three files of sz.
func generate(t testing.TB, sz demo.Size) (locations, facilities, workers []byte) {
	t.Helper()
	var l, f, w bytes.Buffer
	if err := demo.WriteLocations(&l, sz); err != nil {
		t.Fatal(err)
	}
	if err := demo.WriteFacilities(&f, sz); err != nil {
		t.Fatal(err)
	}
	if err := demo.WriteWorkers(&w, sz); err != nil {
		t.Fatal(err)
	}
	return l.Bytes(), f.Bytes(), w.Bytes()
}

// rows parses CSV, checks the header and that every row has its width, and returns the
// rows without the header.
func rows(t testing.TB, data []byte, header []string) [][]string {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(data))
	all, err := r.ReadAll() // also checks every row has as many fields as the header
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 || !slices.Equal(all[0], header) {
		t.Fatalf("header = %q, want %q", all[0], header)
	}
	return all[1:]
}

// country is the parsed output of a Size, indexed for checks.
type country struct {
	locations, facilities, workers [][]string
	level                          map[string]int      // location code -> depth (country 0)
	facilityLoc                    map[string]string   // facility code -> location code
	children                       map[string][]string // location code -> children codes
}

func parse(t testing.TB, sz demo.Size) *country {
	t.Helper()
	l, f, w := generate(t, sz)
	c := &country{
		locations:   rows(t, l, demo.LocationHeader),
		facilities:  rows(t, f, demo.FacilityHeader),
		workers:     rows(t, w, demo.WorkerHeader),
		level:       map[string]int{},
		facilityLoc: map[string]string{},
		children:    map[string][]string{},
	}
	for i, r := range c.locations {
		code, parent := r[0], r[2]
		if _, dup := c.level[code]; dup {
			t.Fatalf("location %s twice", code)
		}
		if r[1] == "" {
			t.Errorf("location %s has no name", code)
		}
		if i == 0 {
			if parent != "" || code != demo.CountryCode {
				t.Fatalf("first location = %q, want the country with no parent", r)
			}
			c.level[code] = 0
			continue
		}
		pl, ok := c.level[parent]
		if !ok {
			t.Fatalf("location %s comes before its parent %q", code, parent)
		}
		c.level[code] = pl + 1
		c.children[parent] = append(c.children[parent], code)
	}
	for _, r := range c.facilities {
		if _, dup := c.facilityLoc[r[0]]; dup {
			t.Fatalf("facility %s twice", r[0])
		}
		c.facilityLoc[r[0]] = r[2]
	}
	return c
}

func (c *country) perLevel() []int {
	var n []int
	for _, l := range c.level {
		for len(n) <= l {
			n = append(n, 0)
		}
		n[l]++
	}
	return n
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	sz := demo.DefaultSize()
	l1, f1, w1 := generate(t, sz)
	l2, f2, w2 := generate(t, sz)
	if !bytes.Equal(l1, l2) || !bytes.Equal(f1, f2) || !bytes.Equal(w1, w2) {
		t.Fatal("same seed, different output")
	}
	sz.Seed++
	l3, f3, w3 := generate(t, sz)
	if bytes.Equal(l1, l3) || bytes.Equal(f1, f3) || bytes.Equal(w1, w3) {
		t.Fatal("different seed, same output")
	}
	// The codes, and so the shape a user sees first, stay put.
	if !bytes.HasPrefix(l3, []byte("code,name,parent_code\nLR,Liberia,\nLR-01,Bomi County,LR\n")) {
		t.Errorf("locations start %q", l3[:60])
	}
}

func TestDefaultSize(t *testing.T) {
	t.Parallel()
	sz := demo.DefaultSize()
	if err := sz.Validate(); err != nil {
		t.Fatal(err)
	}
	c := parse(t, sz)
	if got, want := c.perLevel(), []int{1, 15, 90}; !slices.Equal(got, want) {
		t.Errorf("locations per level = %v, want %v", got, want)
	}
	for _, county := range c.children[demo.CountryCode] {
		if n := len(c.children[county]); n < 5 || n > 7 {
			t.Errorf("county %s has %d districts, want 5 to 7", county, n)
		}
	}
	if len(c.facilities) != 800 || len(c.workers) != 10_000 {
		t.Errorf("%d facilities and %d workers, want 800 and 10,000", len(c.facilities), len(c.workers))
	}
	checkFacilities(t, c, sz)
	checkWorkers(t, c, 2000)

	s := demo.Country(sz)
	var counts []int
	for _, l := range s.Levels {
		counts = append(counts, l.Count)
	}
	if !slices.Equal(counts, c.perLevel()) || s.Locations != len(c.locations) || s.Facilities != 800 ||
		s.Workers != 10_000 || s.Hospitals+s.HealthCenters+s.Clinics != 800 {
		t.Errorf("Country = %+v, does not match the files", s)
	}
	if s.Hospitals < 15 || s.Hospitals > 60 || s.HealthCenters < 90 || s.Clinics < 500 {
		t.Errorf("facility kinds: %d hospitals, %d health centers, %d clinics", s.Hospitals, s.HealthCenters, s.Clinics)
	}
	t.Log(s)
}

func TestBenchSize(t *testing.T) {
	t.Parallel()
	sz := demo.BenchSize(20_000)
	if sz.Depth != 4 || sz.Workers != 20_000 {
		t.Fatalf("BenchSize = %+v", sz)
	}
	c := parse(t, sz)
	levels := c.perLevel()
	if len(levels) != 5 || levels[1] != 15 || levels[2] != 90 {
		t.Fatalf("locations per level = %v, want 5 levels, 15 counties, 90 districts", levels)
	}
	if levels[4] < 800 || levels[4] > 2000 {
		t.Errorf("%d locations at the lowest level", levels[4])
	}
	if len(c.facilities) != 800 || len(c.workers) != 20_000 {
		t.Errorf("%d facilities, %d workers", len(c.facilities), len(c.workers))
	}
	checkFacilities(t, c, sz)
	checkWorkers(t, c, 500)
	if f := demo.BenchSize(200_000).Facilities; f != 2000 {
		t.Errorf("BenchSize(200,000) has %d facilities, want 2,000", f)
	}
}

// TestShapes runs sizes at the edges: deepest tree, few facilities, many facilities in one
// district (names must still differ), no workers.
func TestShapes(t *testing.T) {
	t.Parallel()
	for _, sz := range []demo.Size{
		{Counties: 3, DistrictsPerCounty: 2, Depth: demo.MaxDepth, Facilities: 50, Workers: 300, Seed: 7},
		{Counties: 20, DistrictsPerCounty: 1, Depth: 3, Facilities: 5, Workers: 100, Seed: 8},
		{Counties: 1, DistrictsPerCounty: 1, Depth: 2, Facilities: 3000, Workers: 100, Seed: 9},
		{Counties: 2, DistrictsPerCounty: 3, Depth: 2, Facilities: 1, Workers: 0, Seed: 10},
	} {
		c := parse(t, sz)
		levels := c.perLevel()
		if len(levels) != sz.Depth+1 || levels[1] != sz.Counties || levels[2] != sz.Counties*sz.DistrictsPerCounty {
			t.Errorf("%+v: locations per level = %v", sz, levels)
		}
		if len(c.facilities) != sz.Facilities || len(c.workers) != sz.Workers {
			t.Errorf("%+v: %d facilities, %d workers", sz, len(c.facilities), len(c.workers))
		}
		checkFacilities(t, c, sz)
		checkWorkers(t, c, 100)
	}
}

var uidRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{10}$`)

func checkFacilities(t *testing.T, c *country, sz demo.Size) {
	t.Helper()
	uids, dhis2Codes := map[string]bool{}, map[string]bool{}
	names := map[string]bool{} // district + name
	for _, r := range c.facilities {
		code, name, loc, uid, dcode := r[0], r[1], r[2], r[3], r[4]
		if !regexp.MustCompile(`^FAC-\d{4,}$`).MatchString(code) {
			t.Errorf("facility code %q", code)
		}
		l, ok := c.level[loc]
		if !ok {
			t.Errorf("facility %s at unknown location %q", code, loc)
		} else if l != sz.Depth {
			t.Errorf("facility %s at %s, level %d, want the lowest level %d", code, loc, l, sz.Depth)
		}
		if !uidRE.MatchString(uid) || uids[uid] {
			t.Errorf("facility %s: DHIS2 uid %q malformed or repeated", code, uid)
		}
		if dcode == "" || dhis2Codes[dcode] {
			t.Errorf("facility %s: DHIS2 code %q empty or repeated", code, dcode)
		}
		uids[uid], dhis2Codes[dcode] = true, true
		district := strings.Join(strings.Split(loc, "-")[:3], "-")
		if names[district+"/"+name] {
			t.Errorf("two facilities named %q in %s", name, district)
		}
		names[district+"/"+name] = true
	}
}

var (
	ihrisRE = regexp.MustCompile(`^ihris-\d{6,}$`)
	phoneRE = regexp.MustCompile(`^(0|\+231)(77|88)\d{7}$`)
)

// checkWorkers checks every worker row; every sample-th phone is also read with the
// registry's parser (the slow part), and every second phone.
func checkWorkers(t *testing.T, c *country, sample int) {
	t.Helper()
	every := max(1, len(c.workers)/sample)
	cadres := map[string]bool{}
	for _, cd := range demo.Cadres() {
		cadres[cd.Code] = true
	}
	var skillCodes []string
	for _, s := range demo.Skills() {
		skillCodes = append(skillCodes, s.Code)
	}
	ids, phones := map[string]bool{}, map[string]string{}
	addPhone := func(i int, p string, parse bool) {
		if !phoneRE.MatchString(p) {
			t.Errorf("worker %d: phone %q is not a Liberian mobile", i, p)
			return
		}
		nsn := p[len(p)-9:]
		if other, dup := phones[nsn]; dup {
			t.Errorf("worker %d: phone %s already worker %s's", i, p, other)
		}
		phones[nsn] = c.workers[i][0]
		if parse {
			m, err := registry.ParseMSISDN(p, demo.CountryCode)
			if err != nil {
				t.Errorf("worker %d: %v", i, err)
			} else if m != mhero.MSISDN(demo.CallingCode+nsn) {
				t.Errorf("worker %d: %s parsed as %s", i, p, m)
			}
		}
	}
	for i, r := range c.workers {
		id, name, phone, phone2, cadre, fac, skills, lang, active, optedOut := r[0], r[1], r[2], r[3], r[4], r[5],
			r[6], r[7], r[8], r[9]
		if !ihrisRE.MatchString(id) || ids[id] {
			t.Errorf("worker %d: iHRIS id %q malformed or repeated", i, id)
		}
		ids[id] = true
		if len(strings.Fields(name)) < 2 {
			t.Errorf("worker %d: name %q", i, name)
		}
		addPhone(i, phone, i%every == 0)
		if phone2 != "" {
			addPhone(i, phone2, true)
		}
		if !cadres[cadre] {
			t.Errorf("worker %d: cadre %q", i, cadre)
		}
		if _, ok := c.facilityLoc[fac]; !ok {
			t.Errorf("worker %d: unknown facility %q", i, fac)
		}
		if skills != "" {
			s := strings.Split(skills, ";")
			if len(s) > 3 || !slices.IsSorted(s) || len(slices.Compact(slices.Clone(s))) != len(s) {
				t.Errorf("worker %d: skills %q", i, skills)
			}
			for _, x := range s {
				if !slices.Contains(skillCodes, x) {
					t.Errorf("worker %d: unknown skill %q", i, x)
				}
			}
		}
		if lang != "en" && lang != "fr" {
			t.Errorf("worker %d: language %q", i, lang)
		}
		if (active != "true" && active != "false") || (optedOut != "true" && optedOut != "false") {
			t.Errorf("worker %d: active %q, opted_out %q", i, active, optedOut)
		}
	}
}

// TestProportions checks the default country looks like a health workforce.
func TestProportions(t *testing.T) {
	t.Parallel()
	c := parse(t, demo.DefaultSize())
	n := float64(len(c.workers))
	facilityName := map[string]string{}
	for _, r := range c.facilities {
		facilityName[r[0]] = r[1]
	}
	count := map[string]float64{}
	for _, r := range c.workers {
		count["cadre:"+r[4]]++
		count["skills:"+itoa(len(strings.Split(r[6], ";"))*btoi(r[6] != ""))]++
		count["lang:"+r[7]]++
		count["active:"+r[8]]++
		count["opted_out:"+r[9]]++
		count["phone2:"+itoa(btoi(r[3] != ""))]++
		count["intl:"+itoa(btoi(strings.HasPrefix(r[2], "+")))]++
		count["prefix:"+strings.TrimPrefix(strings.TrimPrefix(r[2], "+231"), "0")[:2]]++
		if r[4] == "doctor" && strings.HasSuffix(facilityName[r[5]], " Clinic") {
			t.Errorf("doctor %s works at a clinic", r[0])
		}
	}
	within := func(key string, lo, hi float64) {
		t.Helper()
		if p := count[key] / n; p < lo || p > hi {
			t.Errorf("%s: %.2f%%, want %.1f%% to %.1f%%", key, 100*p, 100*lo, 100*hi)
		}
	}
	for _, cd := range demo.Cadres() {
		within("cadre:"+cd.Code, cd.Share*0.8, cd.Share*1.2)
	}
	within("cadre:chw", 0.5, 0.6) // the majority
	within("skills:0", 0.15, 0.25)
	within("skills:3", 0.10, 0.20)
	within("lang:en", 0.80, 0.95)
	within("active:false", 0.005, 0.016)
	within("opted_out:true", 0.002, 0.009)
	within("phone2:1", 0.013, 0.028)
	within("intl:1", 0.30, 0.40)
	within("prefix:77", 0.45, 0.55)
}

func itoa(n int) string { return string(rune('0' + n)) }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestPrefix: a worker row depends only on the tree, the seed and its position, so a
// smaller run is the beginning of a bigger one.
func TestPrefix(t *testing.T) {
	t.Parallel()
	small, big := demo.DefaultSize(), demo.DefaultSize()
	small.Workers, big.Workers = 1000, 3000
	var a, b bytes.Buffer
	if err := demo.WriteWorkers(&a, small); err != nil {
		t.Fatal(err)
	}
	if err := demo.WriteWorkers(&b, big); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b.Bytes(), a.Bytes()) {
		t.Error("1,000 workers are not the first rows of 3,000")
	}
}

// TestUniquePhones200k checks uniqueness over every phone of a benchmark-sized run, cheaply (no
// parsing): the 2% second phones are where collisions would hide.
func TestUniquePhones200k(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 workers")
	}
	t.Parallel()
	var buf bytes.Buffer
	if err := demo.WriteWorkers(&buf, demo.BenchSize(200_000)); err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(&buf)
	r.ReuseRecord = true
	seen := make(map[string]struct{}, 210_000)
	n := 0
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if n++; n == 1 {
			continue
		}
		for _, p := range rec[2:4] {
			if p == "" {
				continue
			}
			nsn := p[len(p)-9:]
			if _, dup := seen[nsn]; dup {
				t.Fatalf("row %d: phone %s repeated", n, p)
			}
			seen[nsn] = struct{}{}
		}
	}
	if n != 200_001 {
		t.Fatalf("%d lines", n)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	bad := demo.Size{Counties: 0, DistrictsPerCounty: 0, Depth: 1, Facilities: 0, Workers: -1}
	err := bad.Validate()
	if mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Fatalf("Validate = %v, want a validation error", err)
	}
	for _, field := range []string{"counties", "districts", "depth", "facilities", "workers"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("%v does not mention %s", err, field)
		}
	}
	for _, write := range []func(io.Writer, demo.Size) error{demo.WriteLocations, demo.WriteFacilities, demo.WriteWorkers} {
		var buf bytes.Buffer
		if err := write(&buf, bad); err == nil || buf.Len() != 0 {
			t.Errorf("wrote %d bytes of an invalid size, err %v", buf.Len(), err)
		}
	}
	if s := demo.Country(bad); len(s.Levels) != 0 {
		t.Errorf("Country of an invalid size = %+v", s)
	}
	if err := demo.BenchSize(demo.MaxWorkers + 1).Validate(); err == nil {
		t.Error("more workers than phone numbers allowed")
	}
	huge := demo.Size{Counties: demo.MaxCounties, DistrictsPerCounty: demo.MaxDistricts, Depth: demo.MaxDepth,
		Facilities: 1, Workers: 1}
	if err := huge.Validate(); err == nil || !strings.Contains(err.Error(), "locations") {
		t.Errorf("Validate of a tree of billions of locations = %v", err)
	}
	for _, sz := range []demo.Size{demo.DefaultSize(), demo.BenchSize(200_000),
		{Counties: 15, DistrictsPerCounty: 20, Depth: demo.MaxDepth, Facilities: 1, Workers: 1}} {
		if err := sz.Validate(); err != nil {
			t.Errorf("%+v: %v", sz, err)
		}
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	if err := demo.WriteWorkers(&failWriter{n: 100_000}, demo.DefaultSize()); err != io.ErrShortWrite {
		t.Errorf("WriteWorkers to a failing writer = %v", err)
	}
}

// TestWorkerMemory: generating workers allocates one string per row and nothing that
// lives on; allocations grow with rows only by that.
func TestWorkerMemory(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	sz := demo.DefaultSize()
	allocs := func(workers int) float64 {
		sz.Workers = workers
		return testing.AllocsPerRun(2, func() {
			if err := demo.WriteWorkers(io.Discard, sz); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, big := allocs(10_000), allocs(50_000)
	if perRow := (big - small) / 40_000; perRow > 1.05 {
		t.Errorf("%.2f allocations per worker row, want 1", perRow)
	}
}

func BenchmarkWriteWorkers(b *testing.B) {
	sz := demo.BenchSize(200_000)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := demo.WriteWorkers(io.Discard, sz); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*sz.Workers)/b.Elapsed().Seconds(), "rows/s")
}
