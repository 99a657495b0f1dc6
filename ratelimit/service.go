package ratelimit

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Request bounds: a request beyond them is refused with InvalidArgument
// rather than costing a store round trip per entry.
const (
	MaxDescriptors = 64
	MaxEntries     = 16
	// maxHits bounds hits_addend so counters stay exact in Redis's Lua
	// numbers (doubles).
	maxHits = 1 << 40
)

// ServiceOptions configure a [Service].
type ServiceOptions struct {
	// FailOpen answers OK when the store fails (failure_mode: allow);
	// otherwise the RPC fails with UNAVAILABLE and Envoy's own failure mode
	// applies.
	FailOpen bool
	// ResponseHeaders adds RateLimit-Limit, RateLimit-Remaining and
	// RateLimit-Reset to the client's response.
	ResponseHeaders bool
	// Logger receives store failures; nil discards.
	Logger *slog.Logger
	// MeterProvider provides the rate-limit metrics; nil means none.
	MeterProvider metric.MeterProvider
	// TracerProvider provides the portcullis.ratelimit span; nil uses the
	// provider of the span in ShouldRateLimit's context (the gRPC server span's), when
	// that span is recording.
	TracerProvider trace.TracerProvider
}

// Service implements Envoy's RateLimitService over a Config and a Store. The
// configuration is swapped atomically with SetConfig. A Service is safe for
// concurrent use.
type Service struct {
	rlsv3.UnimplementedRateLimitServiceServer
	store  Store
	opts   ServiceOptions
	logger *slog.Logger
	config atomic.Pointer[Config]

	metrics serviceMetrics
}

type countKey struct {
	domain string
	code   rlsv3.RateLimitResponse_Code
}

// unknownDomain is the metric label of a domain the configuration does not
// have: domains come from the caller, and labels must stay a closed set.
const unknownDomain = "_unknown"

var _ rlsv3.RateLimitServiceServer = (*Service)(nil)

// NewService returns a Service counting in store. It panics if store is nil.
func NewService(store Store, opts *ServiceOptions) *Service {
	if store == nil {
		panic("ratelimit: nil Store")
	}
	o := ServiceOptions{}
	if opts != nil {
		o = *opts
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, opts: o, logger: logger, metrics: newServiceMetrics(o.MeterProvider, backendName(store))}
}

// SetConfig installs a configuration; in-flight requests finish on the old
// one.
func (s *Service) SetConfig(c *Config) { s.config.Store(c) }

