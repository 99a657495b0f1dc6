package ratelimit

import (
	"math"
	"strconv"
	"time"
)

// The algorithms, shared by MemoryStore (in Go, below) and RedisStore (in
// Lua, takeScript, which mirrors spec.apply operation for operation so the
// two stores give identical answers).
//
// Time is counted in integer microseconds since the Unix epoch, read from
// the store's clock: Redis gets the client's time, so the window indexes
// and hence every key are known before the script runs. Microseconds stay
// exact in Lua's doubles until the year 2255. Windows shorter than 1µs
// count as 1µs.
//
// Fixed window: window index i = floor(now / Window); a hit of h is
// admitted if count(i) + h ≤ Requests. The counter expires when its window
// ends.
//
// Sliding window: with e the time elapsed in window i, the estimate is
// count(i-1)·(Window−e)/Window + count(i); a hit of h is admitted if
// estimate + h ≤ Requests, and counts go to window i, whose counter is kept
// for 2·Window (it is the previous window of window i+1). This removes the
// fixed window's boundary doubling (Requests at the end of one window and
// Requests again at the start of the next): over any interval that reaches
// a time b into window i, at most Requests + count(i-1)·b/Window hits are
// admitted. It is an estimate that assumes window i-1's hits were spread
// evenly: when they were bunched at its end, up to nearly 2·Requests can
// fall in one Window-long interval, spread over it rather than at the
// boundary.
//
// GCRA: emission interval T = ceil(Window/Requests) (rounded up, so the
// rate never exceeds Requests per Window), tolerance τ = Burst·T (Burst 0
// counts as 1). The store keeps the theoretical arrival time TAT; a hit of
// h sets TAT' = max(TAT, now) + h·T and is admitted if TAT' − now ≤ τ. So
// at most Burst hits arrive at once and at most Burst + ⌊t/T⌋ ≤ Burst +
// Requests·t/Window over any interval of length t. ResetAfter = TAT' − now
// (when the bucket is empty again) and Remaining = ⌊(τ − (TAT' − now))/T⌋,
// the hits that would still be admitted at this instant. The counter
// expires at TAT'.
//
// Over-limit values: Remaining is never negative (0 when over), and a hit
// in shadow mode that is over its limit is still counted when its request
// is admitted.

// spec is one hit, prepared for the algorithms at one instant.
type spec struct {
	alg      Algorithm
	requests uint64
	hits     uint64
	shadow   bool
	window   int64 // µs, ≥ 1
	index    int64 // window index: floor(now/window)
	elapsed  int64 // µs since the window began: now − index·window
	interval int64 // GCRA emission interval T, µs
	tol      int64 // GCRA tolerance τ = Burst·T, µs
}

// maxExact is the largest integer a Lua double (and float64) holds exactly
// with room to spare; tolerances are clamped to it.
const maxExact = 1 << 52

// makeSpec prepares hit h at now (µs). Requests above 2^52 count as 2^52,
// and hits beyond what can be over by more are capped (Requests+1 for
// windows, tolerance/T+1 for GCRA): the answers are the same, and counters
// stay exact in Lua's doubles. When the answer does not depend on
// any counter (an unlimited limit, or Requests 0), it returns that outcome
// and static true: such hits are never sent to a store.
func makeSpec(h *Hit, now int64) (sp spec, static bool, o Outcome) {
	l := h.Limit
	sp = spec{
		alg:      l.Algorithm,
		requests: min(l.Requests, maxExact),
		hits:     h.Hits,
		shadow:   l.ShadowMode,
		window:   max(int64(l.Window/time.Microsecond), 1),
	}
	if l.Unlimited {
		return sp, true, Outcome{}
	}
	sp.index = floorDiv(now, sp.window)
	sp.elapsed = now - sp.index*sp.window
	if l.Requests == 0 {
		o = Outcome{OverLimit: h.Hits > 0}
		if sp.alg != GCRA {
			o.ResetAfter = micros(sp.window - sp.elapsed)
		}
		return sp, true, o
	}
	if sp.alg != GCRA {
		// More than Requests+1 hits cannot change any answer (over) and
		// would overflow counters.
		sp.hits = min(sp.hits, sp.requests+1)
	} else {
		r := int64(sp.requests)
		sp.interval = sp.window / r
		if sp.interval*r < sp.window {
			sp.interval++
		}
		burst := int64(max(min(l.Burst, maxExact), 1))
		if burst > maxExact/sp.interval {
			sp.tol = maxExact
		} else {
			sp.tol = burst * sp.interval
		}
		// Past tolerance/interval + 1 hits, more cannot change the answer
		// (over) and would only push TAT out of range.
		if lim := uint64(sp.tol/sp.interval) + 1; sp.hits > lim {
			sp.hits = lim
		}
	}
	return sp, false, Outcome{}
}

