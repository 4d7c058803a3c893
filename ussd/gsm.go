package ussd

import "strings"

// A USSD screen travels in the GSM 03.38 default alphabet, 182 septets in the common
// case. One character outside it (ô, ç, a curly quote) switches the whole screen to UCS-2,
// which holds less than half as much; and the extension characters cost two septets.
// Screens are measured the way the network will carry them.

const gsmBasic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"

const gsmExtension = "^{}\\[~]|€\f"

var gsmBasicSet, gsmExtSet = runeSet(gsmBasic), runeSet(gsmExtension)

// gsmASCII is the septet cost of each ASCII character (0: not in the alphabet), so the
// common case needs no map lookup.
var gsmASCII = func() (t [128]uint8) {
	for r := range gsmBasicSet {
		if r < 128 {
			t[r] = 1
		}
	}
	for r := range gsmExtSet {
		if r < 128 {
			t[r] = 2
		}
	}
	return t
}()

func runeSet(s string) map[rune]bool {
	m := map[rune]bool{}
	for _, r := range s {
		m[r] = true
	}
	return m
}

// gsmCost is the septets r takes in the GSM alphabet, 0 when it is not in it.
func gsmCost(r rune) int {
	switch {
	case r < 128:
		return int(gsmASCII[r])
	case gsmBasicSet[r]:
		return 1
	case gsmExtSet[r]:
		return 2
	}
	return 0
}

// screenSize returns how much of a screen's budget s uses: septets when it fits the GSM
// alphabet; otherwise UCS-2's two octets per character expressed in septets, so both
// compare with the same limit (182 septets hold 80 UCS-2 characters).
func screenSize(s string) int {
	n := 0
	for _, r := range s {
		c := gsmCost(r)
		if c == 0 {
			units := 0
			for _, r := range s {
				units++
				if r > 0xFFFF {
					units++ // a surrogate pair
				}
			}
			return units * 16 / 7
		}
		n += c
	}
	return n
}

// nonGSM returns the characters of s outside the GSM 7-bit alphabet, for lint.
func nonGSM(s string) string {
	var b strings.Builder
	seen := map[rune]bool{}
	for _, r := range s {
		if !gsmBasicSet[r] && !gsmExtSet[r] && !seen[r] {
			seen[r] = true
			b.WriteRune(r)
		}
	}
	return b.String()
}
