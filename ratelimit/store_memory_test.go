package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

func TestMemoryStoreBounded(t *testing.T) {
	ctx := storeTestContext(t)
	clock := ratelimittest.NewClock(storeEpoch)
	const max = 100
	s := NewMemoryStore(&MemoryOptions{MaxKeys: max, Now: clock.Now})
	l := &Limit{Requests: 5, Window: time.Minute}
	g := &Limit{Requests: 5, Window: time.Minute, Algorithm: GCRA}
	for i := range 10 * max {
		hits := []Hit{
			{Key: fmt.Sprintf("d|k=%d|f", i), Limit: l, Hits: 1},
			{Key: fmt.Sprintf("d|k=%d|g", i), Limit: g, Hits: 1},
		}
		if _, err := s.Take(ctx, hits); err != nil {
			t.Fatal(err)
		}
		if n := s.len(); n > max {
			t.Fatalf("after %d requests the store holds %d counters, more than MaxKeys %d", i+1, n, max)
		}
		if i%97 == 0 {
			clock.Advance(time.Second)
		}
	}
	if n := s.len(); n < max/2 {
		t.Errorf("the store holds %d counters, want it nearly full (%d)", n, max)
	}
}

// TestMemoryShardMakeRoom checks what a full shard gives up for a new
// counter: expired counters first, then the one closest to expiry, never
// one of the request's own.
func TestMemoryShardMakeRoom(t *testing.T) {
	now := storeEpoch.UnixMicro()
	sec := time.Second.Microseconds()
	live := memKey{key: "live", window: 3600 * sec}     // expires within the hour
	soon := memKey{key: "soon", window: 10 * sec}       // expires within 10s
	old := memKey{key: "old", window: sec}              // expired a minute ago
	gcraOld := memKey{key: "g", alg: GCRA, window: sec} // TAT in the past
	entry := func(k memKey, ago int64) memEntry { return memEntry{at: floorDiv(now-ago, k.window), cur: 1} }
	tests := []struct {
		name    string
		entries map[memKey]memEntry
		swept   bool // a sweep ran less than a second ago
		request []memKey
		want    []memKey // left, besides the new counter
	}{
		{"expired go first", map[memKey]memEntry{live: entry(live, 0), old: entry(old, 60*sec), gcraOld: {at: now - 1}},
			false, nil, []memKey{live}},
		{"then the closest to expiry", map[memKey]memEntry{live: entry(live, 0), soon: entry(soon, 0)},
			false, nil, []memKey{live}},
		{"no sweep twice a second: evict", map[memKey]memEntry{live: entry(live, 0), old: entry(old, 60*sec)},
			true, nil, []memKey{live}},
		{"never the request's own", map[memKey]memEntry{live: entry(live, 0), soon: entry(soon, 0)},
			false, []memKey{soon}, []memKey{soon}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sh := &memShard{m: tc.entries, max: len(tc.entries)}
			if tc.swept {
				sh.swept, sh.lastSweep = true, now-1
			}
			var work []memHit
			for _, k := range tc.request {
				work = append(work, memHit{key: k, count: true})
			}
			fresh := memKey{key: "new", window: sec}
			sp := spec{window: sec, index: floorDiv(now, sec)}
			sh.write(fresh, &sp, state{cur: 1}, now, work)
			if _, ok := sh.m[fresh]; !ok {
				t.Fatal("new counter not stored")
			}
			if len(sh.m) > sh.max {
				t.Fatalf("shard holds %d, max %d", len(sh.m), sh.max)
			}
			for _, k := range tc.want {
				if _, ok := sh.m[k]; !ok {
					t.Errorf("%s was dropped", k.key)
				}
			}
		})
	}
	t.Run("full of the request's own: not tracked", func(t *testing.T) {
		sh := &memShard{m: map[memKey]memEntry{live: entry(live, 0)}, max: 1}
		sp := spec{window: sec, index: floorDiv(now, sec)}
		sh.write(memKey{key: "new", window: sec}, &sp, state{cur: 1}, now, []memHit{{key: live, count: true}})
		if len(sh.m) != 1 {
			t.Errorf("shard holds %d, want 1", len(sh.m))
		}
		if _, ok := sh.m[live]; !ok {
			t.Error("the request's own counter was evicted")
		}
	})
}

