package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// MemoryOptions configures a [MemoryStore]. The zero value (or a nil
// pointer) means defaults.
type MemoryOptions struct {
	// MaxKeys bounds how many counters the store tracks; default 1<<20.
	// See MemoryStore for what happens when it is reached.
	MaxKeys int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultMaxKeys is MemoryOptions.MaxKeys's default.
const DefaultMaxKeys = 1 << 20

// maxShards is how many shards a MemoryStore spreads its counters over.
const maxShards = 64

// sweepEvery is how often at most a full shard is swept for expired
// counters (µs of the store's clock).
const sweepEvery = int64(time.Second / time.Microsecond)

// evictSample is how many counters a full shard looks at to choose one to
// evict.
const evictSample = 16

// MemoryStore is a [Store] that keeps counters in process memory: for one
// instance of the service, or for tests. It implements the algorithms
// described in the package (see [Algorithm]) with the same semantics as
// [RedisStore]: Take is all-or-nothing across a request's hits.
//
// Counters are spread over up to 64 shards by a hash of Hit.Key, each with
// its own lock; a Take locks the shards its hits fall in, in increasing
// shard order, for its whole duration, so no global lock is on the hot
// path and a request's hits are decided and counted atomically.
//
// # Bounds and expiry
//
// A counter is forgotten when it expires: a fixed window's when its window
// ends, a sliding window's one window later (it is then the previous
// window), a GCRA key's when its TAT has passed. Expired counters read as
// empty and are removed lazily. The store never holds more than MaxKeys
// counters (each shard holds its share). When a new counter is needed in a
// full shard, the shard first removes its expired counters (a full sweep,
// at most once a second per shard); if it is still full it evicts, of 16
// counters sampled at random, the one that expires soonest — an
// approximation of "closest to expiry", like Redis's volatile-ttl. An
// evicted counter restarts from zero, so under a key-cardinality flood
// some keys are limited less than configured rather than memory growing.
// (If every sampled counter belongs to the same request, the new counter
// is not tracked and that hit is not counted.)
//
// A MemoryStore is safe for concurrent use; it starts no goroutines and
// needs no closing. Time resolution is one microsecond.
type MemoryStore struct {
	now    func() time.Time
	seed   maphash.Seed
	shards []memShard
}

type memShard struct {
	mu        sync.Mutex
	m         map[memKey]memEntry
	max       int
	lastSweep int64
	swept     bool
	_         [64]byte // keep shards' locks on separate cache lines
}

// memKey identifies a counter. One counter per key holds both windows of a
// sliding window (state.cur is the count of window state.index).
type memKey struct {
	key    string
	alg    Algorithm
	window int64
}

// memEntry is what a shard stores for a counter.
type memEntry struct {
	// at is the window index of cur (windows) or the TAT (GCRA).
	at        int64
	cur, prev uint64
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns a MemoryStore. opts may be nil.
func NewMemoryStore(opts *MemoryOptions) *MemoryStore {
	var o MemoryOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	n := min(maxShards, o.MaxKeys)
	s := &MemoryStore{now: o.Now, seed: maphash.MakeSeed(), shards: make([]memShard, n)}
	for i := range s.shards {
		s.shards[i].max = o.MaxKeys / n
		if i < o.MaxKeys%n {
			s.shards[i].max++
		}
		s.shards[i].m = make(map[memKey]memEntry)
	}
	return s
}

// memHit is one hit during a Take.
type memHit struct {
	sp    spec
	key   memKey
	shard int
	dup   int   // index of the last earlier hit on the same counter, or -1
	base  state // the stored counter, read for this instant
	cur   state // base, or the dup hit's next state
	next  state
	over  bool
	count bool // sent to the counters (not static)
}

// Take implements [Store]. It never returns an error; ctx is unused.
func (s *MemoryStore) Take(_ context.Context, hits []Hit) ([]Outcome, error) {
	out := make([]Outcome, len(hits))

	var workBuf [8]memHit
	work := workBuf[:0]
	if len(hits) > len(workBuf) {
		work = make([]memHit, 0, len(hits))
	}
	var shardBuf [8]int
	shards := shardBuf[:0]
	rejected := false // by a hit that needs no counter (Requests 0)
	for i := range hits {
		h := &hits[i]
		if h.Limit == nil {
			return nil, errNoLimit(i)
		}
		if h.Limit.Unlimited || h.Limit.Requests == 0 {
			work = append(work, memHit{}) // static: no counter
			continue
		}
		sh := int(maphash.String(s.seed, h.Key) % uint64(len(s.shards)))
		work = append(work, memHit{shard: sh, dup: -1, count: true})
		if !slices.Contains(shards, sh) {
			shards = append(shards, sh)
		}
	}
	slices.Sort(shards)
	for _, sh := range shards {
		s.shards[sh].mu.Lock()
	}
	defer func() {
		for _, sh := range shards {
			s.shards[sh].mu.Unlock()
		}
	}()
	// Read the clock under the locks: Takes on one counter then see
	// non-decreasing times, so a Take that read the clock just before a
	// window's end cannot overwrite the next window's counter.
	now := s.now().UnixMicro()
	for i := range hits {
		w := &work[i]
		sp, static, o := makeSpec(&hits[i], now)
		if static {
			out[i] = o
			rejected = rejected || (o.OverLimit && !sp.shadow)
			continue
		}
		w.sp = sp
		w.key = memKey{key: hits[i].Key, alg: sp.alg, window: sp.window}
	}

	// Phase 1: read and decide.
	admitted := !rejected
	for i := range work {
		w := &work[i]
		if !w.count {
			continue
		}
		for j := i - 1; j >= 0; j-- {
			if work[j].count && work[j].key == w.key {
				w.dup = j
				break
			}
		}
		w.base = s.shards[w.shard].read(w.key, &w.sp, now)
		w.cur = w.base
		if w.dup >= 0 {
			w.cur = work[w.dup].next
		}
		var rem uint64
		var reset int64
		w.over, w.next, rem, reset = w.sp.apply(w.cur, w.sp.hits, now)
		if w.sp.hits == 0 {
			w.next = w.cur
		}
		if w.over && !w.sp.shadow {
			admitted = false
		}
		out[i] = Outcome{OverLimit: w.over, Remaining: rem, ResetAfter: micros(reset)}
	}

	// Phase 2: count everything, or report the counters as they are.
	for i := range work {
		w := &work[i]
		if !w.count {
			continue
		}
		if !admitted {
			_, _, rem, reset := w.sp.apply(w.base, 0, now)
			out[i].Remaining, out[i].ResetAfter = rem, micros(reset)
			continue
		}
		if w.sp.hits > 0 {
			s.shards[w.shard].write(w.key, &w.sp, w.next, now, work)
		}
	}
	return out, nil
}

// read returns the counter for key as seen in sp's window at now.
func (sh *memShard) read(key memKey, sp *spec, now int64) state {
	e, ok := sh.m[key]
	if !ok {
		return state{}
	}
	switch sp.alg {
	case GCRA:
		return state{tat: e.at} // a past TAT reads as an empty bucket in apply
	case SlidingWindow:
		switch e.at {
		case sp.index:
			return state{cur: e.cur, prev: e.prev}
		case sp.index - 1:
			return state{prev: e.cur}
		}
		return state{}
	default:
		if e.at == sp.index {
			return state{cur: e.cur}
		}
		return state{}
	}
}

// write stores next for key.
func (sh *memShard) write(key memKey, sp *spec, next state, now int64, work []memHit) {
	e := memEntry{at: sp.index, cur: next.cur, prev: next.prev}
	if sp.alg == GCRA {
		e = memEntry{at: next.tat}
	}
	if _, ok := sh.m[key]; !ok && len(sh.m) >= sh.max && !sh.makeRoom(now, work) {
		return
	}
	sh.m[key] = e
}

// expiresAt is when a stored counter expires (µs).
func expiresAt(k memKey, e memEntry) int64 {
	switch k.alg {
	case GCRA:
		return e.at
	case SlidingWindow:
		return (e.at + 2) * k.window
	default:
		return (e.at + 1) * k.window
	}
}

// makeRoom frees one slot in a full shard, sweeping expired counters (at
// most once per sweepEvery) or evicting the sampled counter closest to
// expiry that no hit of the current request uses. It reports false if it
// could not.
func (sh *memShard) makeRoom(now int64, work []memHit) bool {
	if !sh.swept || now-sh.lastSweep >= sweepEvery || now < sh.lastSweep {
		sh.swept, sh.lastSweep = true, now
		for k, e := range sh.m {
			if expiresAt(k, e) <= now {
				delete(sh.m, k)
			}
		}
		if len(sh.m) < sh.max {
			return true
		}
	}
	var victim memKey
	found := false
	var soonest int64
	n := 0
	for k, e := range sh.m { // map iteration starts at a random entry
		if n == evictSample {
			break
		}
		n++
		if inRequest(k, work) {
			continue
		}
		if at := expiresAt(k, e); !found || at < soonest {
			victim, soonest, found = k, at, true
		}
	}
	if !found {
		return false
	}
	delete(sh.m, victim)
	return true
}

func inRequest(k memKey, work []memHit) bool {
	for i := range work {
		if work[i].count && work[i].key == k {
			return true
		}
	}
	return false
}

// len returns how many counters the store holds, expired or not.
func (s *MemoryStore) len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].m)
		s.shards[i].mu.Unlock()
	}
	return n
}

// errNoLimit reports a programming error: a Hit without a Limit.
func errNoLimit(i int) error {
	return fmt.Errorf("ratelimit: hit %d has no Limit", i)
}
