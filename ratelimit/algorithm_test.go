package ratelimit

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// storeTestTimeout bounds every test context in the store tests.
const storeTestTimeout = 60 * time.Second

// storeEpoch is where fake clocks start: aligned to every window the tests
// use.
var storeEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func storeTestContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), storeTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// storeKind builds one kind of store on a clock.
type storeKind struct {
	name string
	new  func(t testing.TB, now func() time.Time) Store
}

// storeKinds are the stores every semantics and algorithm test runs
// against. The Redis store runs without its over-limit cache, which
// changes what rejected requests report (tested on its own).
func storeKinds() []storeKind {
	return []storeKind{
		{"memory", func(t testing.TB, now func() time.Time) Store {
			return NewMemoryStore(&MemoryOptions{Now: now})
		}},
		{"redis", func(t testing.TB, now func() time.Time) Store {
			s, err := NewRedisStore(&RedisOptions{
				Client:             ratelimittest.Redis(t),
				Prefix:             ratelimittest.RedisPrefix(t),
				Now:                now,
				Timeout:            2 * time.Second, // a loaded test machine, not a fault test
				OverLimitCacheSize: -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
}

func perMinute(n uint64, alg Algorithm) *Limit {
	return &Limit{Requests: n, Window: time.Minute, Algorithm: alg}
}

func TestStoreSemantics(t *testing.T) {
	l3 := perMinute(3, FixedWindow)
	l5 := perMinute(5, FixedWindow)
	l10 := perMinute(10, FixedWindow)
	l1 := perMinute(1, FixedWindow)
	shadow1 := &Limit{Requests: 1, Window: time.Minute, ShadowMode: true}
	unlimited := &Limit{Unlimited: true, Window: time.Minute}
	zero := perMinute(0, FixedWindow)
	sliding10 := perMinute(10, SlidingWindow)
	gcra := &Limit{Requests: 10, Window: time.Minute, Algorithm: GCRA, Burst: 3} // T 6s, tolerance 18s

	hit := func(key string, l *Limit, n uint64) Hit { return Hit{Key: "d|k=" + key + "|lim", Limit: l, Hits: n} }
	ok := func(rem uint64, reset time.Duration) Outcome { return Outcome{Remaining: rem, ResetAfter: reset} }
	over := func(rem uint64, reset time.Duration) Outcome {
		return Outcome{OverLimit: true, Remaining: rem, ResetAfter: reset}
	}
	const m = time.Minute
	const s = time.Second
	type step struct {
		advance time.Duration
		hits    []Hit
		want    []Outcome
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"fixed window allows N, rejects, resets next window", []step{
			{0, []Hit{hit("a", l3, 1)}, []Outcome{ok(2, m)}},
			{0, []Hit{hit("a", l3, 1)}, []Outcome{ok(1, m)}},
			{0, []Hit{hit("a", l3, 1)}, []Outcome{ok(0, m)}},
			{0, []Hit{hit("a", l3, 1)}, []Outcome{over(0, m)}},
			{20 * s, []Hit{hit("a", l3, 1)}, []Outcome{over(0, 40*s)}},
			{40 * s, []Hit{hit("a", l3, 1)}, []Outcome{ok(2, m)}},
			{0, []Hit{hit("b", l3, 1)}, []Outcome{ok(2, m)}},
		}},
		{"hits_addend above 1", []step{
			{0, []Hit{hit("a", l10, 4)}, []Outcome{ok(6, m)}},
			{0, []Hit{hit("a", l10, 4)}, []Outcome{ok(2, m)}},
			{0, []Hit{hit("a", l10, 4)}, []Outcome{over(2, m)}},
			{0, []Hit{hit("a", l10, 2)}, []Outcome{ok(0, m)}},
			{0, []Hit{hit("a", l10, 1)}, []Outcome{over(0, m)}},
		}},
		{"huge hits_addend is over, not counted, no overflow", []step{
			{0, []Hit{hit("a", l3, 1)}, []Outcome{ok(2, m)}},
			{0, []Hit{hit("a", l3, math.MaxUint64)}, []Outcome{over(2, m)}},
			{0, []Hit{hit("a", l3, 1)}, []Outcome{ok(1, m)}},
		}},
		{"hits 0 only checks", []step{
			{0, []Hit{hit("a", l3, 0)}, []Outcome{ok(3, m)}},
			{0, []Hit{hit("a", l3, 0)}, []Outcome{ok(3, m)}},
			{0, []Hit{hit("a", l3, 3)}, []Outcome{ok(0, m)}},
			{0, []Hit{hit("a", l3, 0)}, []Outcome{ok(0, m)}},
			{0, []Hit{hit("a", l3, 1)}, []Outcome{over(0, m)}},
		}},
		{"unlimited is not counted", []step{
			{0, []Hit{hit("u", unlimited, 1), hit("a", l1, 1)}, []Outcome{{}, ok(0, m)}},
			{0, []Hit{hit("u", unlimited, 1), hit("a", l1, 1)}, []Outcome{{}, over(0, m)}},
			{0, []Hit{hit("u", unlimited, 1000)}, []Outcome{{}}},
		}},
		{"all-or-nothing: a rejected request counts nothing", []step{
			{0, []Hit{hit("a", l5, 1), hit("b", l1, 1)}, []Outcome{ok(4, m), ok(0, m)}},
			{0, []Hit{hit("a", l5, 1), hit("b", l1, 1)}, []Outcome{ok(4, m), over(0, m)}},
			{0, []Hit{hit("a", l5, 1), hit("b", l1, 1)}, []Outcome{ok(4, m), over(0, m)}},
			{0, []Hit{hit("a", l5, 1)}, []Outcome{ok(3, m)}},
		}},
		{"Requests 0 admits nothing and rejects the request", []step{
			{0, []Hit{hit("z", zero, 1), hit("a", l5, 1)}, []Outcome{over(0, m), ok(5, m)}},
			{0, []Hit{hit("z", zero, 0)}, []Outcome{ok(0, m)}},
			{0, []Hit{hit("a", l5, 1)}, []Outcome{ok(4, m)}},
		}},
		{"shadow mode reports over, admits, counts", []step{
			{0, []Hit{hit("s", shadow1, 1), hit("a", l5, 1)}, []Outcome{ok(0, m), ok(4, m)}},
			{0, []Hit{hit("s", shadow1, 1), hit("a", l5, 1)}, []Outcome{over(0, m), ok(3, m)}},
			{0, []Hit{hit("a", l5, 1)}, []Outcome{ok(2, m)}},
			// Counted: 2 > 1, so even a check is over.
			{0, []Hit{hit("s", shadow1, 0)}, []Outcome{over(0, m)}},
		}},
		{"shadow hit of a rejected request is not counted", []step{
			{0, []Hit{hit("b", l1, 1)}, []Outcome{ok(0, m)}},
			{0, []Hit{hit("s", shadow1, 1), hit("b", l1, 1)}, []Outcome{ok(1, m), over(0, m)}},
			{0, []Hit{hit("s", shadow1, 1)}, []Outcome{ok(0, m)}},
		}},
		{"one counter twice in a request adds up", []step{
			{0, []Hit{hit("a", l3, 1), hit("a", l3, 1)}, []Outcome{ok(2, m), ok(1, m)}},
			{0, []Hit{hit("a", l3, 1), hit("a", l3, 1)}, []Outcome{ok(1, m), over(1, m)}},
			{0, []Hit{hit("a", l3, 1)}, []Outcome{ok(0, m)}},
		}},
		{"sliding window values", []step{
			{0, []Hit{hit("a", sliding10, 6)}, []Outcome{ok(4, m)}},
			// Next window: the previous 6 weigh fully at its start...
			{m, []Hit{hit("a", sliding10, 0)}, []Outcome{ok(4, m)}},
			// ...and 6·45/60 = 4.5 a quarter in.
			{15 * s, []Hit{hit("a", sliding10, 5)}, []Outcome{ok(0, 45*s)}},
			{0, []Hit{hit("a", sliding10, 1)}, []Outcome{over(0, 45*s)}},
			// 6·30/60 + 5 = 8.
			{15 * s, []Hit{hit("a", sliding10, 0)}, []Outcome{ok(2, 30*s)}},
			{0, []Hit{hit("a", sliding10, 2)}, []Outcome{ok(0, 30*s)}},
			{0, []Hit{hit("a", sliding10, 1)}, []Outcome{over(0, 30*s)}},
			// The window after: 7 previous at full weight.
			{30 * s, []Hit{hit("a", sliding10, 0)}, []Outcome{ok(3, m)}},
			// Two windows on, nothing is left.
			{2 * m, []Hit{hit("a", sliding10, 0)}, []Outcome{ok(10, m)}},
		}},
		{"gcra values", []step{
			{0, []Hit{hit("g", gcra, 1)}, []Outcome{ok(2, 6*s)}},
			{0, []Hit{hit("g", gcra, 1)}, []Outcome{ok(1, 12*s)}},
			{0, []Hit{hit("g", gcra, 1)}, []Outcome{ok(0, 18*s)}},
			{0, []Hit{hit("g", gcra, 1)}, []Outcome{over(0, 18*s)}},
			{6 * s, []Hit{hit("g", gcra, 1)}, []Outcome{ok(0, 18*s)}},
			{3 * s, []Hit{hit("g", gcra, 0)}, []Outcome{ok(0, 15*s)}},
			{3 * s, []Hit{hit("g", gcra, 0)}, []Outcome{ok(1, 12*s)}},
			{0, []Hit{hit("g", gcra, 2)}, []Outcome{over(1, 12*s)}},
			{0, []Hit{hit("g", gcra, 1)}, []Outcome{ok(0, 18*s)}},
			{m, []Hit{hit("g", gcra, 0)}, []Outcome{ok(3, 0)}},
		}},
	}
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					ctx := storeTestContext(t)
					clock := ratelimittest.NewClock(storeEpoch)
					store := kind.new(t, clock.Now)
					for i, st := range tc.steps {
						clock.Advance(st.advance)
						got, err := store.Take(ctx, st.hits)
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						if diff := cmp.Diff(st.want, got); diff != "" {
							t.Errorf("step %d: outcomes (-want +got):\n%s", i, diff)
						}
					}
				})
			}
		})
	}
}

