package ratelimit

import (
	"context"
	"errors"
	"net"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

const meterName = "github.com/portcullis-mcp/portcullis/ratelimit"

// Metric names. Labels are the domain, the limit key (its configuration
// path), the backend, and descriptor values only for limits with
// detailed_metric.
const (
	metricRequests        = "portcullis.ratelimit.requests"
	metricOverLimit       = "portcullis.ratelimit.over_limit"
	metricNearLimit       = "portcullis.ratelimit.near_limit"
	metricShadowMode      = "portcullis.ratelimit.shadow_mode"
	metricStoreErrors     = "portcullis.ratelimit.store_errors"
	metricStoreDuration   = "portcullis.ratelimit.store.duration"
	metricFailureAllowed  = "portcullis.ratelimit.failure_mode_allowed"
	metricOverLimitCache  = "portcullis.ratelimit.over_limit_cache.lookups"
	metricCircuitState    = "portcullis.ratelimit.circuit.state"
	metricCircuitOpenings = "portcullis.ratelimit.circuit.opens"
)

// nearLimitRatio is envoyproxy/ratelimit's: a hit that takes a counter
// past 80% of its limit, but not over it, is near the limit.
const nearLimitRatio = 0.8

func meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	return mp.Meter(meterName)
}

// backendName names a store in metrics and spans.
func backendName(s Store) string {
	switch s.(type) {
	case *MemoryStore:
		return "memory"
	case *RedisStore:
		return "redis"
	}
	return "custom"
}

// maxCountKeys bounds the requests counter's series: (domain, code) for
// the domains of the configurations loaded, and unknownDomain.
const maxCountKeys = 4096

// serviceMetrics are the Service's instruments.
type serviceMetrics struct {
	requests     *telemetry.LabeledCounter[countKey] // domains are configured ones or unknownDomain
	overLimit    metric.Int64Counter
	nearLimit    metric.Int64Counter
	shadow       metric.Int64Counter
	storeErrors  metric.Int64Counter
	failedOpened metric.Int64Counter
	storeTime    metric.Float64Histogram

	backend   string
	storeOpts []metric.RecordOption // backend
}

func newServiceMetrics(mp metric.MeterProvider, backend string) serviceMetrics {
	m := meter(mp)
	s := serviceMetrics{backend: backend}
	s.requests = telemetry.NewLabeledCounter(telemetry.NewCounterVec(m, metricRequests, metric.WithUnit("{request}"),
		metric.WithDescription("ShouldRateLimit calls, by domain and overall code.")),
		maxCountKeys, func(k countKey) attribute.Set {
			return attribute.NewSet(attribute.String("domain", k.domain), attribute.String("code", k.code.String()))
		})
	s.overLimit, _ = m.Int64Counter(metricOverLimit, metric.WithUnit("{hit}"),
		metric.WithDescription("Descriptors over their limit, by domain and limit key."))
	s.nearLimit, _ = m.Int64Counter(metricNearLimit, metric.WithUnit("{hit}"),
		metric.WithDescription("Hits admitted past 80% of their limit, by domain and limit key (as envoyproxy/ratelimit counts them)."))
	s.shadow, _ = m.Int64Counter(metricShadowMode, metric.WithUnit("{hit}"),
		metric.WithDescription("Descriptors over a shadow-mode limit (admitted), by domain and limit key."))
	s.storeErrors, _ = m.Int64Counter(metricStoreErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Store failures, by backend and reason (circuit_open, timeout, error)."))
	s.failedOpened, _ = m.Int64Counter(metricFailureAllowed, metric.WithUnit("{request}"),
		metric.WithDescription("Requests answered OK because the store failed and failure_mode is allow."))
	s.storeTime, _ = m.Float64Histogram(metricStoreDuration, metric.WithUnit("s"),
		metric.WithDescription("Time the store took to answer one request (a Redis round trip, or the over-limit cache), by backend."),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets()...))
	s.storeOpts = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("backend", backend)))}
	return s
}

// storeError counts a failed Take by its reason.
func (s *serviceMetrics) storeError(ctx context.Context, err error) {
	reason := "error"
	var ne net.Error
	switch {
	case errors.Is(err, errCircuitOpen):
		reason = "circuit_open"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		reason = "timeout"
	case errors.Is(err, context.Canceled):
		reason = "canceled"
	}
	s.storeErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("backend", s.backend), attribute.String("reason", reason)))
}

// nearLimitHits returns how many of an admitted hit's units landed past
// the near-limit threshold, as envoyproxy/ratelimit counts them: all of
// them when the counter was already past it, else those beyond it. The
// counter before and after is derived from Remaining, which for sliding
// windows and GCRA is an estimate: so is the result.
func nearLimitHits(h *Hit, o Outcome) uint64 {
	l := h.Limit
	if o.OverLimit || l.Unlimited || h.Hits == 0 {
		return 0
	}
	capacity := l.Requests
	if l.Algorithm == GCRA {
		capacity = max(l.Burst, 1)
	}
	if capacity == 0 || o.Remaining >= capacity {
		return 0
	}
	threshold := uint64(float64(capacity) * nearLimitRatio)
	after := capacity - o.Remaining
	if after <= threshold {
		return 0
	}
	if before := after - min(h.Hits, after); before >= threshold {
		return h.Hits
	}
	return after - threshold
}
