package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

// RedisOptions configures a [RedisStore]. Zero fields mean defaults.
type RedisOptions struct {
	// Client is the Redis client: a single node, Sentinel (failover) or
	// Cluster client. Required. Build it with [NewRedisClient], or set
	// ContextTimeoutEnabled yourself: otherwise go-redis ignores context
	// deadlines, and the store bounds each round trip by abandoning it
	// in a goroutine instead (the connection stays busy until the
	// client's own ReadTimeout).
	Client redis.UniversalClient
	// Prefix starts every key; default "portcullis:rl:". It must not
	// contain '{' or '}' (the key's hash tag follows it).
	Prefix string
	// Timeout bounds each Take's round trip; default 50ms.
	Timeout time.Duration
	// Now is the clock that places hits in windows; default time.Now.
	// Every instance sharing a Redis should have a synchronized clock.
	Now func() time.Time
	// OverLimitCacheSize is how many over-limit keys the store remembers
	// to answer without a round trip; default 100_000, negative disables
	// the cache. The cache exists only while Run runs.
	OverLimitCacheSize int64
	// FailureThreshold is how many consecutive failed round trips open the
	// circuit breaker; default 5.
	FailureThreshold int
	// OpenFor is how long an open breaker fails fast before it lets one
	// probe through; default 1s.
	OpenFor time.Duration
	// Logger receives breaker transitions; default discards.
	Logger *slog.Logger
	// MeterProvider provides the circuit breaker and over-limit cache
	// metrics; nil means none.
	MeterProvider metric.MeterProvider
}

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix        = "portcullis:rl:"
	DefaultRedisTimeout       = 50 * time.Millisecond
	DefaultOverLimitCacheSize = 100_000
	DefaultFailureThreshold   = 5
	DefaultOpenFor            = time.Second
)

// Log attribute keys.
const (
	logKeyFailures = "failures"
	logKeyOpenFor  = "open_for"
)

// RedisStore is a [Store] that keeps counters in Redis, shared by every
// instance of the service. It has the same semantics as [MemoryStore].
//
// # One round trip
//
// A Take runs one Lua script (EVALSHA; EVAL only when Redis has lost the
// script) that reads every counter of the request, decides, and — only if
// no non-shadow hit is over its limit — writes them all, each with its
// expiry. Window indexes are computed from the client's clock (Now), so
// every key is known in advance and passed in KEYS. Every key's TTL runs
// one second past the end of its counter (the window's end, a sliding
// window's next window's end, or GCRA's TAT), so a request whose clock
// read came just before that end still finds the counter in Redis, which
// expires keys by its own clock. Instances sharing a Redis need
// synchronized clocks. While Run runs, the scripts of concurrent Takes are
// sent in shared pipelines (redis_batch.go): still one script per
// request, but one write and one read for a batch.
//
// # Keys and Redis Cluster
//
// The service builds Hit.Key as "domain|k1=v1|k2=v2|…|limitkey". A counter
// key is Prefix + "{domain|k1=v1}" + "|k2=v2|…|limitkey" + a suffix for the
// algorithm and window (":f<index>", ":s<index>", ":g"): domain and the
// first descriptor entry form the hash tag, so the descriptors
// [subject=alice] and [subject=alice, tool=x] of one request land on one
// cluster slot and are decided atomically together. With a cluster client,
// a request whose keys span several slots runs one script per slot,
// concurrently: each slot's hits are all-or-nothing, but one slot may count
// while another rejects. Single-node and Sentinel clients always run one
// script. (A *redis.Ring is grouped by hash tag the same way.)
//
// # Over-limit cache
//
// While Run runs, a non-shadow hit that Redis reports over its limit on
// the stored counts is remembered (ristretto, OverLimitCacheSize keys) for
// as long as a hit of that size is certain to stay over: fixed window,
// until the window ends; sliding window, until the previous window's
// weight has decayed enough (at most the window's end); GCRA, until TAT −
// tolerance + hits·T. A later request with a non-shadow hit of at least
// that size on a remembered key is rejected without a round trip. In that
// answer the remembered hits are OverLimit with Remaining 0 and ResetAfter
// as last seen; the request's other hits were not looked up, so their
// Outcome is zero (OverLimit false, Remaining 0 meaning unknown) — they are
// not counted, as in any rejected request.
//
// # Failures
//
// Each round trip is bounded by Timeout. A circuit breaker opens after
// FailureThreshold consecutive failures and fails fast for OpenFor, then
// lets one probe through; its success closes the breaker, so a Redis that
// comes back is used again without a restart. Every failure returns an
// error wrapping [ErrStoreUnavailable]; a caller that cancels its own
// context gets one too, but it does not count as a failure. The breaker
// times OpenFor on the real clock, whatever Now is. A client built without
// ContextTimeoutEnabled ignores deadlines: the store then runs the script
// in a goroutine and stops waiting at Timeout (see [RedisOptions].Client).
//
// A RedisStore is safe for concurrent use. NewRedisStore starts no
// goroutines; Run (optional) holds the over-limit cache.
type RedisStore struct {
	client   redis.UniversalClient
	script   *redis.Script
	prefix   string
	timeout  time.Duration
	now      func() time.Time
	log      *slog.Logger
	breaker  *breaker
	route    routing
	ctxAware bool

	cacheSize int64
	running   atomic.Bool
	cache     overCache
	calls     atomic.Pointer[chan *scriptCall] // the pipeline workers' queue while Run runs

	cacheHit, cacheMiss *telemetry.CounterSeries // over-limit cache lookups
	circuitOpens        metric.Int64Counter
}