// sweep runs a client against one key: every step of the clock, it
// takes one hit at a time until rejected (at most maxPerStep), for steps
// steps. It returns the instants (µs) of the admitted hits, one entry per
// hit.
func sweep(t testing.TB, store Store, clock *ratelimittest.Clock, l *Limit, step time.Duration, steps, maxPerStep int) []int64 {
	t.Helper()
	ctx := storeTestContext(t)
	hits := []Hit{{Key: "d|k=sweep|" + l.Algorithm.String(), Limit: l, Hits: 1}}
	var admitted []int64
	for range steps {
		for range maxPerStep {
			out, err := store.Take(ctx, hits)
			if err != nil {
				t.Fatal(err)
			}
			if out[0].OverLimit {
				break
			}
			admitted = append(admitted, clock.Now().UnixMicro())
		}
		clock.Advance(step)
	}
	return admitted
}

// maxInInterval is the largest number of instants in any interval of
// length d: [t, t+d).
func maxInInterval(times []int64, d time.Duration) int {
	best := 0
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j] < times[i]+d.Microseconds(); j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

func TestAlgorithmFixedWindow(t *testing.T) {
	const R = 5
	l := &Limit{Requests: R, Window: time.Second}
	for _, kind := range storeKinds() {
		t.Run(kind.name, func(t *testing.T) {
			clock := ratelimittest.NewClock(storeEpoch.Add(330 * time.Millisecond))
			times := sweep(t, kind.new(t, clock.Now), clock, l, 10*time.Millisecond, 400, R+2)
			perWindow := map[int64]int{}
			for _, at := range times {
				perWindow[floorDiv(at, time.Second.Microseconds())]++
			}
			first := floorDiv(storeEpoch.UnixMicro(), time.Second.Microseconds())
			// Windows 0 (from 330ms) to 4 (to 4.33s) are all reached.
			for w := first; w <= first+4; w++ {
				if perWindow[w] != R {
					t.Errorf("window %d: %d admitted, want %d", w-first, perWindow[w], R)
				}
			}
			if len(perWindow) != 5 {
				t.Errorf("admitted in %d windows, want 5", len(perWindow))
			}
		})
	}
}

