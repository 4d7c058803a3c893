package demo

import (
	"encoding/csv"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
)

// Proportions of workers (per thousand or per cent, as named) and number-space sizes.
const (
	secondPhonePerMille = 20  // ~2% have a second phone
	inactivePerMille    = 10  // ~1% inactive
	optedOutPerMille    = 5   // ~0.5% opted out
	internationalPct    = 35  // phones written +231..., the rest 0...
	frenchPctBorder     = 25  // workers preferring French in counties bordering Guinea and Côte d'Ivoire
	frenchPctElsewhere  = 6   // ... and elsewhere
	middleInitialPct    = 20  // "Musu K. Flomo"
	maxSkills           = 3   // per worker
	phoneSpace          = 2e7 // 077xxxxxxx and 088xxxxxxx
	phoneBlock          = 1e7 // numbers per prefix
)

// skillCount is the cumulative chance of a worker having 0, 1, 2 or 3 skills.
var skillCount = [maxSkills + 1]float64{0.20, 0.55, 0.85, 1}

// skillAffinity weighs, per cadre (in cadres order), how likely each skill (in skills
// order: ebola-ipc, epi, fp, imci, malaria-rdt, mhpss) is among a worker's skills.
var skillAffinity = [len(cadres)][len(skills)]float64{
	{3, 1, 2, 3, 5, 1}, // chw
	{3, 2, 3, 4, 4, 1}, // cha
	{4, 4, 2, 3, 2, 1}, // nurse
	{3, 3, 5, 2, 1, 1}, // midwife
	{3, 2, 2, 4, 3, 1}, // pa
	{5, 0, 0, 0, 4, 0}, // lab
	{2, 1, 2, 0, 3, 0}, // pharm
	{4, 1, 1, 3, 2, 2}, // doctor
}

// facilityAffinity weighs, per cadre, how likely one facility of each kind (clinic,
// health center, hospital) is a worker's: doctors work in hospitals, community health
// assistants are attached to clinics and health centers.
var facilityAffinity = [len(cadres)][nKinds]float64{
	{2, 3, 1},     // chw
	{2, 2, 0},     // cha
	{1, 3, 12},    // nurse
	{1, 3, 8},     // midwife
	{0.6, 2, 4},   // pa
	{0.15, 2, 8},  // lab
	{0.2, 1.5, 8}, // pharm
	{0, 1, 20},    // doctor
}

// borderCounties prefer French more often than the rest (indices into countyNames:
// Grand Gedeh, Lofa, Nimba).
var borderCounties = map[int]bool{5: true, 7: true, 11: true}

const initials = "ABCDEFGHJKLMNOPRSTVWY"

