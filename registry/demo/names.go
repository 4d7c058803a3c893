package demo

import "math/rand/v2"

// The lists below are for making up people and places that sound Liberian. Every name a
// worker gets is a random combination of a given name, sometimes a middle initial, and a
// surname; no list entry or combination is meant to be a real person. Town names are built
// from syllables, so they read like Liberian places without being any particular one.

// countyNames are the fifteen counties of Liberia. Geography, not people; a Size with more
// counties numbers the rest.
var countyNames = [...]string{
	"Bomi", "Bong", "Gbarpolu", "Grand Bassa", "Grand Cape Mount", "Grand Gedeh", "Grand Kru",
	"Lofa", "Margibi", "Maryland", "Montserrado", "Nimba", "River Cess", "River Gee", "Sinoe",
}

var givenNames = [...]string{
	// often given to men
	"Abraham", "Alieu", "Alexander", "Amos", "Augustine", "Benedict", "Boima", "Daniel", "Edwin",
	"Emmanuel", "Francis", "George", "Isaac", "Jacob", "James", "Jerome", "John", "Joseph",
	"Kerkula", "Lamine", "Momo", "Mohammed", "Moses", "Nathaniel", "Patrick", "Peter", "Prince",
	"Samuel", "Saye", "Sekou", "Stephen", "Thomas", "Varney", "Wilmot", "Yassah", "Zubah",
	// often given to women
	"Agnes", "Annie", "Beatrice", "Bendu", "Blessing", "Comfort", "Decontee", "Elizabeth",
	"Esther", "Fatu", "Finda", "Gbessay", "Grace", "Hawa", "Janet", "Jartu", "Josephine",
	"Kebbeh", "Korto", "Kou", "Mamie", "Martha", "Massa", "Mercy", "Miatta", "Musu", "Oretha",
	"Patience", "Rebecca", "Ruth", "Satta", "Sia", "Tenneh", "Victoria", "Watta", "Yah",
}

var surnames = [...]string{
	"Ballah", "Barclay", "Bility", "Cooper", "Conteh", "Dahn", "Davies", "Dolo", "Fofana",
	"Flomo", "Freeman", "Gaye", "Gbeh", "Gono", "Harris", "Jallah", "Kamara", "Karmo", "Kerkulah",
	"Kiazolu", "Kollie", "Konneh", "Korvah", "Kpadeh", "Kpehe", "Kromah", "Massaquoi", "Mulbah",
	"Nelson", "Peters", "Pewee", "Quoi", "Roberts", "Saah", "Sackie", "Sayeh", "Sesay", "Sheriff",
	"Sumo", "Tamba", "Tarr", "Togba", "Tokpa", "Toe", "Wesseh", "Wleh", "Williams", "Yarkpah",
	"Zinnah", "Zoe",
}

// Syllables for town names: "Gba" + "lahun" = "Gbalahun".
var townHeads = [...]string{
	"Ba", "Bel", "Bo", "Da", "Foy", "Ga", "Gba", "Ge", "Ja", "Ka", "Kar", "Ko", "Kpa", "Kpe",
	"Lo", "Ma", "Ne", "Pa", "Sa", "Sac", "Sala", "Sua", "Ta", "Ton", "Voi", "Wo", "Ya", "Yek",
	"Zor", "Zwe",
}

var townTails = [...]string{
	"bo", "dou", "jah", "kole", "kpa", "lahun", "lepea", "lu", "ma", "mah", "nga", "njama",
	"pa", "ppita", "quelleh", "rnga", "ta", "tuo", "wee", "yea", "zor", "zon",
}

// townName makes up a place name from syllables or, for a village, sometimes
// "<Surname> Town", as many Liberian villages are called after a founding family.
func townName(rng *rand.Rand, village bool) string {
	if village && rng.IntN(6) == 0 {
		return surnames[rng.IntN(len(surnames))] + " Town"
	}
	return townHeads[rng.IntN(len(townHeads))] + townTails[rng.IntN(len(townTails))]
}

// nameSet holds the names in use among places that should be told apart (the children of
// one location, the facilities of one district). A name's value counts its numbered
// variants: once "Gbalahun Clinic" is taken, the next is "Gbalahun II Clinic".
type nameSet map[string]int

// add records name and reports whether it was free.
func (s nameSet) add(name string) bool {
	if s[name] > 0 {
		return false
	}
	s[name] = 1
	return true
}

// pick makes up a free name ending in suffix (a village's name if village) and records it. It tries a few made-up
// towns, then numbers one (the name space is small next to a million facilities).
func (s nameSet) pick(rng *rand.Rand, suffix string, village bool) string {
	for range 20 {
		if n := townName(rng, village) + suffix; s.add(n) {
			return n
		}
	}
	base := townName(rng, village)
	for k := s[base+suffix] + 1; ; k++ {
		if n := base + " " + roman(k) + suffix; s.add(n) {
			s[base+suffix] = k
			return n
		}
	}
}

// roman writes small numbers as roman numerals ("Gbalahun II"), the usual way to tell
// apart two places of the same name. Past 39 it gives up and uses digits.
func roman(n int) string {
	if n <= 0 || n >= 40 {
		return itoa(n)
	}
	s := ""
	for ; n >= 10; n -= 10 {
		s += "X"
	}
	return s + [...]string{"", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"}[n]
}