// TestAlgorithmBoundary shows the fixed window's boundary doubling and
// that the sliding window has none: R hits tried just before a window
// boundary and R just after.
func TestAlgorithmBoundary(t *testing.T) {
	const R = 10
	for _, kind := range storeKinds() {
		for _, tc := range []struct {
			alg  Algorithm
			want int
		}{
			{FixedWindow, 2 * R},
			{SlidingWindow, R},
		} {
			t.Run(kind.name+"/"+tc.alg.String(), func(t *testing.T) {
				clock := ratelimittest.NewClock(storeEpoch.Add(time.Second - 10*time.Millisecond))
				l := &Limit{Requests: R, Window: time.Second, Algorithm: tc.alg}
				times := sweep(t, kind.new(t, clock.Now), clock, l, 10*time.Millisecond, 2, R+1)
				if got := maxInInterval(times, 20*time.Millisecond); got != tc.want {
					t.Errorf("%d admitted within 20ms across the boundary, want %d", got, tc.want)
				}
			})
		}
	}
}

func TestAlgorithmSlidingWindow(t *testing.T) {
	const R = 10
	W := time.Second.Microseconds()
	l := &Limit{Requests: R, Window: time.Second, Algorithm: SlidingWindow}
	for _, kind := range storeKinds() {
		for _, start := range []time.Duration{0, 330 * time.Millisecond, 990 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/start+%v", kind.name, start), func(t *testing.T) {
				clock := ratelimittest.NewClock(storeEpoch.Add(start))
				times := sweep(t, kind.new(t, clock.Now), clock, l, 10*time.Millisecond, 400, R+2)
				if len(times) < 3*R {
					t.Fatalf("only %d admitted", len(times))
				}
				// Every interval [a, b] shorter than a window: with no
				// boundary inside, at most R; across the boundary kW, at
				// most R + ⌊R·(b−kW)/W⌋ — R right after the boundary
				// instead of the fixed window's 2R.
				worst := 0
				for i := range times {
					for j := i; j < len(times) && times[j]-times[i] < W; j++ {
						a, b := times[i], times[j]
						bound := R
						if k := floorDiv(b, W); floorDiv(a, W) != k {
							bound = R + int(R*(b-k*W)/W)
						}
						if n := j - i + 1; n > bound {
							t.Fatalf("%d admitted in [%d, %d]µs, bound %d", n, a, b, bound)
						}
					}
				}
				worst = maxInInterval(times, time.Second)
				// The estimate assumes the previous window's hits were
				// spread evenly: a client that bunches them at its end
				// gets more than R into one window-long interval, though
				// never 2R.
				if worst >= 2*R {
					t.Errorf("%d admitted in one window-long interval, want < %d", worst, 2*R)
				}
				t.Logf("most admitted in any 1s interval: %d (limit %d)", worst, R)
			})
		}
	}
}

