package demo

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
)

// Header lines of the registry's CSV import formats.
var (
	LocationHeader = []string{"code", "name", "parent_code"}
	FacilityHeader = []string{"code", "name", "location_code", "dhis2_uid", "dhis2_code"}
	WorkerHeader   = []string{"ihris_id", "name", "phone", "phone2", "cadre", "facility_code", "skills", "language",
		"active", "opted_out"}
)

// Independent random streams, so that changing one part of the generator does not
// reshuffle the others.
const (
	streamTree uint64 = iota + 0x6d6865726f // "mhero"
	streamWorkers
	streamPhones
)

type node struct {
	code, name string
	town       string // the place the node is named after, for its first facility
	parent     int32  // index in tree.nodes, -1 for the root
	level      int8
	county     int32 // position among the counties of the level-1 ancestor (itself at level 1), -1 for the root
	district   int32 // index of the level-2 ancestor, -1 above
}

type facilityKind uint8

const (
	clinic facilityKind = iota
	healthCenter
	hospital
	nKinds
)

var kindNames = [nKinds]string{"Clinic", "Health Center", "Hospital"}

type facility struct {
	code, name, uid, dhis2Code string
	loc                        int32 // index in tree.nodes, always at the lowest level
	kind                       facilityKind
}

// tree is the part of the country that is small (proportional to locations and
// facilities): built whole, then written out or used to place workers.
type tree struct {
	sz         Size
	nodes      []node // parents before children (depth first)
	facilities []facility
}

// build makes the location tree and the facilities of sz, which must be valid.
func build(sz Size) *tree {
	rng := rand.New(rand.NewPCG(uint64(sz.Seed), streamTree))
	t := &tree{sz: sz}
	t.nodes = append(t.nodes, node{code: CountryCode, name: CountryName, parent: -1, county: -1, district: -1})

	// Districts per county: DistrictsPerCounty on average, one more or one fewer here and
	// there, with the total exact.
	d := sz.DistrictsPerCounty
	perCounty := make([]int, sz.Counties)
	for i := range perCounty {
		perCounty[i] = d
	}
	if sz.Counties > 1 {
		for range sz.Counties {
			i, j := rng.IntN(sz.Counties), rng.IntN(sz.Counties)
			if i != j && perCounty[i] <= d && perCounty[j] >= d && perCounty[j] > 1 {
				perCounty[i]++
				perCounty[j]--
			}
		}
	}
	for c := range sz.Counties {
		name := fmt.Sprintf("County %d", c+1)
		if c < len(countyNames) {
			name = countyNames[c]
		}
		idx := int32(len(t.nodes))
		t.nodes = append(t.nodes, node{code: fmt.Sprintf("%s-%02d", CountryCode, c+1), name: name + " County",
			town: name, parent: 0, level: 1, county: int32(c), district: -1})
		t.children(rng, idx, perCounty[c])
	}
	t.placeFacilities(rng)
	return t
}

// children adds n children below nodes[p] and, depth first, their own children down to
// the lowest level.
func (t *tree) children(rng *rand.Rand, p int32, n int) {
	parent := t.nodes[p]
	level := parent.level + 1
	used := make(nameSet, n)
	for i := range n {
		town := used.pick(rng, "", level > 3) // clans and up are not named after a family
		name := town
		switch level {
		case 2:
			name += " District"
		case 3:
			name += " Clan"
		}
		idx := int32(len(t.nodes))
		district := parent.district
		if level == 2 {
			district = idx
		}
		t.nodes = append(t.nodes, node{code: fmt.Sprintf("%s-%02d", parent.code, i+1), name: name, town: town,
			parent: p, level: level, county: parent.county, district: district})
		if int(level) < t.sz.Depth {
			t.children(rng, idx, branching(rng, int(level)+1))
		}
	}
}

// branching is how many children a node gets at the given level, below districts:
// 3 to 5 clans per district, 2 to 4 communities per clan, 2 or 3 below that.
func branching(rng *rand.Rand, level int) int {
	switch level {
	case 3:
		return 3 + rng.IntN(3)
	case 4:
		return 2 + rng.IntN(3)
	default:
		return 2 + rng.IntN(2)
	}
}

// maxBranching is the most children branching gives at a level.
func maxBranching(level int) int {
	switch level {
	case 3:
		return 5
	case 4:
		return 4
	default:
		return 3
	}
}

