package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portcullis-mcp/portcullis/ratelimit"
	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// serviceConfig is written in envoyproxy/ratelimit's format, after the
// scenarios its README documents: a default per key with more specific
// values, nested descriptors, unlimited values, shadow mode, replaces.
const serviceConfig = `
domain: mcp
descriptors:
  - key: subject
    rate_limit: { unit: minute, requests_per_unit: 3 }
    descriptors:
      - key: tool
        rate_limit: { unit: minute, requests_per_unit: 2, name: subject_tool }
      - key: tool
        value: search
        rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: client_id
    value: vip
    rate_limit: { unlimited: true }
  - key: client_id
    rate_limit: { unit: second, requests_per_unit: 5 }
  - key: tenant
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: remote_address
    rate_limit: { unit: hour, requests_per_unit: 10, name: by_ip }
  - key: api_key
    rate_limit: { unit: hour, requests_per_unit: 100, replaces: [{name: by_ip}] }
  - key: nolimit
`

// desc builds a descriptor from "k=v" pairs; a trailing "+N" sets its
// hits_addend.
func desc(pairs ...string) *rlcommonv3.RateLimitDescriptor {
	d := &rlcommonv3.RateLimitDescriptor{}
	for _, p := range pairs {
		if n, ok := strings.CutPrefix(p, "+"); ok {
			var v uint64
			fmt.Sscan(n, &v)
			d.HitsAddend = wrapperspb.UInt64(v)
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		d.Entries = append(d.Entries, &rlcommonv3.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	return d
}

// status is the test's view of a descriptor status: code, remaining, and
// the limit's requests per unit (0 when no limit applies).
type st struct {
	Code      string
	Remaining uint32
	Limit     uint32
}

func view(resp *rlsv3.RateLimitResponse) (string, []st) {
	var out []st
	for _, s := range resp.GetStatuses() {
		out = append(out, st{Code: s.GetCode().String(), Remaining: s.GetLimitRemaining(), Limit: s.GetCurrentLimit().GetRequestsPerUnit()})
	}
	return resp.GetOverallCode().String(), out
}

// storeKinds builds each store on a shared fake clock.
func storeKinds(t *testing.T, clock *ratelimittest.Clock) map[string]ratelimit.Store {
	t.Helper()
	stores := map[string]ratelimit.Store{"memory": ratelimit.NewMemoryStore(&ratelimit.MemoryOptions{Now: clock.Now})}
	client := ratelimittest.Redis(t)
	rs, err := ratelimit.NewRedisStore(&ratelimit.RedisOptions{Client: client, Prefix: ratelimittest.RedisPrefix(t), Now: clock.Now, OverLimitCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	stores["redis"] = rs
	return stores
}

func TestServiceSemantics(t *testing.T) {
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(serviceConfig)})
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		domain  string
		hits    uint32
		descs   []*rlcommonv3.RateLimitDescriptor
		overall string
		want    []st
	}
	ok := func(rem, lim uint32) st { return st{"OK", rem, lim} }
	over := func(lim uint32) st { return st{"OVER_LIMIT", 0, lim} }
	none := st{Code: "OK"}
	tests := []struct {
		name  string
		steps []step
	}{
		{"unknown domain is OK", []step{
			{domain: "other", descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}, overall: "OK", want: []st{none}},
		}},
		{"a key's default limit", []step{
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}, overall: "OK", want: []st{ok(2, 3)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}, overall: "OK", want: []st{ok(1, 3)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}, overall: "OK", want: []st{ok(0, 3)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}, overall: "OVER_LIMIT", want: []st{over(3)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob")}, overall: "OK", want: []st{ok(2, 3)}},
		}},
		{"nested descriptors, a specific value, and no quota used by rejections", []step{
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob"), desc("subject=bob", "tool=echo")}, overall: "OK", want: []st{ok(2, 3), ok(1, 2)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob"), desc("subject=bob", "tool=echo")}, overall: "OK", want: []st{ok(1, 3), ok(0, 2)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob"), desc("subject=bob", "tool=echo")}, overall: "OVER_LIMIT", want: []st{ok(1, 3), over(2)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob", "tool=search")}, overall: "OK", want: []st{ok(0, 1)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob", "tool=search")}, overall: "OVER_LIMIT", want: []st{over(1)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob")}, overall: "OK", want: []st{ok(0, 3)}},
		}},
		{"depth must match", []step{
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("tool=echo"), desc("subject=x", "tool=echo", "extra=1"), desc("nolimit=1")}, overall: "OK", want: []st{none, none, none}},
		}},
		{"request hits_addend", []step{
			{hits: 3, descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=carol")}, overall: "OK", want: []st{ok(0, 3)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=carol")}, overall: "OVER_LIMIT", want: []st{over(3)}},
		}},
		{"over-sized hits_addend is refused, not counted", []step{
			{hits: 4, descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=dan")}, overall: "OVER_LIMIT", want: []st{st{"OVER_LIMIT", 3, 3}}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=dan", "+18446744073709551615")}, overall: "OVER_LIMIT", want: []st{st{"OVER_LIMIT", 3, 3}}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=dan")}, overall: "OK", want: []st{ok(2, 3)}},
		}},
		{"descriptor hits_addend 0 only checks", []step{
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=erin", "+0")}, overall: "OK", want: []st{ok(3, 3)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("subject=erin", "+2"), desc("subject=erin", "tool=echo", "+0")}, overall: "OK", want: []st{ok(1, 3), ok(2, 2)}},
		}},
		{"unlimited value beats the key default", []step{
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("client_id=vip"), desc("client_id=std")}, overall: "OK", want: []st{none, ok(4, 5)}},
		}},
		{"shadow mode reports but admits", []step{
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("tenant=t1")}, overall: "OK", want: []st{ok(0, 1)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("tenant=t1")}, overall: "OK", want: []st{ok(0, 1)}},
		}},
		{"replaces", []step{
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("remote_address=192.0.2.1"), desc("api_key=k1")}, overall: "OK", want: []st{none, ok(99, 100)}},
			{descs: []*rlcommonv3.RateLimitDescriptor{desc("remote_address=192.0.2.1")}, overall: "OK", want: []st{ok(9, 10)}},
		}},
	}
	for kind, mk := range map[string]func(*testing.T, *ratelimittest.Clock) ratelimit.Store{
		"memory": func(t *testing.T, c *ratelimittest.Clock) ratelimit.Store { return storeKinds(t, c)["memory"] },
		"redis":  func(t *testing.T, c *ratelimittest.Clock) ratelimit.Store { return storeKinds(t, c)["redis"] },
	} {
		t.Run(kind, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					clock := ratelimittest.NewClock(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
					svc := ratelimit.NewService(mk(t, clock), nil)
					svc.SetConfig(cfg)
					for i, s := range tc.steps {
						domain := s.domain
						if domain == "" {
							domain = "mcp"
						}
						resp, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain, Descriptors: s.descs, HitsAddend: s.hits})
						if err != nil {
							t.Fatalf("step %d: %v", i, err)
						}
						overall, got := view(resp)
						if overall != s.overall {
							t.Errorf("step %d: overall %s, want %s", i, overall, s.overall)
						}
						if diff := cmp.Diff(s.want, got); diff != "" {
							t.Errorf("step %d: statuses (-want +got):\n%s", i, diff)
						}
						clock.Advance(time.Second)
					}
				})
			}
		})
	}
}

