package demo

import "testing"

// TestPhonePermIsBijective walks the whole number space: every index gets a number in
// range and no number is given twice, so phones are unique for any number of workers.
func TestPhonePermIsBijective(t *testing.T) {
	if testing.Short() {
		t.Skip("20 million numbers")
	}
	t.Parallel()
	p := newPhonePerm(1)
	seen := make([]uint64, phoneSpace/64+1)
	for i := uint64(0); i < phoneSpace; i++ {
		x := p.at(i)
		if x >= phoneSpace {
			t.Fatalf("at(%d) = %d, out of range", i, x)
		}
		if seen[x/64]&(1<<(x%64)) != 0 {
			t.Fatalf("at(%d) = %d, given before", i, x)
		}
		seen[x/64] |= 1 << (x % 64)
	}
}

func TestPhonePermSeeds(t *testing.T) {
	t.Parallel()
	a, b := newPhonePerm(1), newPhonePerm(2)
	same := 0
	for i := range uint64(1000) {
		if a.at(i) == b.at(i) {
			same++
		}
	}
	if same > 5 {
		t.Errorf("seeds 1 and 2 share %d of 1,000 numbers", same)
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{2: "II", 4: "IV", 9: "IX", 14: "XIV", 39: "XXXIX", 40: "40"} {
		if got := roman(n); got != want {
			t.Errorf("roman(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 200000: "200,000", 1234567: "1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
