package envoy

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Headers of Envoy's rate-limit filter.
const (
	headerRateLimited         = "x-envoy-ratelimited"
	headerXRateLimitLimit     = "x-ratelimit-limit"
	headerXRateLimitRemaining = "x-ratelimit-remaining"
	headerXRateLimitReset     = "x-ratelimit-reset"
	maxHitsAddend             = 1_000_000_000 // Envoy's bound on hits_addend
)

// rateLimitFilter builds the route's descriptors, asks the rate limit
// service and applies its answer, as envoy.filters.http.ratelimit does.
func (st *stream) rateLimitFilter(c *ratelimitfilterv3.RateLimit) bool {
	var descriptors []*ratelimitcommonv3.RateLimitDescriptor
	for _, rl := range st.route.GetRoute().GetRateLimits() {
		if rl.GetStage().GetValue() != c.GetStage() {
			continue
		}
		if d, ok := st.descriptor(rl); ok {
			descriptors = append(descriptors, d)
		}
	}
	if len(descriptors) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(st.r.Context(), durationOr(c.GetTimeout(), defaultRateLimitTimeout))
	defer cancel()
	cluster := c.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
	resp, err := st.f.rls[cluster].ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: c.GetDomain(), Descriptors: descriptors})
	if err == nil && resp.GetOverallCode() == rlsv3.RateLimitResponse_UNKNOWN {
		err = errUnknownCode
	}
	if err != nil {
		if !c.GetFailureModeDeny() {
			return true
		}
		status := http.StatusInternalServerError
		if code := int(c.GetStatusOnError().GetCode()); code != 0 {
			status = code
		}
		st.localReply(status, nil, "")
		return false
	}
	if md := resp.GetDynamicMetadata(); md != nil {
		st.mergeMetadata(filterRateLimit, md)
	}
	if c.GetEnableXRatelimitHeaders() == ratelimitfilterv3.RateLimit_DRAFT_VERSION_03 {
		xRateLimitHeaders(st.respHeader, resp.GetStatuses())
	}
	for _, h := range resp.GetResponseHeadersToAdd() {
		st.respHeader.Add(h.GetKey(), h.GetValue())
	}
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		status := http.StatusTooManyRequests
		if code := int(c.GetRateLimitedStatus().GetCode()); code >= 400 {
			status = code
		}
		h := http.Header{}
		if !c.GetDisableXEnvoyRatelimitedHeader() {
			h.Set(headerRateLimited, "true")
		}
		st.localReply(status, h, string(resp.GetRawBody()))
		return false
	}
	for _, h := range resp.GetRequestHeadersToAdd() {
		st.headers.Add(h.GetKey(), h.GetValue())
	}
	return true
}

var errUnknownCode = errors.New("rate limit service answered UNKNOWN")

// descriptor builds one descriptor from a route's rate_limits entry. Like
// Envoy, it returns false when an action cannot produce its entry (and
// does not skip it), and when no entry results.
func (st *stream) descriptor(rl *routev3.RateLimit) (*ratelimitcommonv3.RateLimitDescriptor, bool) {
	d := &ratelimitcommonv3.RateLimitDescriptor{}
	for _, a := range rl.GetActions() {
		e, skip, ok := st.entry(a)
		if !ok {
			return nil, false
		}
		if !skip {
			d.Entries = append(d.Entries, e)
		}
	}
	if len(d.Entries) == 0 {
		return nil, false
	}
	if ha := rl.GetHitsAddend(); ha != nil {
		n, ok := st.hitsAddend(ha)
		if !ok {
			return nil, false // not a number in range: Envoy ignores the descriptor
		}
		d.HitsAddend = wrapperspb.UInt64(n)
	}
	return d, true
}

// entry is the descriptor entry of one action; skip reports an absent
// value that the action says to leave out.
func (st *stream) entry(a *routev3.RateLimit_Action) (e *ratelimitcommonv3.RateLimitDescriptor_Entry, skip, ok bool) {
	switch {
	case a.GetRequestHeaders() != nil:
		rh := a.GetRequestHeaders()
		v := st.headerValue(rh.GetHeaderName())
		if v == "" {
			return nil, rh.GetSkipIfAbsent(), rh.GetSkipIfAbsent()
		}
		return &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: rh.GetDescriptorKey(), Value: v}, false, true
	case a.GetRemoteAddress() != nil:
		if st.remote == nil {
			return nil, false, false
		}
		return &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: "remote_address", Value: st.remote.IP.String()}, false, true
	case a.GetGenericKey() != nil:
		g := a.GetGenericKey()
		key := g.GetDescriptorKey()
		if key == "" {
			key = "generic_key"
		}
		return &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: key, Value: g.GetDescriptorValue()}, false, true
	case a.GetHeaderValueMatch() != nil:
		m := a.GetHeaderValueMatch()
		expect := m.GetExpectMatch() == nil || m.GetExpectMatch().GetValue()
		if st.headersMatch(m.GetHeaders()) != expect {
			return nil, false, false
		}
		key := m.GetDescriptorKey()
		if key == "" {
			key = "header_match"
		}
		return &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: key, Value: m.GetDescriptorValue()}, false, true
	case a.GetMetadata() != nil:
		m := a.GetMetadata()
		v, _ := st.metadataValue(m.GetMetadataKey().GetKey(), pathKeys(m.GetMetadataKey().GetPath()))
		s := v.GetStringValue() // only a string value matches
		if s == "" {
			s = m.GetDefaultValue()
		}
		if s == "" {
			return nil, m.GetSkipIfAbsent(), m.GetSkipIfAbsent()
		}
		return &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: m.GetDescriptorKey(), Value: s}, false, true
	}
	return nil, false, false // New refuses other actions
}

