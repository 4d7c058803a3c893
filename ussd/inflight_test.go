package ussd

import (
	"sync/atomic"
	"testing"
	"time"
)

// Wait returns once every counted goroutine has returned, and goroutines may be counted
// while it waits (a hop still running when a shutdown has given up on HTTP).
func TestInflightWaitsForAllEvenAddedWhileWaiting(t *testing.T) {
	var f inflight
	f.init()
	var finished atomic.Int64
	release := make(chan struct{})
	for range 3 {
		f.Go(func() { <-release; finished.Add(1) })
	}
	waited := make(chan struct{})
	go func() { f.Wait(); close(waited) }()
	for range 3 { // added while Wait waits
		f.Go(func() { <-release; finished.Add(1) })
	}
	select {
	case <-waited:
		t.Fatal("Wait returned while goroutines ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-waited
	if n := finished.Load(); n != 6 {
		t.Errorf("Wait returned after %d of 6 goroutines", n)
	}
	f.Wait() // nothing running: at once
}