var _ Store = (*RedisStore)(nil)

// routing is how a request's hits are spread over scripts.
type routing int

const (
	routeOne     routing = iota // single node, Sentinel: one script
	routeSlot                   // cluster: one script per hash slot
	routeHashTag                // ring: one script per hash tag
)

// errCircuitOpen is returned while the breaker fails fast.
var errCircuitOpen = fmt.Errorf("%w: circuit open", ErrStoreUnavailable)

// NewRedisStore returns a RedisStore. It does not contact Redis.
func NewRedisStore(opts *RedisOptions) (*RedisStore, error) {
	if opts == nil || opts.Client == nil {
		return nil, errors.New("ratelimit: redis store: no client")
	}
	o := *opts
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("ratelimit: redis store: prefix %q contains '{' or '}'", o.Prefix)
	}
	if o.Timeout < 0 || o.OpenFor < 0 || o.FailureThreshold < 0 {
		return nil, errors.New("ratelimit: redis store: negative Timeout, OpenFor or FailureThreshold")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultRedisTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OverLimitCacheSize == 0 {
		o.OverLimitCacheSize = DefaultOverLimitCacheSize
	}
	if o.FailureThreshold == 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.OpenFor == 0 {
		o.OpenFor = DefaultOpenFor
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &RedisStore{
		client:    o.Client,
		script:    redis.NewScript(takeScript),
		prefix:    o.Prefix,
		timeout:   o.Timeout,
		now:       o.Now,
		log:       o.Logger,
		cacheSize: o.OverLimitCacheSize,
		// The breaker runs on the real clock: Now places hits in
		// windows and may be a test's fake clock.
		breaker: newBreaker(o.FailureThreshold, o.OpenFor, time.Now),
	}
	s.instrument(o.MeterProvider)
	s.breaker.onChange = func(open bool, failures int) {
		if open {
			s.circuitOpens.Add(context.Background(), 1)
			s.log.Warn("ratelimit: redis circuit open", logKeyFailures, failures, logKeyOpenFor, o.OpenFor)
		} else {
			s.log.Info("ratelimit: redis circuit closed")
		}
	}
	switch c := o.Client.(type) {
	case *redis.Client:
		s.ctxAware = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		s.ctxAware = c.Options().ContextTimeoutEnabled
		s.route = routeSlot
	case *redis.Ring:
		s.ctxAware = c.Options().ContextTimeoutEnabled
		s.route = routeHashTag
	}
	return s, nil
}

// instrument creates the store's instruments: the breaker's state as a
// gauge (1 for the current state, 0 for the others), its openings, and the
// over-limit cache's lookups.
func (s *RedisStore) instrument(mp metric.MeterProvider) {
	m := meter(mp)
	lookups := telemetry.NewCounterVec(m, metricOverLimitCache, metric.WithUnit("{lookup}"),
		metric.WithDescription("Requests checked against the over-limit cache, by result: a hit is answered without Redis."))
	s.cacheHit = lookups.Series(attribute.NewSet(attribute.String("result", "hit")))
	s.cacheMiss = lookups.Series(attribute.NewSet(attribute.String("result", "miss")))
	s.circuitOpens, _ = m.Int64Counter(metricCircuitOpenings, metric.WithUnit("{opening}"),
		metric.WithDescription("Times the Redis circuit breaker opened."))
	// No unit: "1" would make the Prometheus name end in _ratio.
	gauge, err := m.Int64ObservableGauge(metricCircuitState,
		metric.WithDescription("State of the Redis circuit breaker: 1 for the current state (closed, open, half_open), 0 for the others."))
	if err != nil {
		return
	}
	states := [...]string{stateClosed, stateOpen, stateHalfOpen}
	var opts [len(states)]metric.ObserveOption
	for i, st := range states {
		opts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("backend", "redis"), attribute.String("state", st)))
	}
	// The callback lives as long as the meter provider, as the store does.
	_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		cur := s.breaker.state()
		for i, st := range states {
			var v int64
			if st == cur {
				v = 1
			}
			o.ObserveInt64(gauge, v, opts[i])
		}
		return nil
	}, gauge)
}