// placeFacilities spreads the facilities over the lowest level: one per location while
// there are enough, the rest at random. Each county's first facility is a hospital, each
// district's first a health center; the others are mostly clinics.
func (t *tree) placeFacilities(rng *rand.Rand) {
	var lowest []int32
	for i, n := range t.nodes {
		if int(n.level) == t.sz.Depth {
			lowest = append(lowest, int32(i))
		}
	}
	count := make([]int, len(lowest))
	f := t.sz.Facilities
	if f >= len(lowest) {
		for i := range count {
			count[i] = 1
		}
		for range f - len(lowest) {
			count[rng.IntN(len(lowest))]++
		}
	} else {
		for _, i := range rng.Perm(len(lowest))[:f] {
			count[i] = 1
		}
	}

	t.facilities = make([]facility, 0, f)
	hasHospital := make(map[int32]bool, t.sz.Counties)
	hasHealthCenter := make(map[int32]bool)
	names := make(map[int32]nameSet) // facility names in use, per district
	uids := make(map[string]bool, f)
	for li, loc := range lowest {
		n := t.nodes[loc]
		if names[n.district] == nil {
			names[n.district] = make(nameSet)
		}
		used := names[n.district]
		for k := range count[li] {
			kind := clinic
			switch r := rng.IntN(100); {
			case !hasHospital[n.county]:
				kind = hospital
			case !hasHealthCenter[n.district]:
				kind = healthCenter
			case r < 2:
				kind = hospital
			case r < 12:
				kind = healthCenter
			}
			hasHospital[n.county] = hasHospital[n.county] || kind == hospital
			hasHealthCenter[n.district] = hasHealthCenter[n.district] || kind == healthCenter

			// The first facility of a place is named after it, the others after
			// villages nearby; no two facilities of a district share a name.
			name := n.town + " " + kindNames[kind]
			if k > 0 || !used.add(name) {
				name = used.pick(rng, " "+kindNames[kind], true)
			}
			seq := len(t.facilities) + 1
			t.facilities = append(t.facilities, facility{
				code:      fmt.Sprintf("FAC-%04d", seq),
				name:      name,
				uid:       dhis2UID(rng, uids),
				dhis2Code: fmt.Sprintf("OU_%d", 100000+seq),
				loc:       loc,
				kind:      kind,
			})
		}
	}
}

const (
	letters      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	alphanumeric = letters + "0123456789"
)

// dhis2UID makes an identifier shaped like DHIS2's: a letter then ten letters or digits,
// never one already in used.
func dhis2UID(rng *rand.Rand, used map[string]bool) string {
	var b [11]byte
	for {
		b[0] = letters[rng.IntN(len(letters))]
		for i := 1; i < len(b); i++ {
			b[i] = alphanumeric[rng.IntN(len(alphanumeric))]
		}
		if s := string(b[:]); !used[s] {
			used[s] = true
			return s
		}
	}
}

// WriteLocations writes the location tree as CSV (code,name,parent_code), parents
// before children, the country first with an empty parent_code.
func WriteLocations(w io.Writer, sz Size) error {
	if err := sz.Validate(); err != nil {
		return err
	}
	t := build(sz)
	return writeCSV(w, LocationHeader, func(cw *csv.Writer) error {
		rec := make([]string, 3)
		for _, n := range t.nodes {
			rec[0], rec[1], rec[2] = n.code, n.name, ""
			if n.parent >= 0 {
				rec[2] = t.nodes[n.parent].code
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteFacilities writes the facilities as CSV (code,name,location_code,dhis2_uid,
// dhis2_code), each at a location of the lowest level.
func WriteFacilities(w io.Writer, sz Size) error {
	if err := sz.Validate(); err != nil {
		return err
	}
	t := build(sz)
	return writeCSV(w, FacilityHeader, func(cw *csv.Writer) error {
		rec := make([]string, 5)
		for _, f := range t.facilities {
			rec[0], rec[1], rec[2], rec[3], rec[4] = f.code, f.name, t.nodes[f.loc].code, f.uid, f.dhis2Code
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeCSV writes a header and the rows body writes through one buffered CSV writer.
func writeCSV(w io.Writer, header []string, body func(*csv.Writer) error) error {
	cw := csv.NewWriter(bufio.NewWriterSize(w, 64<<10))
	if err := cw.Write(header); err != nil {
		return err
	}
	if err := body(cw); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}