// ShouldRateLimit implements rlsv3.RateLimitServiceServer.
func (s *Service) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (resp *rlsv3.RateLimitResponse, err error) {
	domain := req.GetDomain()
	descs := req.GetDescriptors()
	if span := s.startSpan(ctx); span != nil {
		ctx = trace.ContextWithSpan(ctx, span)
		defer func() { s.endSpan(span, domain, len(descs), resp, err) }()
	}
	switch {
	case domain == "":
		return nil, status.Error(codes.InvalidArgument, "rate limit domain must not be empty")
	case len(descs) == 0:
		return nil, status.Error(codes.InvalidArgument, "rate limit descriptor list must not be empty")
	case len(descs) > MaxDescriptors:
		return nil, status.Errorf(codes.InvalidArgument, "more than %d descriptors", MaxDescriptors)
	}
	statuses := make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(descs))
	for i := range statuses {
		statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
	}
	resp = &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: statuses}
	cfg := s.config.Load()
	if cfg == nil {
		s.count(ctx, domain, resp.OverallCode)
		return resp, nil
	}

	// Match every descriptor, then drop the limits that matched limits
	// replace.
	matched := make([][]*Limit, len(descs))
	var replaced map[string]bool
	var entries []Entry
	for i, d := range descs {
		if len(d.GetEntries()) > MaxEntries {
			return nil, status.Errorf(codes.InvalidArgument, "descriptor %d has more than %d entries", i, MaxEntries)
		}
		entries = entries[:0]
		for _, e := range d.GetEntries() {
			entries = append(entries, Entry{Key: e.GetKey(), Value: e.GetValue()})
		}
		matched[i] = cfg.Match(domain, entries)
		for _, l := range matched[i] {
			for _, r := range l.Replaces {
				if replaced == nil {
					replaced = map[string]bool{}
				}
				replaced[r] = true
			}
		}
	}

	requestHits := uint64(req.GetHitsAddend())
	if requestHits == 0 {
		requestHits = 1
	}
	var hits []Hit
	var owner []int // hits[j] belongs to descriptor owner[j]
	for i, d := range descs {
		n := requestHits
		if h := d.GetHitsAddend(); h != nil {
			n = h.GetValue()
		}
		n = min(n, maxHits)
		for _, l := range matched[i] {
			if l.Unlimited || (l.Name != "" && replaced[l.Name]) {
				continue
			}
			hits = append(hits, Hit{Key: hitKey(domain, d.GetEntries(), l), Limit: l, Hits: n})
			owner = append(owner, i)
		}
	}
	if len(hits) == 0 {
		s.count(ctx, domain, resp.OverallCode)
		return resp, nil
	}

	start := time.Now()
	outcomes, err := s.store.Take(ctx, hits)
	s.metrics.storeTime.Record(ctx, time.Since(start).Seconds(), s.metrics.storeOpts...)
	if err != nil {
		s.metrics.storeError(ctx, err)
		s.logger.LogAttrs(ctx, slog.LevelWarn, "rate limit store failed", slog.String("domain", domain), slog.Any("error", err))
		if !s.opts.FailOpen {
			return nil, status.Error(codes.Unavailable, "rate limit store unavailable")
		}
		s.metrics.failedOpened.Add(ctx, 1, metric.WithAttributes(attribute.String("domain", domain)))
		s.count(ctx, domain, resp.OverallCode)
		return resp, nil
	}

	// Per descriptor: an over-limit non-shadow hit decides; otherwise the
	// hit with the least remaining is reported.
	chosen := make([]int, len(descs))
	for i := range chosen {
		chosen[i] = -1
	}
	rejected := false
	for j, o := range outcomes {
		if o.OverLimit && !hits[j].Limit.ShadowMode {
			rejected = true
		}
	}
	for j, o := range outcomes {
		i, l := owner[j], hits[j].Limit
		// Near the limit counts admitted hits only: a rejected request
		// moved no counter.
		var near uint64
		if !rejected {
			near = nearLimitHits(&hits[j], o)
		}
		if o.OverLimit || near > 0 {
			kv := []attribute.KeyValue{attribute.String("domain", domain), attribute.String("key", l.Key)}
			if l.DetailedMetric { // descriptor values only where the config asks for them
				kv = append(kv, attribute.String("descriptor", descriptorValues(descs[i].GetEntries())))
			}
			attrs := metric.WithAttributes(kv...)
			switch {
			case o.OverLimit && l.ShadowMode:
				s.metrics.shadow.Add(ctx, 1, attrs)
			case o.OverLimit:
				s.metrics.overLimit.Add(ctx, 1, attrs)
			default:
				s.metrics.nearLimit.Add(ctx, int64(min(near, math.MaxInt64)), attrs)
			}
		}
		c := chosen[i]
		switch {
		case c < 0:
			chosen[i] = j
		case o.OverLimit && !l.ShadowMode && !(outcomes[c].OverLimit && !hits[c].Limit.ShadowMode):
			chosen[i] = j
		case !(outcomes[c].OverLimit && !hits[c].Limit.ShadowMode) && o.Remaining < outcomes[c].Remaining:
			chosen[i] = j
		}
	}
	tightest := -1
	for i, j := range chosen {
		if j < 0 {
			continue
		}
		o, l := outcomes[j], hits[j].Limit
		st := statuses[i]
		if o.OverLimit && !l.ShadowMode {
			st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		st.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{
			Name:            l.Name,
			RequestsPerUnit: uint32(min(l.ReportRequests, math.MaxUint32)),
			Unit:            reportUnit(l.ReportUnit),
		}
		st.LimitRemaining = uint32(min(o.Remaining, math.MaxUint32))
		st.DurationUntilReset = durationpb.New(o.ResetAfter)
		if tightest < 0 || st.Code == rlsv3.RateLimitResponse_OVER_LIMIT && statuses[tightest].Code != st.Code ||
			statuses[tightest].Code == st.Code && st.LimitRemaining < statuses[tightest].LimitRemaining {
			tightest = i
		}
	}
	if s.opts.ResponseHeaders && tightest >= 0 {
		st := statuses[tightest]
		j := chosen[tightest]
		resp.ResponseHeadersToAdd = []*corev3.HeaderValue{
			{Key: "RateLimit-Limit", Value: strconv.FormatUint(hits[j].Limit.Requests, 10)},
			{Key: "RateLimit-Remaining", Value: strconv.FormatUint(uint64(st.LimitRemaining), 10)},
			{Key: "RateLimit-Reset", Value: strconv.FormatInt(int64(math.Ceil(outcomes[j].ResetAfter.Seconds())), 10)},
		}
	}
	s.count(ctx, domain, resp.OverallCode)
	return resp, nil
}