// NewRedisClient returns a client for a RedisStore whose Timeout is
// timeout: context deadlines honoured (ContextTimeoutEnabled), read, write
// and pool-wait timeouts of timeout where opts leaves them zero, and no
// retries where opts leaves MaxRetries zero (a Take is not idempotent: a
// retried script could count twice). It speaks RESP2 where opts leaves
// Protocol zero: with RESP3 go-redis looks for push notifications before
// every reply, and the store subscribes to none. opts is copied.
func NewRedisClient(opts *redis.UniversalOptions, timeout time.Duration) redis.UniversalClient {
	o := *opts
	o.ContextTimeoutEnabled = true
	if o.Protocol == 0 {
		o.Protocol = 2
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = timeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = timeout
	}
	if o.PoolTimeout == 0 {
		o.PoolTimeout = timeout
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = -1
	}
	return redis.NewUniversalClient(&o)
}

// Run holds the over-limit cache until ctx is done, then releases it and
// returns nil. Without Run the store works, always asking Redis. Run may
// be called once at a time.
func (s *RedisStore) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("ratelimit: redis store: Run called twice")
	}
	defer s.running.Store(false)
	if s.cacheSize > 0 {
		c, err := ristretto.NewCache(&ristretto.Config[string, overEntry]{
			NumCounters:        10 * s.cacheSize,
			MaxCost:            s.cacheSize,
			BufferItems:        64,
			IgnoreInternalCost: true,
		})
		if err != nil {
			return fmt.Errorf("ratelimit: redis store: over-limit cache: %w", err)
		}
		s.cache.start(c)
		defer s.cache.stop()
	}
	calls := make(chan *scriptCall, pendingCalls)
	var wg sync.WaitGroup
	for range pipelineWorkers {
		wg.Go(func() { s.pipeline(ctx, calls) })
	}
	s.calls.Store(&calls)
	defer func() { s.calls.Store(nil); wg.Wait(); failPending(calls) }()
	<-ctx.Done()
	return nil
}

// redisHit is one hit sent to Redis.
type redisHit struct {
	i     int // index in the request
	group int // the script it goes to
	sp    spec
	keys  [2]string // the counter keys: [key] or, sliding, [previous, current]
}

// redisGroup is the part of a request one script runs.
type redisGroup struct {
	n   int   // hits
	cmd []any // EVALSHA sha numkeys KEYS… ARGV… (see evalCmd)
	res []int64
	err error
}