// WriteWorkers writes sz.Workers workers as CSV (ihris_id,name,phone,phone2,cadre,
// facility_code,skills,language,active,opted_out). Rows are generated and written one at
// a time: memory does not grow with the number of workers.
func WriteWorkers(w io.Writer, sz Size) error {
	if err := sz.Validate(); err != nil {
		return err
	}
	g := newWorkerGen(build(sz))
	return writeCSV(w, WorkerHeader, func(cw *csv.Writer) error {
		for i := range sz.Workers {
			if err := cw.Write(g.row(i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// workerGen makes worker rows. Row i depends only on the tree and (seed, i).
type workerGen struct {
	t      *tree
	seed   uint64
	pcg    *rand.PCG
	rng    *rand.Rand
	phones phonePerm
	cadre  [len(cadres)]float64   // cumulative shares
	place  [len(cadres)][]float64 // per cadre, cumulative weights over t.facilities
	french []bool                 // per facility: in a border county
	buf    []byte
	rec    [10]string
}

func newWorkerGen(t *tree) *workerGen {
	pcg := rand.NewPCG(0, 0)
	g := &workerGen{t: t, seed: splitmix(uint64(t.sz.Seed) ^ streamWorkers), pcg: pcg, rng: rand.New(pcg),
		phones: newPhonePerm(t.sz.Seed), buf: make([]byte, 0, 256)}
	sum := 0.0
	for c := range cadres {
		sum += cadres[c].Share
		g.cadre[c] = sum
	}
	g.cadre[len(cadres)-1] = 1 // whatever rounding did
	g.french = make([]bool, len(t.facilities))
	for i, f := range t.facilities {
		g.french[i] = borderCounties[int(t.nodes[f.loc].county)]
	}
	for c := range cadres {
		cum := make([]float64, len(t.facilities))
		total := 0.0
		for i, f := range t.facilities {
			total += facilityAffinity[c][f.kind]
			cum[i] = total
		}
		if total == 0 { // no facility of a kind this cadre works at: anywhere then
			for i := range cum {
				cum[i] = float64(i + 1)
			}
		}
		g.place[c] = cum
	}
	return g
}

// row returns the fields of worker i; they stay valid until the next call.
func (g *workerGen) row(i int) []string {
	g.pcg.Seed(g.seed, uint64(i))
	rng := g.rng

	cadre := sort.SearchFloat64s(g.cadre[:], rng.Float64())
	cadre = min(cadre, len(cadres)-1)
	place := g.place[cadre]
	fac := sort.SearchFloat64s(place, rng.Float64()*place[len(place)-1])
	fac = min(fac, len(place)-1)

	b := g.buf[:0]
	var ends [len(g.rec)]int
	k := 0
	end := func() { ends[k] = len(b); k++ }

	// ihris_id
	b = append(b, "ihris-"...)
	b = appendPadded(b, i+1, 6)
	end()
	// name
	b = append(b, givenNames[rng.IntN(len(givenNames))]...)
	b = append(b, ' ')
	if rng.IntN(100) < middleInitialPct {
		b = append(b, initials[rng.IntN(len(initials))], '.', ' ')
	}
	b = append(b, surnames[rng.IntN(len(surnames))]...)
	end()
	// phone, phone2: numbers 2i and 2i+1 of a permutation of all mobile numbers, so no
	// two phones in the file are the same.
	b = g.appendPhone(b, rng, g.phones.at(2*uint64(i)))
	end()
	if rng.IntN(1000) < secondPhonePerMille {
		b = g.appendPhone(b, rng, g.phones.at(2*uint64(i)+1))
	}
	end()
	b = append(b, cadres[cadre].Code...)
	end()
	b = append(b, g.t.facilities[fac].code...)
	end()
	// skills, in code order, joined by ';'
	var has [len(skills)]bool
	weights := skillAffinity[cadre]
	for n := sort.SearchFloat64s(skillCount[:], rng.Float64()); n > 0; n-- {
		total := 0.0
		for _, w := range weights {
			total += w
		}
		if total == 0 {
			break
		}
		x := rng.Float64() * total
		s := 0
		for ; s < len(weights)-1 && (weights[s] == 0 || x >= weights[s]); s++ {
			x -= weights[s]
		}
		for weights[s] == 0 { // rounding walked past the last candidate
			s--
		}
		has[s], weights[s] = true, 0
	}
	first := true
	for s, ok := range has {
		if ok {
			if !first {
				b = append(b, ';')
			}
			b, first = append(b, skills[s].Code...), false
		}
	}
	end()
	frenchPct := frenchPctElsewhere
	if g.french[fac] {
		frenchPct = frenchPctBorder
	}
	if rng.IntN(100) < frenchPct {
		b = append(b, "fr"...)
	} else {
		b = append(b, "en"...)
	}
	end()
	b = strconv.AppendBool(b, rng.IntN(1000) >= inactivePerMille)
	end()
	b = strconv.AppendBool(b, rng.IntN(1000) < optedOutPerMille)
	end()

	s := string(b) // one allocation for the whole row
	start := 0
	for j, e := range ends {
		g.rec[j] = s[start:e]
		start = e
	}
	g.buf = b
	return g.rec[:]
}

// appendPhone writes mobile number n (0 <= n < phoneSpace) as iHRIS data has them: in
// national form, 0886123456, or international, +231886123456.
func (g *workerGen) appendPhone(b []byte, rng *rand.Rand, n uint64) []byte {
	if rng.IntN(100) < internationalPct {
		b = append(b, "+"+CallingCode...)
	} else {
		b = append(b, '0')
	}
	if n < phoneBlock {
		b = append(b, "77"...)
	} else {
		b = append(b, "88"...)
	}
	return appendPadded(b, int(n%phoneBlock), 7)
}

// appendPadded appends n in decimal, zero-padded to at least width digits.
func appendPadded(b []byte, n, width int) []byte {
	var d [20]byte
	s := strconv.AppendInt(d[:0], int64(n), 10)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// phonePerm is a keyed permutation of [0, phoneSpace): a four-round Feistel network on
// 26 bits, cycle-walked back into range. It hands out distinct numbers by index without
// remembering which were taken, and different seeds give different numbers.
type phonePerm struct{ keys [4]uint64 }

const (
	halfBits = 13
	halfMask = 1<<halfBits - 1
)

func newPhonePerm(seed int64) phonePerm {
	var p phonePerm
	x := uint64(seed) ^ streamPhones
	for i := range p.keys {
		x = splitmix(x)
		p.keys[i] = x
	}
	return p
}

func (p *phonePerm) at(i uint64) uint64 {
	x := i
	for {
		l, r := x>>halfBits, x&halfMask
		for _, k := range p.keys {
			l, r = r, l^(splitmix(r^k)&halfMask)
		}
		x = l<<halfBits | r
		if x < phoneSpace {
			return x
		}
	}
}

// splitmix is SplitMix64's finaliser: a cheap, well-mixed hash of x.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
