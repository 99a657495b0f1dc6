package identity

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// LockoutStore keeps failure counters and blocks. The memory store is one;
// a shared store (Redis) lets replicas share lockouts.
type LockoutStore interface {
	// Fail counts one failure of key in the current window and returns the
	// failures counted in it so far.
	Fail(ctx context.Context, key string, window time.Duration) (int, error)
	// Block blocks key for d.
	Block(ctx context.Context, key string, d time.Duration) error
	// BlockedFor returns how long key stays blocked; 0 when it is not.
	BlockedFor(ctx context.Context, key string) (time.Duration, error)
}

// LockoutOptions configure a [Lockout].
type LockoutOptions struct {
	// MaxFailures within Window block a key for Block.
	MaxFailures int
	Window      time.Duration
	Block       time.Duration
	// Store keeps the counters; nil means a memory store of at most 100,000
	// keys.
	Store LockoutStore
}

// Lockout blocks source addresses and credentials after repeated
// authentication failures. A store error never blocks anyone: lockout fails
// open, authentication itself still fails closed.
//
// Blocked is answered from memory, never over the network: the shared
// store is asked only when a failure is counted (rare), and a block found
// there is remembered locally. A replica that has not yet seen an address
// fail lets one more attempt through before it knows of the block.
type Lockout struct {
	opts  LockoutOptions
	local *MemoryLockoutStore // blocks known to this replica
}

// NewLockout returns a Lockout; MaxFailures 0 returns nil (no lockout).
func NewLockout(opts LockoutOptions) *Lockout {
	if opts.MaxFailures <= 0 {
		return nil
	}
	if opts.Window <= 0 {
		opts.Window = time.Minute
	}
	if opts.Block <= 0 {
		opts.Block = 5 * time.Minute
	}
	l := &Lockout{opts: opts}
	if m, ok := opts.Store.(*MemoryLockoutStore); ok {
		l.local = m
	} else if opts.Store == nil {
		l.local = NewMemoryLockoutStore(100_000, nil)
		l.opts.Store = l.local
	} else {
		l.local = NewMemoryLockoutStore(100_000, nil)
	}
	return l
}

// Blocked reports whether key is blocked, and for how long. It does not
// touch the network.
func (l *Lockout) Blocked(ctx context.Context, key string) (time.Duration, bool) {
	d, err := l.local.BlockedFor(ctx, key)
	return d, err == nil && d > 0
}

// Fail records one failure for each key and blocks those that reach
// MaxFailures, in the store and locally.
func (l *Lockout) Fail(ctx context.Context, keys ...string) {
	for _, k := range keys {
		n, err := l.opts.Store.Fail(ctx, k, l.opts.Window)
		if err != nil || n < l.opts.MaxFailures {
			continue
		}
		if l.opts.Store != LockoutStore(l.local) {
			_ = l.opts.Store.Block(ctx, k, l.opts.Block)
			_, _ = l.local.Fail(ctx, k, l.opts.Window) // an entry to hold the block
		}
		_ = l.local.Block(ctx, k, l.opts.Block)
	}
}

// MemoryLockoutStore is a LockoutStore in memory, for one replica. It holds
// at most a fixed number of keys: expired entries are dropped first, and
// when every entry is live, new keys are not tracked (their failures are
// not counted) rather than letting memory grow.
type MemoryLockoutStore struct {
	shards [16]lockoutShard
	seed   maphash.Seed
	now    func() time.Time
}

type lockoutShard struct {
	mu        sync.Mutex
	max       int
	entries   map[string]*lockoutEntry
	nextSweep time.Time // a full shard is swept at most once a second
}

type lockoutEntry struct {
	windowEnd    time.Time
	failures     int
	blockedUntil time.Time
}

func (e *lockoutEntry) expired(now time.Time) bool {
	return now.After(e.windowEnd) && now.After(e.blockedUntil)
}

// NewMemoryLockoutStore returns a store of at most maxKeys keys; now is
// the clock (nil: time.Now).
func NewMemoryLockoutStore(maxKeys int, now func() time.Time) *MemoryLockoutStore {
	if now == nil {
		now = time.Now
	}
	s := &MemoryLockoutStore{seed: maphash.MakeSeed(), now: now}
	for i := range s.shards {
		s.shards[i] = lockoutShard{max: max(maxKeys/len(s.shards), 1), entries: map[string]*lockoutEntry{}}
	}
	return s
}

func (s *MemoryLockoutStore) shard(key string) *lockoutShard {
	return &s.shards[maphash.String(s.seed, key)%uint64(len(s.shards))]
}

// Fail implements LockoutStore.
func (s *MemoryLockoutStore) Fail(_ context.Context, key string, window time.Duration) (int, error) {
	sh, now := s.shard(key), s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.entries[key]
	if e == nil {
		if len(sh.entries) >= sh.max && now.After(sh.nextSweep) {
			for k, old := range sh.entries {
				if old.expired(now) {
					delete(sh.entries, k)
				}
			}
			sh.nextSweep = now.Add(time.Second)
		}
		if len(sh.entries) >= sh.max {
			return 0, nil
		}
		e = &lockoutEntry{}
		sh.entries[key] = e
	}
	if now.After(e.windowEnd) {
		e.windowEnd, e.failures = now.Add(window), 0
	}
	e.failures++
	return e.failures, nil
}

// Block implements LockoutStore.
func (s *MemoryLockoutStore) Block(_ context.Context, key string, d time.Duration) error {
	sh, now := s.shard(key), s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.entries[key]; e != nil {
		e.blockedUntil = now.Add(d)
	}
	return nil
}

// BlockedFor implements LockoutStore.
func (s *MemoryLockoutStore) BlockedFor(_ context.Context, key string) (time.Duration, error) {
	sh, now := s.shard(key), s.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.entries[key]; e != nil && now.Before(e.blockedUntil) {
		return e.blockedUntil.Sub(now), nil
	}
	return 0, nil
}
