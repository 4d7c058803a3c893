package smpptest

import (
	"sync"
	"time"
)

// delayQueue runs fn on each item when it is due. Items are pushed with non-decreasing
// due times (each user has one constant delay), so it is a FIFO with one timer: no
// goroutine per item.
type delayQueue[T any] struct {
	fn   func(T)
	wake chan struct{}

	mu    sync.Mutex
	items []delayed[T]
	head  int
}

type delayed[T any] struct {
	due time.Time
	v   T
}

func newDelayQueue[T any](fn func(T)) *delayQueue[T] {
	return &delayQueue[T]{fn: fn, wake: make(chan struct{}, 1)}
}

func (q *delayQueue[T]) push(due time.Time, v T) {
	q.mu.Lock()
	q.items = append(q.items, delayed[T]{due, v})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run releases items until done is closed; items still queued then are dropped.
func (q *delayQueue[T]) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		if q.head == len(q.items) {
			clear(q.items)
			q.items, q.head = q.items[:0], 0
			q.mu.Unlock()
			select {
			case <-q.wake:
				continue
			case <-done:
				return
			}
		}
		it := q.items[q.head]
		if d := time.Until(it.due); d > 0 {
			q.mu.Unlock()
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-done:
				return
			}
			continue
		}
		q.items[q.head] = delayed[T]{}
		q.head++
		if q.head >= 1024 && q.head*2 >= len(q.items) {
			n := copy(q.items, q.items[q.head:])
			clear(q.items[n:])
			q.items, q.head = q.items[:n], 0
		}
		q.mu.Unlock()
		q.fn(it.v)
	}
}
