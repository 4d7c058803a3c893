package ussd

import (
	"strconv"
	"testing"
	"time"
)

func TestSavedStatesStayWithinTheirBudget(t *testing.T) {
	const budget = 64 << 10
	c := newSavedStates(budget)
	state := make([]byte, 500)
	for i := range 1000 { // ~570 KB offered to a 64 KiB budget
		c.put("2318800"+strconv.Itoa(i), state, time.Minute)
		if c.bytes > budget {
			t.Fatalf("after %d puts: %d bytes kept, budget %d", i+1, c.bytes, budget)
		}
	}
	kept := 0
	for i := range 1000 {
		if _, ok := c.get("2318800" + strconv.Itoa(i)); ok {
			kept++
		}
	}
	if want := budget / (500 + 11 + entryOverhead); kept < want/2 || kept > want {
		t.Errorf("%d states kept, want about %d (the budget, less what the last sweep freed)", kept, want)
	}
	// The newest is always kept: a sweep frees room before the next put, not after it.
	if _, ok := c.get("2318800999"); !ok {
		t.Error("the state put last was not kept")
	}
}

func TestSavedStatesForgetWhatExpired(t *testing.T) {
	c := newSavedStates(1 << 20)
	c.put("231880000001", []byte("a"), time.Millisecond)
	c.put("231880000002", []byte("b"), time.Minute)
	time.Sleep(5 * time.Millisecond)
	if _, ok := c.get("231880000001"); ok {
		t.Error("a state past its TTL was still given")
	}
	if raw, ok := c.get("231880000002"); !ok || string(raw) != "b" {
		t.Errorf("a live state = %q, %v", raw, ok)
	}
	// Replacing and forgetting keep the count of bytes right.
	c.put("231880000002", []byte("bb"), time.Minute)
	c.forget("231880000002")
	c.forget("231880000001")
	if c.bytes != 0 || len(c.m) != 0 {
		t.Errorf("after forgetting everything: %d bytes in %d entries, want none", c.bytes, len(c.m))
	}
	// A state too large for a quarter of the budget is not kept at all.
	c.put("231880000003", make([]byte, 300<<10), time.Minute)
	if _, ok := c.get("231880000003"); ok {
		t.Error("a state larger than a quarter of the budget was kept")
	}
}