func TestAlgorithmGCRA(t *testing.T) {
	const R, B = 10, 3
	l := &Limit{Requests: R, Window: time.Second, Algorithm: GCRA, Burst: B} // T = 100ms
	for _, kind := range storeKinds() {
		t.Run(kind.name+"/burst", func(t *testing.T) {
			ctx := storeTestContext(t)
			clock := ratelimittest.NewClock(storeEpoch.Add(123 * time.Millisecond))
			store := kind.new(t, clock.Now)
			take := func() bool {
				out, err := store.Take(ctx, []Hit{{Key: "d|k=burst|g", Limit: l, Hits: 1}})
				if err != nil {
					t.Fatal(err)
				}
				return !out[0].OverLimit
			}
			var got []bool
			for range B + 1 {
				got = append(got, take())
			}
			clock.Advance(50 * time.Millisecond)
			got = append(got, take())
			clock.Advance(50 * time.Millisecond)
			got = append(got, take(), take())
			clock.Advance(100 * time.Millisecond)
			got = append(got, take(), take())
			want := []bool{true, true, true, false, false, true, false, true, false}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("admitted (-want +got):\n%s", diff)
			}
		})
		t.Run(kind.name+"/bound", func(t *testing.T) {
			clock := ratelimittest.NewClock(storeEpoch.Add(123 * time.Millisecond))
			times := sweep(t, kind.new(t, clock.Now), clock, l, 7*time.Millisecond, 430, B+2)
			if len(times) < 2*R {
				t.Fatalf("only %d admitted", len(times))
			}
			// Over every interval [a, b]: at most B + R·(b−a)/W.
			for i := range times {
				for j := i; j < len(times); j++ {
					d := times[j] - times[i]
					if n := j - i + 1; n > B+int(R*d/time.Second.Microseconds()) {
						t.Fatalf("%d admitted in %dµs, bound %d", n, d, B+int(R*d/time.Second.Microseconds()))
					}
				}
			}
			// And the rate is reached: over the 3s run, about R per second.
			if n := len(times); n < B+R*3-1 {
				t.Errorf("%d admitted over 3s, want at least %d", n, B+R*3-1)
			}
		})
	}
}