// hitsAddend evaluates a route's hits_addend: a number, or the format
// %DYNAMIC_METADATA(ns:key)% whose value must be a non-negative integer
// (a number or its decimal string) no greater than 10^9.
func (st *stream) hitsAddend(ha *routev3.RateLimit_HitsAddend) (uint64, bool) {
	if ha.GetFormat() == "" {
		n := ha.GetNumber().GetValue()
		return n, n <= maxHitsAddend
	}
	parts, _ := metadataFormat(ha.GetFormat())
	v, ok := st.metadataValue(parts[0], parts[1:])
	if !ok {
		return 0, false
	}
	var f float64
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		f = k.NumberValue
	case *structpb.Value_StringValue:
		n, err := strconv.ParseUint(k.StringValue, 10, 64)
		if err != nil {
			return 0, false
		}
		f = float64(n)
	default:
		return 0, false
	}
	if f < 0 || f > maxHitsAddend || f != math.Trunc(f) {
		return 0, false
	}
	return uint64(f), true
}

// metadataValue looks a value up in the dynamic metadata.
func (st *stream) metadataValue(ns string, path []string) (*structpb.Value, bool) {
	s, ok := st.metadata[ns]
	if !ok || len(path) == 0 {
		return nil, false
	}
	var v *structpb.Value
	for i, k := range path {
		if v, ok = s.GetFields()[k]; !ok {
			return nil, false
		}
		if i < len(path)-1 {
			if s = v.GetStructValue(); s == nil {
				return nil, false
			}
		}
	}
	return v, true
}

func pathKeys(segs []*metadatav3.MetadataKey_PathSegment) []string {
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.GetKey()
	}
	return out
}

// headerValue is a request header's value as Envoy's header map returns
// it for one name: the values joined with ",".
func (st *stream) headerValue(name string) string {
	switch strings.ToLower(name) {
	case ":authority", "host":
		return st.host
	case ":path":
		return st.pathWithQuery()
	case ":method":
		return st.r.Method
	case ":scheme":
		return "http"
	}
	return strings.Join(st.headers.Values(name), ",")
}

// headersMatch reports whether every matcher matches (Envoy's
// HeaderMatcher: a string match on the joined value, or presence, each
// optionally inverted).
func (st *stream) headersMatch(ms []*routev3.HeaderMatcher) bool {
	for _, m := range ms {
		v := st.headerValue(m.GetName())
		present := v != "" || len(st.headers.Values(m.GetName())) > 0
		var ok bool
		switch {
		case m.GetStringMatch() != nil:
			ok = present && stringMatch(m.GetStringMatch(), v)
		case m.GetPresentMatch():
			ok = present
		default:
			ok = present
		}
		if ok == m.GetInvertMatch() {
			return false
		}
	}
	return true
}

func stringMatch(m *matcherv3.StringMatcher, v string) bool {
	if m.GetIgnoreCase() {
		v = strings.ToLower(v)
	}
	low := func(s string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == low(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, low(p.Prefix))
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(v, low(p.Suffix))
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(v, low(p.Contains))
	}
	return false
}

// xRateLimitHeaders adds the DRAFT_VERSION_03 headers (draft-ietf-httpapi-
// ratelimit-headers-03, as Envoy writes them) for the descriptor with the
// fewest requests remaining: x-ratelimit-limit lists its limit, then each
// limit with its window (";w=" seconds) and name; x-ratelimit-remaining
// and x-ratelimit-reset (seconds) are that descriptor's.
func xRateLimitHeaders(h http.Header, statuses []*rlsv3.RateLimitResponse_DescriptorStatus) {
	var tightest *rlsv3.RateLimitResponse_DescriptorStatus
	var limits []string
	for _, s := range statuses {
		l := s.GetCurrentLimit()
		if l == nil {
			continue
		}
		if tightest == nil || s.GetLimitRemaining() < tightest.GetLimitRemaining() {
			tightest = s
		}
		v := strconv.FormatUint(uint64(l.GetRequestsPerUnit()), 10) + ";w=" + strconv.FormatUint(unitSeconds(l.GetUnit()), 10)
		if l.GetName() != "" {
			v += `;name="` + l.GetName() + `"`
		}
		limits = append(limits, v)
	}
	if tightest == nil {
		return
	}
	first := strconv.FormatUint(uint64(tightest.GetCurrentLimit().GetRequestsPerUnit()), 10)
	h.Set(headerXRateLimitLimit, strings.Join(append([]string{first}, limits...), ", "))
	h.Set(headerXRateLimitRemaining, strconv.FormatUint(uint64(tightest.GetLimitRemaining()), 10))
	if d := tightest.GetDurationUntilReset(); d != nil {
		h.Set(headerXRateLimitReset, strconv.FormatInt(d.GetSeconds(), 10))
	}
}

func unitSeconds(u rlsv3.RateLimitResponse_RateLimit_Unit) uint64 {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	case rlsv3.RateLimitResponse_RateLimit_WEEK:
		return 7 * 86400
	case rlsv3.RateLimitResponse_RateLimit_MONTH:
		return 30 * 86400
	case rlsv3.RateLimitResponse_RateLimit_YEAR:
		return 365 * 86400
	}
	return 0
}
