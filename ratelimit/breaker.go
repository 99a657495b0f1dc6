package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// breaker is a circuit breaker for one store. Closed, it lets every round
// trip through and counts consecutive failures; at threshold it opens and
// fails fast for openFor; then it is half-open and lets exactly one probe
// through: success closes it, failure opens it for another openFor.
//
// The closed, no-failure path is two atomic loads; transitions take the
// mutex.
type breaker struct {
	threshold int
	openFor   time.Duration
	now       func() time.Time
	// onChange, if set, is called (under the mutex) when the breaker opens
	// or closes.
	onChange func(open bool, failures int)

	tripped  atomic.Bool  // open or half-open
	failures atomic.Int64 // consecutive failures while closed

	mu        sync.Mutex
	openUntil time.Time
	probing   bool
}

func newBreaker(threshold int, openFor time.Duration, now func() time.Time) *breaker {
	return &breaker{threshold: max(threshold, 1), openFor: openFor, now: now}
}

// allow reports whether a round trip may go ahead, and whether it is the
// half-open probe. Every allowed round trip must end with exactly one call
// of success, failure or abandon, passing probe on.
func (b *breaker) allow() (ok, probe bool) {
	if !b.tripped.Load() {
		return true, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.tripped.Load() {
		return true, false
	}
	if b.probing || b.now().Before(b.openUntil) {
		return false, false
	}
	b.probing = true
	return true, true
}

// success records a round trip that worked; it closes the breaker even if
// the round trip was not the probe (it began before the breaker opened).
func (b *breaker) success() {
	if !b.tripped.Load() && b.failures.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures.Store(0)
	if b.tripped.Load() {
		b.tripped.Store(false)
		b.probing = false
		if b.onChange != nil {
			b.onChange(false, 0)
		}
	}
}

// failure records a round trip that failed.
func (b *breaker) failure(probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tripped.Load() {
		if probe && b.probing {
			// The half-open probe failed: open again.
			b.probing = false
			b.openUntil = b.now().Add(b.openFor)
		}
		return
	}
	n := b.failures.Add(1)
	if n >= int64(b.threshold) {
		b.tripped.Store(true)
		b.openUntil = b.now().Add(b.openFor)
		if b.onChange != nil {
			b.onChange(true, int(n))
		}
	}
}

// abandon records a round trip that ended without telling whether the
// store works (the caller gave up): a half-open probe slot is freed.
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

// open reports whether the breaker currently fails fast.
func (b *breaker) open() bool {
	if !b.tripped.Load() {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.probing || b.now().Before(b.openUntil)
}

// Breaker states, as the circuit state metric names them.
const (
	stateClosed   = "closed"
	stateOpen     = "open"
	stateHalfOpen = "half_open"
)

// state reports the breaker's state: closed, open (failing fast), or
// half_open (its open time is over: the next round trip, or the one in
// flight, is the probe).
func (b *breaker) state() string {
	if !b.tripped.Load() {
		return stateClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.tripped.Load() {
		return stateClosed
	}
	if b.probing || !b.now().Before(b.openUntil) {
		return stateHalfOpen
	}
	return stateOpen
}
