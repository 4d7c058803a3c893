package reports

import (
	"strings"

	"github.com/mhero-health/mhero"
)

// Kinds of reference number: the letter before the dash says what was submitted.
const (
	RefStock      byte = 'S'
	RefReferral   byte = 'R'
	RefValidation byte = 'V'
)

// refAlphabet is Crockford's base 32: digits and capitals without I, L, O and U, so a
// number read aloud over a bad line or copied from a small screen is hard to get wrong.
const refAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// refMinDigits is the length of a reference for the first 32^5 (33 million) rows of a
// kind; later rows get a sixth character, and so on up to twelve (ids below 2^60, which
// a bigserial counting one report a microsecond reaches in 36,000 years).
const refMinDigits = 5

// Ref makes the short reference a worker sees on the phone ("S-7K3Q9") from a row id.
//
// The reference is the row id passed through a fixed permutation of the 5-character
// space, not a random string: two rows never share one (no retry on collision), finding a
// row by its reference is a primary-key lookup, and consecutive reports still get numbers
// that look unrelated, so a worker cannot guess another facility's.
func Ref(kind byte, id int64) string {
	if id <= 0 {
		return ""
	}
	n := refDigitsFor(id)
	bits := uint(5 * n)
	x := permute(uint64(id), bits)
	b := make([]byte, 2+n)
	b[0], b[1] = kind, '-'
	for i := n - 1; i >= 0; i-- {
		b[2+i] = refAlphabet[x&31]
		x >>= 5
	}
	return string(b)
}

// ParseRef reads a reference of the given kind back into its row id. It forgives what
// people do when they type one: lower case, no dash, spaces, O for 0 and I or L for 1.
func ParseRef(kind byte, s string) (int64, error) {
	id, ok := parseRef(kind, s)
	if !ok {
		return 0, mhero.Errorf(mhero.EINVALID, "%q is not a %c- reference number.", truncate(s, 20), kind)
	}
	return id, nil
}

func parseRef(kind byte, s string) (int64, bool) {
	s = strings.ToUpper(strings.Join(strings.Fields(s), ""))
	if s == "" || s[0] != kind {
		return 0, false
	}
	s = strings.TrimPrefix(s[1:], "-")
	n := len(s)
	if n < refMinDigits || n > 12 {
		return 0, false
	}
	var x uint64
	for i := 0; i < n; i++ {
		c := s[i]
		switch c {
		case 'O':
			c = '0'
		case 'I', 'L':
			c = '1'
		}
		d := strings.IndexByte(refAlphabet, c)
		if d < 0 {
			return 0, false
		}
		x = x<<5 | uint64(d)
	}
	id := int64(unpermute(x, uint(5*n)))
	// Each id has exactly one length; a shorter id dressed in a longer number is not one
	// we gave out.
	if id <= 0 || refDigitsFor(id) != n {
		return 0, false
	}
	return id, true
}

// refDigitsFor is the number of characters id's reference has.
func refDigitsFor(id int64) int {
	n := refMinDigits
	for n < 12 && uint64(id) >= 1<<(5*n) {
		n++
	}
	return n
}

// The permutation of [0, 2^bits): xor with a key, multiply by an odd constant and fold the
// high half into the low half, twice. Each step is invertible modulo 2^bits.
const (
	refKey  = 0x5DEECE66D
	refMul1 = 0x9E3779B97F4A7C15 // odd
	refMul2 = 0xBF58476D1CE4E5B9 // odd
)

func permute(x uint64, bits uint) uint64 {
	mask := uint64(1)<<bits - 1
	shift := (bits + 1) / 2
	x = (x ^ refKey) & mask
	x = x * refMul1 & mask
	x ^= x >> shift
	x = x * refMul2 & mask
	x ^= x >> shift
	return x
}

func unpermute(x uint64, bits uint) uint64 {
	mask := uint64(1)<<bits - 1
	shift := (bits + 1) / 2
	x ^= x >> shift // self-inverse: shift is at least half the width
	x = x * inverse(refMul2) & mask
	x ^= x >> shift
	x = x * inverse(refMul1) & mask
	return (x ^ refKey) & mask
}

// inverse is the multiplicative inverse of odd a modulo 2^64 (Newton's iteration: each
// step doubles the correct low bits), hence also modulo any smaller power of two.
func inverse(a uint64) uint64 {
	x := a // correct to 3 bits for odd a
	for range 5 {
		x *= 2 - a*x
	}
	return x
}