func TestServiceResetAndHeaders(t *testing.T) {
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(serviceConfig)})
	if err != nil {
		t.Fatal(err)
	}
	clock := ratelimittest.NewClock(time.Date(2026, 11, 21, 10, 0, 15, 0, time.UTC))
	svc := ratelimit.NewService(ratelimit.NewMemoryStore(&ratelimit.MemoryOptions{Now: clock.Now}), &ratelimit.ServiceOptions{ResponseHeaders: true})
	svc.SetConfig(cfg)
	resp, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "mcp",
		Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=f"), desc("subject=f", "tool=echo")}})
	if err != nil {
		t.Fatal(err)
	}
	s := resp.GetStatuses()[1]
	if got := s.GetDurationUntilReset().AsDuration(); got != 45*time.Second {
		t.Errorf("duration_until_reset = %v, want 45s (the minute's end)", got)
	}
	if s.GetCurrentLimit().GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE || s.GetCurrentLimit().GetName() != "subject_tool" {
		t.Errorf("current_limit = %v", s.GetCurrentLimit())
	}
	want := []*corev3.HeaderValue{{Key: "RateLimit-Limit", Value: "2"}, {Key: "RateLimit-Remaining", Value: "1"}, {Key: "RateLimit-Reset", Value: "45"}}
	if diff := cmp.Diff(want, resp.GetResponseHeadersToAdd(), cmpProto()); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

// failingStore fails every Take.
type failingStore struct{}