// state is a counter's value: the current and previous windows' counts
// (fixed windows use cur only), or GCRA's TAT in µs.
type state struct {
	cur, prev uint64
	tat       int64
}

// apply returns the result of h more hits on st at now: whether they are
// over the limit, the state after counting them, and Remaining and
// ResetAfter (µs) after counting them. With h = 0 it describes the state
// as it is. takeScript's apply is the same computation in Lua.
func (sp *spec) apply(st state, h uint64, now int64) (over bool, next state, remaining uint64, reset int64) {
	switch sp.alg {
	case GCRA:
		tat := max(st.tat, now)
		nt := tat + int64(h)*sp.interval
		d := nt - now
		over = d > sp.tol
		if !over {
			remaining = uint64((sp.tol - d) / sp.interval)
		}
		return over, state{tat: nt}, remaining, d
	case SlidingWindow:
		// Each step is an explicit float64 conversion, evaluated in the
		// same order as the Lua expression b*(W-el)/W + a + h, so both
		// stores round alike.
		weighted := float64(float64(st.prev)*float64(sp.window-sp.elapsed)) / float64(sp.window)
		est := float64(float64(weighted+float64(st.cur)) + float64(h))
		over = est > float64(sp.requests)
		if r := math.Floor(float64(sp.requests) - est); r > 0 {
			remaining = uint64(r)
		}
		return over, state{cur: st.cur + h, prev: st.prev}, remaining, sp.window - sp.elapsed
	default:
		c := st.cur + h
		over = c > sp.requests
		if !over {
			remaining = sp.requests - c
		}
		return over, state{cur: c}, remaining, sp.window - sp.elapsed
	}
}

// floorDiv is a / b rounded toward negative infinity, for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

// micros converts µs to a Duration.
func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// keyGraceMillis is how long (ms) takeScript keeps a key past the end of
// its counter (GRACE in the script).
const keyGraceMillis = 1000