const tracerName = "github.com/portcullis-mcp/portcullis/ratelimit"

// startSpan starts the portcullis.ratelimit span, or returns nil when
// nothing would record it.
func (s *Service) startSpan(ctx context.Context) trace.Span {
	tp := s.opts.TracerProvider
	if tp == nil {
		parent := trace.SpanFromContext(ctx)
		if !parent.IsRecording() {
			return nil
		}
		tp = parent.TracerProvider()
	}
	_, span := tp.Tracer(tracerName).Start(ctx, "portcullis.ratelimit", trace.WithSpanKind(trace.SpanKindInternal))
	if !span.IsRecording() {
		span.End()
		return nil
	}
	return span
}

// endSpan records the domain, the number of descriptors, the store backend
// and the overall code, and ends span. Descriptor values are never recorded.
func (s *Service) endSpan(span trace.Span, domain string, descriptors int, resp *rlsv3.RateLimitResponse, err error) {
	backend := s.metrics.backend
	code := "error"
	if err == nil {
		code = resp.GetOverallCode().String()
	} else {
		span.SetStatus(otelcodes.Error, status.Code(err).String())
	}
	span.SetAttributes(
		attribute.String("portcullis.ratelimit.domain", domain),
		attribute.Int("portcullis.ratelimit.descriptors", descriptors),
		attribute.String("portcullis.ratelimit.backend", backend),
		attribute.String("portcullis.ratelimit.overall_code", code),
	)
	span.End()
}

func (s *Service) count(ctx context.Context, domain string, code rlsv3.RateLimitResponse_Code) {
	if !s.config.Load().HasDomain(domain) {
		domain = unknownDomain
	}
	s.metrics.requests.Series(countKey{domain, code}).Add(1)
}

// hitKey is the counter key of one limit for one request descriptor: the
// domain, the descriptor's entries, and the limit's identity (its
// configuration path, window and algorithm, so a changed limit starts
// fresh). The store derives its hash tag from the domain and the first
// entry.
func hitKey(domain string, entries []*rlcommonv3.RateLimitDescriptor_Entry, l *Limit) string {
	var b strings.Builder
	b.Grow(64)
	b.WriteString(domain)
	for _, e := range entries {
		b.WriteByte('|')
		writeEscaped(&b, e.GetKey())
		b.WriteByte('=')
		writeEscaped(&b, e.GetValue())
	}
	b.WriteByte('|')
	b.WriteString(l.Key)
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(l.Window.Milliseconds(), 10))
	b.WriteByte('|')
	b.WriteString(l.Algorithm.String())
	return b.String()
}

// descriptorValues renders a descriptor's entries as "k1=v1,k2=v2" for a
// detailed metric label.
func descriptorValues(entries []*rlcommonv3.RateLimitDescriptor_Entry) string {
	var b strings.Builder
	for i, e := range entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e.GetKey())
		b.WriteByte('=')
		b.WriteString(e.GetValue())
	}
	return b.String()
}

// writeEscaped writes s with the key separators escaped, so that no two
// descriptors share a key.
func writeEscaped(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '|', '=', '\\', '{', '}':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}

func reportUnit(u string) rlsv3.RateLimitResponse_RateLimit_Unit {
	switch u {
	case "second":
		return rlsv3.RateLimitResponse_RateLimit_SECOND
	case "minute":
		return rlsv3.RateLimitResponse_RateLimit_MINUTE
	case "hour":
		return rlsv3.RateLimitResponse_RateLimit_HOUR
	case "day":
		return rlsv3.RateLimitResponse_RateLimit_DAY
	case "week":
		return rlsv3.RateLimitResponse_RateLimit_WEEK
	case "month":
		return rlsv3.RateLimitResponse_RateLimit_MONTH
	case "year":
		return rlsv3.RateLimitResponse_RateLimit_YEAR
	}
	return rlsv3.RateLimitResponse_RateLimit_UNKNOWN
}
