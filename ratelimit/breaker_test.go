package ratelimit

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

func TestBreaker(t *testing.T) {
	clock := ratelimittest.NewClock(storeEpoch)
	b := newBreaker(3, time.Second, clock.Now)
	var changes []bool
	b.onChange = func(open bool, _ int) { changes = append(changes, open) }

	allow := func() bool {
		t.Helper()
		ok, probe := b.allow()
		if probe {
			t.Fatal("unexpected probe")
		}
		return ok
	}
	// Closed: failures below the threshold, reset by a success.
	for range 2 {
		if !allow() {
			t.Fatal("closed breaker refused")
		}
		b.failure(false)
	}
	b.success()
	for range 2 {
		allow()
		b.failure(false)
	}
	if b.open() {
		t.Fatal("open after 2 failures since a success")
	}
	allow()
	b.failure(false)
	if !b.open() {
		t.Fatal("closed after 3 consecutive failures")
	}
	// Open: fail fast until OpenFor has passed.
	if ok, _ := b.allow(); ok {
		t.Fatal("open breaker allowed a call")
	}
	clock.Advance(999 * time.Millisecond)
	if ok, _ := b.allow(); ok {
		t.Fatal("open breaker allowed a call before OpenFor")
	}
	// Half-open: exactly one probe.
	clock.Advance(time.Millisecond)
	ok, probe := b.allow()
	if !ok || !probe {
		t.Fatalf("half-open: allow = %v, %v; want a probe", ok, probe)
	}
	if ok, _ := b.allow(); ok {
		t.Fatal("a second call went through beside the probe")
	}
	// A failed probe opens it again for OpenFor.
	b.failure(true)
	if ok, _ := b.allow(); ok {
		t.Fatal("allowed right after a failed probe")
	}
	clock.Advance(time.Second)
	// An abandoned probe frees the slot.
	if _, probe := b.allow(); !probe {
		t.Fatal("no probe after OpenFor")
	}
	b.abandon(true)
	ok, probe = b.allow()
	if !ok || !probe {
		t.Fatal("no probe after an abandoned one")
	}
	// A successful probe closes it.
	b.success()
	if b.open() {
		t.Fatal("open after a successful probe")
	}
	if !allow() {
		t.Fatal("closed breaker refused")
	}
	if diff := cmp.Diff([]bool{true, false}, changes); diff != "" {
		t.Errorf("transitions (-want +got):\n%s", diff)
	}
}

// TestBreakerConcurrent checks that concurrent callers get exactly one
// probe through a half-open breaker.
func TestBreakerConcurrent(t *testing.T) {
	clock := ratelimittest.NewClock(storeEpoch)
	b := newBreaker(1, time.Second, clock.Now)
	b.allow()
	b.failure(false)
	clock.Advance(time.Second)
	var mu sync.Mutex
	probes, allowed := 0, 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			ok, probe := b.allow()
			mu.Lock()
			defer mu.Unlock()
			if ok {
				allowed++
			}
			if probe {
				probes++
			}
		})
	}
	wg.Wait()
	if probes != 1 || allowed != 1 {
		t.Errorf("%d allowed, %d probes; want 1 and 1", allowed, probes)
	}
}