// Take implements [Store].
func (s *RedisStore) Take(ctx context.Context, hits []Hit) ([]Outcome, error) {
	out := make([]Outcome, len(hits))
	now := s.now().UnixMicro()

	var rhBuf [4]redisHit
	rhs := rhBuf[:0]
	if len(hits) > len(rhBuf) {
		rhs = make([]redisHit, 0, len(hits))
	}
	rejected := false // by a hit that needs no counter (Requests 0)
	for i := range hits {
		h := &hits[i]
		if h.Limit == nil {
			return nil, errNoLimit(i)
		}
		sp, static, o := makeSpec(h, now)
		if static {
			out[i] = o
			rejected = rejected || (o.OverLimit && !sp.shadow)
			continue
		}
		rhs = append(rhs, redisHit{i: i, sp: sp})
	}
	if len(rhs) == 0 {
		return out, nil
	}
	if s.fromCache(ctx, hits, out, now) {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}

	groups := 1
	for j := range rhs {
		s.keys(&rhs[j], hits[rhs[j].i].Key)
	}
	switch s.route {
	case routeSlot:
		groups = groupBySlot(rhs)
	case routeHashTag:
		groups = groupByTag(rhs)
	}

	ok, probe := s.breaker.allow()
	if !ok {
		return nil, errCircuitOpen
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	// One group (the rule) stays on the stack; several run concurrently.
	var single redisGroup
	var multi []redisGroup
	var err error
	if groups == 1 {
		single.build(rhs, 0, now, rejected, s.script.Hash())
		s.eval(rctx, &single)
		err = single.err
	} else {
		multi = make([]redisGroup, groups)
		var wg sync.WaitGroup
		for g := range multi {
			multi[g].build(rhs, g, now, rejected, s.script.Hash())
			wg.Go(func() { s.eval(rctx, &multi[g]) })
		}
		wg.Wait()
		for g := range multi {
			if err = multi[g].err; err != nil {
				break
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			s.breaker.abandon(probe)
		} else {
			s.breaker.failure(probe)
		}
		return nil, fmt.Errorf("%w: redis: %w", ErrStoreUnavailable, err)
	}
	s.breaker.success()

	c := s.cache.acquire()
	defer s.cache.release()
	var next [1]int // per group: the next reply position
	pos := next[:]
	if groups > 1 {
		pos = make([]int, groups)
	}
	for j := range rhs {
		rh := &rhs[j]
		g := &single
		if groups > 1 {
			g = &multi[rh.group]
		}
		r := g.res[1+4*pos[rh.group]:][:4]
		pos[rh.group]++
		out[rh.i] = Outcome{OverLimit: r[0] == 1, Remaining: uint64(max(r[1], 0)), ResetAfter: micros(r[2])}
		if c != nil && r[3] > 0 {
			h := &hits[rh.i]
			c.SetWithTTL(h.Key, overEntry{minHits: h.Hits, until: now + r[3], resetAt: now + r[2]}, 1, micros(r[3]))
			s.cache.noteUntil(now + r[3])
		}
	}
	return out, nil
}

// groupBySlot sets each hit's group by the cluster slot of its keys and
// returns how many groups there are.
func groupBySlot(rhs []redisHit) int { return groupBy(rhs, keySlot) }

// groupByTag sets each hit's group by the hash tag of its keys and returns
// how many groups there are.
func groupByTag(rhs []redisHit) int { return groupBy(rhs, effectiveTag) }

// groupBy numbers the hits' groups by of(first key), in order of first
// appearance, and returns how many groups there are.
func groupBy[K comparable](rhs []redisHit, of func(string) K) int {
	var seen []K
	for j := range rhs {
		k := of(rhs[j].keys[0])
		g := slices.Index(seen, k)
		if g < 0 {
			g, seen = len(seen), append(seen, k)
		}
		rhs[j].group = g
	}
	return len(seen)
}

// keys sets rh's counter keys for a Hit.Key.
func (s *RedisStore) keys(rh *redisHit, key string) {
	tag, rest := splitHashTag(key)
	var arr [128]byte
	buf := append(arr[:0], s.prefix...)
	buf = append(buf, '{')
	buf = append(buf, tag...)
	buf = append(buf, '}')
	buf = append(buf, rest...)
	base := len(buf)
	switch rh.sp.alg {
	case GCRA:
		rh.keys[0] = string(append(buf, ":g"...))
	case SlidingWindow:
		rh.keys[0] = string(strconv.AppendInt(append(buf, ":s"...), rh.sp.index-1, 10))
		rh.keys[1] = string(strconv.AppendInt(append(buf[:base], ":s"...), rh.sp.index, 10))
	default:
		rh.keys[0] = string(strconv.AppendInt(append(buf, ":f"...), rh.sp.index, 10))
	}
}

// build fills in the EVALSHA command, KEYS and ARGV (see takeScript), of
// group g of rhs.
func (g *redisGroup) build(rhs []redisHit, group int, now int64, rejected bool, sha string) {
	nk := 0
	for j := range rhs {
		if rhs[j].group != group {
			continue
		}
		g.n++
		nk++
		if rhs[j].sp.alg == SlidingWindow {
			nk++
		}
	}
	g.cmd = make([]any, 3, 3+nk+2+8*g.n)
	g.cmd[0], g.cmd[1], g.cmd[2] = "evalsha", sha, nk
	for j := range rhs {
		if rh := &rhs[j]; rh.group == group {
			g.cmd = append(g.cmd, rh.keys[0])
			if rh.sp.alg == SlidingWindow {
				g.cmd = append(g.cmd, rh.keys[1])
			}
		}
	}
	reject := 0
	if rejected {
		reject = 1
	}
	g.cmd = append(g.cmd, now, reject)
	for j := range rhs {
		rh := &rhs[j]
		if rh.group != group {
			continue
		}
		sp := &rh.sp
		shadow := 0
		if sp.shadow {
			shadow = 1
		}
		g.cmd = append(g.cmd, int(sp.alg), sp.requests, sp.window, sp.hits, shadow, sp.elapsed, sp.interval, sp.tol)
	}
}

// evalCmd returns the command that runs the script with args, an EVALSHA
// built by [redisGroup.build]: an IntSliceCmd reads the reply's integers
// as they come, where a generic command would box each one.
func evalCmd(ctx context.Context, args []any) *redis.IntSliceCmd {
	cmd := redis.NewIntSliceCmd(ctx, args...)
	if args[2].(int) > 0 {
		cmd.SetFirstKeyPos(3) // cluster routing: the first key
	}
	return cmd
}

// runSource runs args as an EVAL of the script's source, for a Redis that
// has lost the script (NOSCRIPT, after a restart or failover); EVAL caches
// it again.
func (s *RedisStore) runSource(ctx context.Context, args []any) ([]int64, error) {
	args = slices.Clone(args)
	args[0], args[1] = "eval", takeScript
	cmd := evalCmd(ctx, args)
	_ = s.client.Process(ctx, cmd)
	return cmd.Result()
}

// checkReply checks the length of a script's reply for n hits.
func checkReply(res []int64, err error, n int) ([]int64, error) {
	if err == nil && len(res) != 1+4*n {
		err = fmt.Errorf("script returned %d values for %d hits", len(res), n)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// eval runs the script for one group within ctx's deadline: in a pipeline
// with other requests' while Run runs, else on its own.
func (s *RedisStore) eval(ctx context.Context, g *redisGroup) {
	var batched bool
	if g.res, batched, g.err = s.runBatched(ctx, g.cmd, g.n); batched {
		return
	}
	if s.ctxAware {
		g.res, g.err = s.run(ctx, g.cmd, g.n)
		return
	}
	g.res, g.err = s.runAsync(ctx, g.cmd, g.n)
}

// runAsync is run for a client that ignores deadlines: the call is left
// behind when ctx is done.
func (s *RedisStore) runAsync(ctx context.Context, args []any, n int) ([]int64, error) {
	type result struct {
		res []int64
		err error
	}
	ch := make(chan result, 1)
	go func() {
		res, err := s.run(ctx, args, n)
		ch <- result{res, err}
	}()
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run runs the script on its own and checks the reply's length.
func (s *RedisStore) run(ctx context.Context, args []any, n int) ([]int64, error) {
	cmd := evalCmd(ctx, args)
	_ = s.client.Process(ctx, cmd)
	res, err := cmd.Result()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		res, err = s.runSource(ctx, args)
	}
	return checkReply(res, err, n)
}

// fromCache answers the request from the over-limit cache if one of its
// non-shadow hits is certain to be over its limit, filling out.
func (s *RedisStore) fromCache(ctx context.Context, hits []Hit, out []Outcome, now int64) (answered bool) {
	c := s.cache.acquire()
	defer s.cache.release()
	if c == nil {
		return false
	}
	defer func() {
		if answered {
			s.cacheHit.Add(1)
		} else {
			s.cacheMiss.Add(1)
		}
	}()
	if !s.cache.mayHold(now) {
		return false // every entry ever set has run out: no lookups
	}
	var rejected bool
	var overBuf [8]bool
	over := overBuf[:0]
	if len(hits) > len(overBuf) {
		over = make([]bool, 0, len(hits))
	}
	for i := range hits {
		h := &hits[i]
		o := false
		if !h.Limit.Unlimited && h.Limit.Requests > 0 && !h.Limit.ShadowMode && h.Hits > 0 {
			if e, ok := c.Get(h.Key); ok && h.Hits >= e.minHits && now < e.until {
				o, rejected = true, true
				out[i] = Outcome{OverLimit: true, ResetAfter: micros(max(e.resetAt-now, 0))}
			}
		}
		over = append(over, o)
	}
	if !rejected {
		return false
	}
	for i := range hits {
		if !over[i] && !hits[i].Limit.Unlimited && hits[i].Limit.Requests > 0 {
			out[i] = Outcome{} // not looked up
		}
	}
	return true
}

// overEntry remembers that hits of at least minHits on a key are over
// their limit until until (µs of the store's clock); resetAt is when the
// limit was reported to reset.
type overEntry struct {
	minHits uint64
	until   int64
	resetAt int64
}

// overCache guards the ristretto cache, which Run creates and closes.
type overCache struct {
	mu sync.RWMutex
	c  *ristretto.Cache[string, overEntry]
	// until is the latest until of any entry set: once the store's clock
	// has passed it, no entry can answer, and lookups (which cost
	// ristretto's admission bookkeeping even on a miss) are skipped. Under
	// normal load nobody is over a limit and this is the common case.
	until atomic.Int64
}

func (oc *overCache) start(c *ristretto.Cache[string, overEntry]) {
	oc.mu.Lock()
	oc.c = c
	oc.until.Store(0)
	oc.mu.Unlock()
}

// noteUntil records an entry set that answers until until.
func (oc *overCache) noteUntil(until int64) {
	for {
		cur := oc.until.Load()
		if until <= cur || oc.until.CompareAndSwap(cur, until) {
			return
		}
	}
}

// mayHold reports whether an entry may still answer at now.
func (oc *overCache) mayHold(now int64) bool { return now < oc.until.Load() }

func (oc *overCache) stop() {
	oc.mu.Lock()
	c := oc.c
	oc.c = nil
	oc.mu.Unlock()
	c.Close()
}

// acquire returns the cache or nil; release must follow.
func (oc *overCache) acquire() *ristretto.Cache[string, overEntry] {
	oc.mu.RLock()
	return oc.c
}

func (oc *overCache) release() { oc.mu.RUnlock() }

// wait applies the cache's buffered writes (for tests).
func (oc *overCache) wait() {
	if c := oc.acquire(); c != nil {
		c.Wait()
	}
	oc.release()
}

// splitHashTag splits a Hit.Key "domain|k1=v1|k2=v2|…" into the hash tag
// "domain|k1=v1" and the rest "|k2=v2|…". A key with fewer than two '|'
// is all tag.
func splitHashTag(key string) (tag, rest string) {
	i := strings.IndexByte(key, '|')
	if i < 0 {
		return key, ""
	}
	j := strings.IndexByte(key[i+1:], '|')
	if j < 0 {
		return key, ""
	}
	return key[:i+1+j], key[i+1+j:]
}

// effectiveTag is the part of key Redis Cluster hashes: the text between
// the first '{' and the first '}' after it, if not empty; else the key.
func effectiveTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// keySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its
// effective hash tag, modulo 16384.
func keySlot(key string) uint16 {
	var crc uint16
	for _, b := range []byte(effectiveTag(key)) {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 16383
}
