package identity

import (
	"context"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

// This file holds the providers' metrics and the spans of their HTTP calls.
// Labels are provider names (configuration), cache names and results:
// never a token, a subject or a URL.

const meterName = "github.com/portcullis-mcp/portcullis/identity"

// Metric names.
const (
	metricCacheLookups          = "portcullis.identity.cache.lookups"
	metricJWKSRefreshes         = "portcullis.identity.jwks.refreshes"
	metricIntrospectionRequests = "portcullis.identity.introspection.requests"
	metricIntrospectionDuration = "portcullis.identity.introspection.duration"
)

// Metric attribute keys and values.
const (
	labelProvider = "provider"
	labelCache    = "cache"
	labelResult   = "result"
	labelTrigger  = "trigger"

	cacheJWT           = "jwt"
	cacheIntrospection = "introspection"
	cacheBasic         = "basic"

	triggerScheduled  = "scheduled"
	triggerUnknownKID = "unknown_kid"

	resultHit      = "hit"
	resultMiss     = "miss"
	resultSuccess  = "success"
	resultFailure  = "failure"
	resultActive   = "active"
	resultInactive = "inactive"
	resultError    = "error"
)

// Span attribute keys.
const (
	attrProvider     = "portcullis.identity.provider"
	attrCacheHit     = "portcullis.identity.cache_hit"
	attrJWKSTrigger  = "portcullis.jwks.trigger"
	attrJWKSResult   = "portcullis.jwks.result"
	attrJWKSKeys     = "portcullis.jwks.keys"
	attrIntrospected = "portcullis.introspection.result"
)

func meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	return mp.Meter(meterName)
}

// cacheMetrics counts the lookups of one provider's cache of verified
// credentials: hits over hits and misses is its hit ratio.
type cacheMetrics struct {
	hit, miss *telemetry.CounterSeries
}

func newCacheMetrics(mp metric.MeterProvider, provider, cache string) cacheMetrics {
	// One CounterVec per cache: each reports its own series (provider and
	// cache differ) of the one instrument.
	c := telemetry.NewCounterVec(meter(mp), metricCacheLookups, metric.WithUnit("{lookup}"),
		metric.WithDescription("Lookups of a provider's cache of verified credentials, by provider, cache and result (hit or miss)."))
	return cacheMetrics{
		hit:  c.Series(attribute.NewSet(attribute.String(labelProvider, provider), attribute.String(labelCache, cache), attribute.String(labelResult, resultHit))),
		miss: c.Series(attribute.NewSet(attribute.String(labelProvider, provider), attribute.String(labelCache, cache), attribute.String(labelResult, resultMiss))),
	}
}

// record counts one lookup and notes it on the identity span, if any.
func (m *cacheMetrics) record(ctx context.Context, hit bool) {
	if m.hit == nil {
		return
	}
	if hit {
		m.hit.Add(1)
	} else {
		m.miss.Add(1)
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.Bool(attrCacheHit, hit))
	}
}

// tracerFor returns the tracer of tp, or of the recording span in ctx when
// tp is nil; nil when nothing would record.
func tracerFor(ctx context.Context, tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		parent := trace.SpanFromContext(ctx)
		if !parent.IsRecording() {
			return nil
		}
		tp = parent.TracerProvider()
	}
	return tp.Tracer(tracerName)
}

// startHTTPSpan starts a client span for an HTTP request to an identity
// provider's endpoint, named by the method as OpenTelemetry's HTTP
// conventions ask. The URL is recorded without user info or query; the
// body and the headers (client credentials, the token) never are. It
// returns nil when t is nil or the span does not record.
func startHTTPSpan(ctx context.Context, t trace.Tracer, method, provider string, u *url.URL) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	ctx, span := t.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient))
	if !span.IsRecording() {
		span.End()
		return ctx, nil
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String(attrProvider, provider),
	}
	if u != nil {
		clean := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
		attrs = append(attrs, attribute.String("url.full", clean.String()), attribute.String("server.address", u.Hostname()))
		if p, err := strconv.Atoi(u.Port()); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	}
	span.SetAttributes(attrs...)
	return ctx, span
}

// endHTTPSpan records the response status, or the failure, and ends span.
// Error texts are not recorded: they may quote a response.
func endHTTPSpan(span trace.Span, status int, failed bool) {
	if span == nil {
		return
	}
	if status > 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	switch {
	case status >= 400:
		span.SetAttributes(attribute.String("error.type", strconv.Itoa(status)))
		span.SetStatus(codes.Error, "HTTP "+strconv.Itoa(status))
	case failed:
		span.SetAttributes(attribute.String("error.type", "request_failed"))
		span.SetStatus(codes.Error, "request failed")
	}
	span.End()
}

// durationHistogram is the histogram of an identity provider's HTTP calls.
func durationHistogram(mp metric.MeterProvider, name, desc string) metric.Float64Histogram {
	h, _ := meter(mp).Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets()...))
	return h
}