// takeScript does one RedisStore.Take, or its part for one Redis Cluster
// slot, in one round trip.
//
// KEYS are the counter keys of the hits, in order: one per fixed window or
// GCRA hit, two (previous window, then current window) per sliding window
// hit.
//
// ARGV[1] is now (µs since the Unix epoch, the client's clock); ARGV[2]
// is 1 if the request is already rejected (by a hit that needs no
// counter), else 0. Then 8 values per hit: algorithm (0 fixed, 1 sliding, 2 GCRA), requests, window
// (µs), hits, shadow (1 or 0), elapsed (µs into the window), GCRA interval
// T (µs), GCRA tolerance (µs).
//
// Phase 1 reads every counter and decides; each hit sees the counts of the
// hits before it in the same request (two hits on one counter add up).
// Phase 2, only when no non-shadow hit is over, writes every counted hit,
// each write with its expiry (SET PX), so no key is ever left without a
// TTL. A TTL runs one second (keyGraceMillis) past the counter's end by
// the client's clock: Redis expires keys by its own clock, and a request
// whose now was taken just before a window's end may run after it there;
// without the grace it would find the counter gone and start from zero.
//
// The reply is 1 (admitted) or 0, then 4 integers per hit: over limit (1
// or 0); Remaining; ResetAfter (µs); and, for a hit that is over its limit
// on the stored counts alone, how long (µs) a hit of the same size stays
// over whatever others do in the meantime (0: do not cache). Counters only
// grow within a window and TAT only moves forward, so that time is safe to
// cache.
var takeScript = `
local GRACE = ` + strconv.Itoa(keyGraceMillis) + ` -- keyGraceMillis
local now = tonumber(ARGV[1])
local n = (#ARGV - 2) / 8
local stored, pending = {}, {}

local function load(k)
  local v = stored[k]
  if v == nil then
    v = tonumber(redis.call('GET', k)) or 0
    stored[k] = v
  end
  return v
end

local function peek(k)
  local v = pending[k]
  if v == nil then v = load(k) end
  return v
end

-- apply mirrors spec.apply: a is the count (fixed), the current count
-- (sliding) or TAT (GCRA); b is the previous count (sliding).
local function apply(alg, R, W, el, T, tol, a, b, h)
  if alg == 2 then
    local tat = a
    if tat < now then tat = now end
    local nt = tat + h * T
    local d = nt - now
    local rem = 0
    if d <= tol then rem = math.floor((tol - d) / T) end
    return d > tol, nt, rem, d
  end
  local est
  if alg == 1 then
    est = b * (W - el) / W + a + h
  else
    est = a + h
  end
  local rem = math.floor(R - est)
  if rem < 0 then rem = 0 end
  return est > R, a + h, rem, W - el
end

-- overFor: how long h hits stay over on the state a, b (they are over now).
local function overFor(alg, R, W, el, T, tol, a, b, h)
  if alg == 0 then return W - el end
  if alg == 1 then
    if a + h > R then return W - el end
    local x = math.floor(W - (R - a - h) * W / b) - el
    if x < 0 then x = 0 end
    return x
  end
  local tat = a
  if tat < now then tat = now end
  return tat + h * T - tol - now
end

local hits = {}
local admitted = ARGV[2] ~= '1'
local ki = 1
for i = 1, n do
  local o = 3 + (i - 1) * 8
  local x = {
    alg = tonumber(ARGV[o]), R = tonumber(ARGV[o + 1]), W = tonumber(ARGV[o + 2]),
    h = tonumber(ARGV[o + 3]), shadow = ARGV[o + 4] == '1', el = tonumber(ARGV[o + 5]),
    T = tonumber(ARGV[o + 6]), tol = tonumber(ARGV[o + 7]), b = 0, pb = 0,
  }
  if x.alg == 1 then
    x.kp = KEYS[ki]
    ki = ki + 1
    x.b = load(x.kp)
    x.pb = peek(x.kp)
  end
  x.k = KEYS[ki]
  ki = ki + 1
  x.over, x.nv, x.rem, x.reset = apply(x.alg, x.R, x.W, x.el, x.T, x.tol, peek(x.k), x.pb, x.h)
  if x.over and not x.shadow then admitted = false end
  if x.h > 0 then pending[x.k] = x.nv end
  hits[i] = x
end

local res = {0}
if admitted then res[1] = 1 end
for i = 1, n do
  local x = hits[i]
  local rem, reset, cache = x.rem, x.reset, 0
  if admitted then
    if x.h > 0 then
      local ttl
      if x.alg == 2 then
        ttl = x.nv - now
      elseif x.alg == 1 then
        ttl = 2 * x.W - x.el
      else
        ttl = x.W - x.el
      end
      redis.call('SET', x.k, string.format('%d', x.nv), 'PX', string.format('%d', math.ceil(ttl / 1000) + GRACE))
    end
  else
    local _
    _, _, rem, reset = apply(x.alg, x.R, x.W, x.el, x.T, x.tol, load(x.k), x.b, 0)
  end
  if x.over and not x.shadow and x.h > 0 then
    local alone = apply(x.alg, x.R, x.W, x.el, x.T, x.tol, load(x.k), x.b, x.h)
    if alone then cache = overFor(x.alg, x.R, x.W, x.el, x.T, x.tol, load(x.k), x.b, x.h) end
  end
  local over = 0
  if x.over then over = 1 end
  res[#res + 1] = over
  res[#res + 1] = rem
  res[#res + 1] = reset
  res[#res + 1] = cache
end
return res
`
