package telemetry

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// CounterVec is a monotonic counter for hot paths: each series is an
// atomic integer, so counting is one atomic add, and an observable counter
// reports every series when the metrics are collected. What is exported is
// the same cumulative sum a synchronous Int64Counter would give: name,
// unit, description, attributes and values. A synchronous counter spends
// about a microsecond per Add under load on looking up and aggregating the
// attribute set, more than the atomic by far, and it is called once per
// Check, per decision-cache lookup and per ShouldRateLimit. Two
// differences: a series is exported from its creation, at 0 until counted
// (a synchronous counter shows it after its first Add; Prometheus
// recommends the former for label values known in advance), and there are
// no exemplars, which a synchronous counter takes from the sampled span of
// the context of an Add.
//
// Series are kept for the life of the CounterVec; callers bound how many
// they ask for, as they bound label values. A CounterVec is safe for
// concurrent use.
type CounterVec struct {
	mu     sync.Mutex
	series map[attribute.Distinct]*CounterSeries
	list   atomic.Pointer[[]*CounterSeries] // what the callback reports
}

// CounterSeries is one series of a [CounterVec].
type CounterSeries struct {
	n   atomic.Int64
	opt metric.ObserveOption
}

// Add counts n (n ≥ 0).
func (s *CounterSeries) Add(n int64) { s.n.Add(n) }

// Value is the series' count so far.
func (s *CounterSeries) Value() int64 { return s.n.Load() }

// NewCounterVec returns a CounterVec exported by m as the observable counter
// name. A meter that cannot create it (an invalid name) gives a CounterVec
// that counts but reports nothing, as a failed synchronous instrument does.
func NewCounterVec(m metric.Meter, name string, opts ...metric.Int64ObservableCounterOption) *CounterVec {
	c := &CounterVec{series: map[attribute.Distinct]*CounterSeries{}}
	c.list.Store(&[]*CounterSeries{})
	inst, err := m.Int64ObservableCounter(name, opts...)
	if err != nil {
		return c
	}
	// The callback lives as long as the meter provider, as the owner of
	// the CounterVec does.
	_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range *c.list.Load() {
			o.ObserveInt64(inst, s.n.Load(), s.opt)
		}
		return nil
	}, inst)
	return c
}

// Series returns the series of set, creating it on first use. Callers keep
// the series they count on: looking one up takes a lock.
func (c *CounterVec) Series(set attribute.Set) *CounterSeries {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.series[set.Equivalent()]; ok {
		return s
	}
	s := &CounterSeries{opt: metric.WithAttributeSet(set)}
	c.series[set.Equivalent()] = s
	list := append(append(make([]*CounterSeries, 0, len(c.series)), *c.list.Load()...), s)
	c.list.Store(&list)
	return s
}

// OverflowSet is the attribute set of the series that counts past a
// caller's limit on series, as the OpenTelemetry SDK names its own
// cardinality overflow.
var OverflowSet = attribute.NewSet(attribute.Bool("otel.metric.overflow", true))

// LabeledCounter finds the series of a [CounterVec] by a comparable key of
// the caller's labels, building each key's attribute set once: after the
// first count of a key, Series is a read-locked map lookup that allocates
// nothing. Past max keys, further keys count in the overflow series
// ([OverflowSet]): labels are closed sets, so the bound is a guard.
type LabeledCounter[K comparable] struct {
	vec   *CounterVec
	attrs func(K) attribute.Set
	max   int

	mu     sync.RWMutex
	series map[K]*CounterSeries
}

// NewLabeledCounter returns a LabeledCounter of vec whose key k has the
// attributes attrs(k).
func NewLabeledCounter[K comparable](vec *CounterVec, max int, attrs func(K) attribute.Set) *LabeledCounter[K] {
	return &LabeledCounter[K]{vec: vec, attrs: attrs, max: max, series: map[K]*CounterSeries{}}
}

// Series returns the series of key k.
func (c *LabeledCounter[K]) Series(k K) *CounterSeries {
	c.mu.RLock()
	s, ok := c.series[k]
	c.mu.RUnlock()
	if ok {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.series[k]; ok {
		return s
	}
	if len(c.series) >= c.max {
		return c.vec.Series(OverflowSet)
	}
	s = c.vec.Series(c.attrs(k))
	c.series[k] = s
	return s
}
