// Package demo makes up a country's health workforce: a Liberia-like location tree,
// facilities, and workers with cadres, skills, languages and phone numbers, written in the
// registry's CSV import formats. `make run` seeds the default size; benchmarks use larger
// ones.
//
// Everything is synthetic and deterministic: the same Size (seed included) gives the same
// bytes on every machine (math/rand/v2's PCG, seeded explicitly; no global state, no
// map iteration, no clock). Names are random combinations from small lists of Liberian
// given names and surnames, phone numbers are valid Liberian mobile numbers (077/088)
// drawn without repetition, and no row describes a real person.
//
// The three files, in the order an import needs them:
//
//	locations:  code,name,parent_code
//	facilities: code,name,location_code,dhis2_uid,dhis2_code
//	workers:    ihris_id,name,phone,phone2,cadre,facility_code,skills,language,active,opted_out
//
// Workers are generated one row at a time from (seed, row number), so WriteWorkers runs
// in memory that does not grow with the number of workers, and the first n rows of a
// larger run equal a smaller run with the same tree.
package demo

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mhero-health/mhero"
)

// Country identity of the generated data.
const (
	CountryCode = "LR"      // ISO 3166-1 code, the region for national-format phone numbers
	CountryName = "Liberia" // the root location's name
	CallingCode = "231"     // E.164 country calling code
)

// Limits of a Size. MaxWorkers is set by the phone numbers available: two per worker (a
// primary and a possible second phone) out of the 20 million 077/088 numbers.
const (
	MinDepth      = 2
	MaxDepth      = 6
	MaxCounties   = 1000
	MaxDistricts  = 100 // per county
	MaxFacilities = 1_000_000
	MaxWorkers    = 10_000_000
	MaxLocations  = 2_000_000 // in the largest tree the other limits allow
)

// Size says how big a country to make up.
type Size struct {
	Counties           int   // first level below the country
	DistrictsPerCounty int   // average; each county has one more or one fewer, the total is exact
	Depth              int   // levels below the country, MinDepth..MaxDepth; facilities hang on the lowest
	Facilities         int   // exact
	Workers            int   // exact
	Seed               int64 // same seed, same bytes
}

// DefaultSize is the country `make run` seeds: 15 counties, 90 districts, 800 facilities
// and 10,000 workers.
func DefaultSize() Size {
	return Size{Counties: 15, DistrictsPerCounty: 6, Depth: 2, Facilities: 800, Workers: 10_000, Seed: 1}
}

// BenchSize is a country for benchmarks with the given number of workers: a five-level
// tree (country, counties, districts, clans, communities: about 1,100 communities) and
// one facility per 100 workers, at least 800 and at most 2,000.
func BenchSize(workers int) Size {
	return Size{Counties: 15, DistrictsPerCounty: 6, Depth: 4, Facilities: min(max(workers/100, 800), 2000),
		Workers: workers, Seed: 1}
}

// Validate reports every field out of range at once.
func (sz Size) Validate() error {
	var bad []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	check(sz.Counties >= 1 && sz.Counties <= MaxCounties, "counties must be 1 to %d, not %d", MaxCounties, sz.Counties)
	check(sz.DistrictsPerCounty >= 1 && sz.DistrictsPerCounty <= MaxDistricts,
		"districts per county must be 1 to %d, not %d", MaxDistricts, sz.DistrictsPerCounty)
	check(sz.Depth >= MinDepth && sz.Depth <= MaxDepth, "depth must be %d to %d, not %d", MinDepth, MaxDepth, sz.Depth)
	check(sz.Facilities >= 1 && sz.Facilities <= MaxFacilities,
		"facilities must be 1 to %d, not %d", MaxFacilities, sz.Facilities)
	check(sz.Workers >= 0 && sz.Workers <= MaxWorkers, "workers must be 0 to %d, not %d", MaxWorkers, sz.Workers)
	if len(bad) == 0 {
		n := maxLocations(sz)
		check(n <= MaxLocations, "the tree could have %d locations, more than %d: fewer counties, districts or levels",
			n, MaxLocations)
	}
	if len(bad) == 0 {
		return nil
	}
	return mhero.Errorf(mhero.EVALIDATION, "demo size: %s", strings.Join(bad, "; "))
}

// maxLocations is the most locations sz's tree can have, with every node at its most
// children.
func maxLocations(sz Size) int {
	n, width := 1+sz.Counties, sz.Counties*sz.DistrictsPerCounty // districts: exact
	for level := 2; level <= sz.Depth; level++ {
		n += width
		width *= maxBranching(level + 1)
	}
	return n
}