// TestMemoryStoreConcurrent hammers two limits from many goroutines: one
// shared by all, one per goroutine, in one request, so requests lock two
// shards in an order that must not deadlock, and count all-or-nothing.
func TestMemoryStoreConcurrent(t *testing.T) {
	ctx := storeTestContext(t)
	clock := ratelimittest.NewClock(storeEpoch)
	s := NewMemoryStore(&MemoryOptions{Now: clock.Now})
	const workers, each, shared, own = 8, 500, 1000, 100
	sharedLimit := &Limit{Requests: shared, Window: time.Hour}
	ownLimit := &Limit{Requests: own, Window: time.Hour}
	admitted := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// Alternate the order of the hits, so shard locks are asked
			// for in both orders.
			a := Hit{Key: "d|k=shared|x", Limit: sharedLimit, Hits: 1}
			b := Hit{Key: fmt.Sprintf("d|k=own%d|x", w), Limit: ownLimit, Hits: 1}
			for i := range each {
				hits := []Hit{a, b}
				if i%2 == 1 {
					hits = []Hit{b, a}
				}
				out, err := s.Take(ctx, hits)
				if err != nil {
					t.Error(err)
					return
				}
				if !out[0].OverLimit && !out[1].OverLimit {
					admitted[w]++
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for w, n := range admitted {
		if n != own {
			t.Errorf("worker %d: %d admitted, want %d", w, n, own)
		}
		total += n
	}
	out, err := s.Take(ctx, []Hit{{Key: "d|k=shared|x", Limit: sharedLimit}})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(shared - total); out[0].Remaining != want {
		t.Errorf("shared Remaining %d, want %d: rejected requests were counted", out[0].Remaining, want)
	}
}

func TestMemoryStoreAllocs(t *testing.T) {
	ctx := storeTestContext(t)
	s := NewMemoryStore(nil)
	l := &Limit{Requests: 1 << 40, Window: time.Hour}
	g := &Limit{Requests: 1 << 40, Window: time.Hour, Algorithm: GCRA, Burst: 1 << 30}
	hits := []Hit{{Key: "d|k=a|x", Limit: l, Hits: 1}, {Key: "d|k=a|t=b|y", Limit: g, Hits: 1}}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := s.Take(ctx, hits); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 { // the outcomes
		t.Errorf("Take allocates %v times, want at most 1", allocs)
	}
}

// TestMemoryStoreConcurrentWindows hammers one fixed-window key on the real
// clock across window boundaries: no window admits more than its limit.
func TestMemoryStoreConcurrentWindows(t *testing.T) {
	ctx := storeTestContext(t)
	s := NewMemoryStore(nil)
	const limit, window = 20, 20 * time.Millisecond
	W := window.Microseconds()
	hit := []Hit{{Key: "d|k=hot|x", Limit: &Limit{Requests: limit, Window: window}, Hits: 1}}
	var mu sync.Mutex
	perWindow := map[int64]int{}
	ambiguous := 0
	end := time.Now().Add(15 * window)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(end) {
				before := time.Now().UnixMicro()
				out, err := s.Take(ctx, hit)
				after := time.Now().UnixMicro()
				if err != nil {
					t.Error(err)
					return
				}
				if out[0].OverLimit {
					continue
				}
				// now ∈ [before, after] and now + ResetAfter ends its window.
				ra := out[0].ResetAfter.Microseconds()
				e := floorDiv(after+ra, W) * W
				mu.Lock()
				if e-W >= before+ra {
					ambiguous++
				} else {
					perWindow[e/W-1]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for w, n := range perWindow {
		if n > limit {
			t.Errorf("window %d: %d admitted, limit %d", w, n, limit)
		}
	}
	if len(perWindow) < 10 {
		t.Errorf("only %d windows seen", len(perWindow))
	}
	if ambiguous > 0 {
		t.Logf("%d calls took longer than a window and were not placed", ambiguous)
	}
}