func (failingStore) Take(context.Context, []ratelimit.Hit) ([]ratelimit.Outcome, error) {
	return nil, fmt.Errorf("dial: %w", ratelimit.ErrStoreUnavailable)
}

func TestServiceFailureModeAndBadRequests(t *testing.T) {
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(serviceConfig)})
	if err != nil {
		t.Fatal(err)
	}
	req := &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=a")}}
	open := ratelimit.NewService(failingStore{}, &ratelimit.ServiceOptions{FailOpen: true})
	open.SetConfig(cfg)
	if resp, err := open.ShouldRateLimit(context.Background(), req); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("failure_mode allow: %v, %v", resp, err)
	}
	closed := ratelimit.NewService(failingStore{}, nil)
	closed.SetConfig(cfg)
	if _, err := closed.ShouldRateLimit(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Errorf("failure_mode deny: %v, want UNAVAILABLE", err)
	}
	many := make([]*rlcommonv3.RateLimitDescriptor, 1000)
	for i := range many {
		many[i] = desc("subject=a")
	}
	long := desc()
	for i := range 100 {
		long.Entries = append(long.Entries, &rlcommonv3.RateLimitDescriptor_Entry{Key: fmt.Sprint("k", i), Value: "v"})
	}
	for name, r := range map[string]*rlsv3.RateLimitRequest{
		"no domain":        {Descriptors: req.Descriptors},
		"no descriptors":   {Domain: "mcp"},
		"1000 descriptors": {Domain: "mcp", Descriptors: many},
		"100 entries":      {Domain: "mcp", Descriptors: []*rlcommonv3.RateLimitDescriptor{long}},
	} {
		if _, err := open.ShouldRateLimit(context.Background(), r); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if !errors.Is(fmt.Errorf("x: %w", ratelimit.ErrStoreUnavailable), ratelimit.ErrStoreUnavailable) {
		t.Fatal("ErrStoreUnavailable does not wrap")
	}
}

func cmpProto() cmp.Option { return protocmp.Transform() }

// BenchmarkShouldRateLimit measures one call with two descriptors (subject,
// subject+tool) on each store; the limits are high enough never to reject.
// hotPath is the configuration and the request of the hot-path benchmark
// and allocation ceiling: Envoy's two MCP descriptors, (subject) and
// (subject, tool), under limits no load reaches.
func hotPath(t testing.TB) (*ratelimit.Config, *rlsv3.RateLimitRequest) {
	t.Helper()
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(`
domain: mcp
descriptors:
  - key: subject
    rate_limit: { unit: second, requests_per_unit: 1000000000 }
    descriptors:
      - key: tool
        rate_limit: { unit: second, requests_per_unit: 1000000000 }
`)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice"), desc("subject=alice", "tool=echo")}}
}

func BenchmarkShouldRateLimit(b *testing.B) {
	cfg, req := hotPath(b)
	redisStore, err := ratelimit.NewRedisStore(&ratelimit.RedisOptions{Client: ratelimittest.Redis(b), Prefix: ratelimittest.RedisPrefix(b)})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		store ratelimit.Store
	}{{"memory", ratelimit.NewMemoryStore(nil)}, {"redis", redisStore}} {
		b.Run(bc.name, func(b *testing.B) {
			svc := ratelimit.NewService(bc.store, nil)
			svc.SetConfig(cfg)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := svc.ShouldRateLimit(ctx, req)
				if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
					b.Fatalf("%v, %v", resp, err)
				}
			}
		})
	}
}

// TestServiceMetrics checks that over-limit metrics carry descriptor values
// only for limits with detailed_metric.
func TestServiceMetrics(t *testing.T) {
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(`
domain: mcp
descriptors:
  - key: subject
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: tenant
    rate_limit: { unit: minute, requests_per_unit: 1 }
`)})
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	svc := ratelimit.NewService(ratelimit.NewMemoryStore(nil), &ratelimit.ServiceOptions{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	svc.SetConfig(cfg)
	for range 2 {
		for _, d := range []*rlcommonv3.RateLimitDescriptor{desc("subject=alice"), desc("tenant=acme")} {
			if _, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*rlcommonv3.RateLimitDescriptor{d}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portcullis.ratelimit.over_limit" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				key, _ := dp.Attributes.Value("key")
				d, _ := dp.Attributes.Value("descriptor")
				got[key.AsString()] = d.AsString()
			}
		}
	}
	want := map[string]string{"subject": "subject=alice", "tenant": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("over_limit labels (-want +got):\n%s", diff)
	}
}