// Level is one level of the location tree.
type Level struct {
	Depth  int    // 0 for the country
	Name   string // "county"
	Plural string // "counties"
	Count  int
}

// Summary describes the country a Size makes, for `make run` to print.
type Summary struct {
	Country   string  // "LR"
	Name      string  // "Liberia"
	Levels    []Level // from the country down
	Locations int     // all levels together

	Facilities                        int
	Hospitals, HealthCenters, Clinics int

	Workers   int
	Cadres    []Cadre
	Skills    []Skill
	Languages []string
	Seed      int64
}

// String is one line: "LR (Liberia, seed 1): 1 country, 15 counties, 90 districts;
// 800 facilities (29 hospitals, ...); 10,000 workers".
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, seed %d): ", s.Country, s.Name, s.Seed)
	for i, l := range s.Levels {
		if i > 0 {
			b.WriteString(", ")
		}
		name := l.Plural
		if l.Count == 1 {
			name = l.Name
		}
		fmt.Fprintf(&b, "%s %s", thousands(l.Count), name)
	}
	fmt.Fprintf(&b, "; %s facilities (%s hospitals, %s health centers, %s clinics); %s workers",
		thousands(s.Facilities), thousands(s.Hospitals), thousands(s.HealthCenters), thousands(s.Clinics),
		thousands(s.Workers))
	return b.String()
}

// Country summarises the country sz makes without writing it. Of an invalid Size it
// returns only what the Size says (no levels); call Validate first.
func Country(sz Size) Summary {
	s := Summary{Country: CountryCode, Name: CountryName, Facilities: sz.Facilities, Workers: sz.Workers,
		Cadres: Cadres(), Skills: Skills(), Languages: []string{"en", "fr"}, Seed: sz.Seed}
	if sz.Validate() != nil {
		return s
	}
	t := build(sz)
	for d := 0; d <= sz.Depth; d++ {
		name, plural := levelName(d)
		s.Levels = append(s.Levels, Level{Depth: d, Name: name, Plural: plural})
	}
	for _, n := range t.nodes {
		s.Levels[n.level].Count++
	}
	s.Locations = len(t.nodes)
	for _, f := range t.facilities {
		switch f.kind {
		case hospital:
			s.Hospitals++
		case healthCenter:
			s.HealthCenters++
		default:
			s.Clinics++
		}
	}
	return s
}

// Cadre is a kind of health worker and its share of the workforce.
type Cadre struct {
	Code  string
	Name  string
	Share float64 // fraction of workers, the shares add up to 1
}

// cadres in the order the generator draws them; shares loosely follow Liberia's
// community health programme, where community health workers far outnumber the rest.
var cadres = [...]Cadre{
	{"chw", "Community health worker", 0.55},
	{"cha", "Community health assistant", 0.15},
	{"nurse", "Nurse", 0.12},
	{"midwife", "Midwife", 0.08},
	{"pa", "Physician assistant", 0.04},
	{"lab", "Laboratory technician", 0.025},
	{"pharm", "Pharmacist or dispenser", 0.02},
	{"doctor", "Medical doctor", 0.015},
}

// Cadres lists the cadres workers are drawn from.
func Cadres() []Cadre { return append([]Cadre(nil), cadres[:]...) }

// Skill is a training a worker may have; 0 to 3 per worker.
type Skill struct {
	Code string
	Name string
}

// skills in code order, the order a worker's skills are written in.
var skills = [...]Skill{
	{"ebola-ipc", "Ebola infection prevention and control"},
	{"epi", "Expanded programme on immunization"},
	{"fp", "Family planning"},
	{"imci", "Integrated management of childhood illness"},
	{"malaria-rdt", "Malaria rapid diagnostic testing"},
	{"mhpss", "Mental health and psychosocial support"},
}

// Skills lists the skills workers are drawn from.
func Skills() []Skill { return append([]Skill(nil), skills[:]...) }

// levelName names the levels of the tree, the country being level 0.
func levelName(depth int) (name, plural string) {
	switch depth {
	case 0:
		return "country", "countries"
	case 1:
		return "county", "counties"
	case 2:
		return "district", "districts"
	case 3:
		return "clan", "clans"
	case 4:
		return "community", "communities"
	case 5:
		return "settlement", "settlements"
	default:
		return "hamlet", "hamlets"
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// thousands writes 10000 as "10,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