func TestMakeSpec(t *testing.T) {
	now := storeEpoch.Add(1500 * time.Millisecond).UnixMicro()
	tests := []struct {
		name string
		hit  Hit
		want spec
	}{
		{"fixed", Hit{Limit: &Limit{Requests: 3, Window: time.Second}, Hits: 2},
			spec{requests: 3, hits: 2, window: 1e6, index: now / 1e6, elapsed: 5e5}},
		{"hits capped at requests+1", Hit{Limit: &Limit{Requests: 3, Window: time.Second}, Hits: math.MaxUint64},
			spec{requests: 3, hits: 4, window: 1e6, index: now / 1e6, elapsed: 5e5}},
		{"gcra interval rounds up", Hit{Limit: &Limit{Requests: 3, Window: time.Second, Algorithm: GCRA, Burst: 2}, Hits: 1},
			spec{alg: GCRA, requests: 3, hits: 1, window: 1e6, index: now / 1e6, elapsed: 5e5, interval: 333334, tol: 666668}},
		{"gcra burst 0 is 1", Hit{Limit: &Limit{Requests: 4, Window: time.Second, Algorithm: GCRA}, Hits: 1},
			spec{alg: GCRA, requests: 4, hits: 1, window: 1e6, index: now / 1e6, elapsed: 5e5, interval: 250000, tol: 250000}},
		{"sub-microsecond window", Hit{Limit: &Limit{Requests: 1, Window: time.Nanosecond}, Hits: 1},
			spec{requests: 1, hits: 1, window: 1, index: now}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, static, _ := makeSpec(&tc.hit, now)
			if static {
				t.Fatal("static")
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(spec{})); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
	if got := floorDiv(-1, 10); got != -1 {
		t.Errorf("floorDiv(-1, 10) = %d, want -1", got)
	}
}

// BenchmarkTake measures one Take of a request with two hits (a fixed
// window and a GCRA limit, like a subject limit and a subject+tool limit).
func BenchmarkTake(b *testing.B) {
	big := &Limit{Requests: 1 << 40, Window: time.Hour}
	gcra := &Limit{Requests: 1 << 40, Window: time.Hour, Algorithm: GCRA, Burst: 1 << 30}
	hits := []Hit{
		{Key: "mcp|subject=alice|subject", Limit: big, Hits: 1},
		{Key: "mcp|subject=alice|tool=search|subject_tool", Limit: gcra, Hits: 1},
	}
	run := func(b *testing.B, s Store, hits []Hit, wantOver bool) {
		ctx := storeTestContext(b)
		b.ReportAllocs()
		for b.Loop() {
			out, err := s.Take(ctx, hits)
			if err != nil {
				b.Fatal(err)
			}
			if out[0].OverLimit != wantOver {
				b.Fatalf("outcome %+v", out[0])
			}
		}
	}
	b.Run("memory-2hits", func(b *testing.B) {
		run(b, NewMemoryStore(nil), hits, false)
	})
	b.Run("redis-2hits", func(b *testing.B) {
		s, err := NewRedisStore(&RedisOptions{Client: ratelimittest.Redis(b), Prefix: ratelimittest.RedisPrefix(b), Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		run(b, s, hits, false)
	})
	b.Run("redis-2hits-overlimit-cached", func(b *testing.B) {
		s, err := NewRedisStore(&RedisOptions{Client: ratelimittest.Redis(b), Prefix: ratelimittest.RedisPrefix(b), Timeout: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(storeTestContext(b))
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		defer func() { cancel(); <-done }()
		over := []Hit{{Key: "mcp|subject=bob|subject", Limit: &Limit{Requests: 1, Window: time.Hour}, Hits: 1}, hits[1]}
		waitCached(b, s, over)
		run(b, s, over, true)
	})
}

// waitCached takes hits until the store answers them from its over-limit
// cache (no round trip), failing after a while.
func waitCached(t testing.TB, s *RedisStore, hits []Hit) {
	t.Helper()
	ctx := storeTestContext(t)
	for range 100 {
		if _, err := s.Take(ctx, hits); err != nil {
			t.Fatal(err)
		}
		s.cache.wait()
		c := s.cache.acquire()
		_, ok := c.Get(hits[0].Key)
		s.cache.release()
		if ok {
			return
		}
	}
	t.Fatal("over-limit cache never filled")
}
