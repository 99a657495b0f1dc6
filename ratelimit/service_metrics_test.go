package ratelimit_test

import (
	"context"
	"fmt"
	"testing"

	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/portcullis-mcp/portcullis/internal/telemetry/telemetrytest"
	"github.com/portcullis-mcp/portcullis/ratelimit"
)

// points returns the values of the metric name by attributes.
func points(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	return telemetrytest.Points(t, r, name)
}

// TestServiceNearLimitAndStoreMetrics: near_limit counts admitted hits past
// 80% of the limit, as envoyproxy/ratelimit does; every store answer is
// timed by backend.
func TestServiceNearLimitAndStoreMetrics(t *testing.T) {
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(`
domain: mcp
descriptors:
  - key: subject
    rate_limit: { unit: minute, requests_per_unit: 5 }
`)})
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	svc := ratelimit.NewService(ratelimit.NewMemoryStore(nil), &ratelimit.ServiceOptions{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	svc.SetConfig(cfg)
	var codes []string
	for range 6 { // 1..5 admitted (the 5th past 4 of 5), the 6th over
		resp, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "mcp",
			Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}})
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.GetOverallCode().String())
	}
	if diff := cmp.Diff([]string{"OK", "OK", "OK", "OK", "OK", "OVER_LIMIT"}, codes); diff != "" {
		t.Fatalf("codes (-want +got):\n%s", diff)
	}
	// Domains the configuration does not have share one label: the caller
	// chooses them, and labels must stay a closed set.
	for _, d := range []string{"x-1", "x-2", "x-3"} {
		if _, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: d,
			Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}}); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]map[string]int64{
		"portcullis.ratelimit.near_limit":     {"domain=mcp,key=subject": 1},
		"portcullis.ratelimit.over_limit":     {"domain=mcp,key=subject": 1},
		"portcullis.ratelimit.store.duration": {"backend=memory": 6},
		"portcullis.ratelimit.requests":       {"code=OK,domain=mcp": 5, "code=OVER_LIMIT,domain=mcp": 1, "code=OK,domain=_unknown": 3},
	} {
		if diff := cmp.Diff(want, points(t, reader, name)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// erringStore fails every Take with err.
type erringStore struct{ err error }

func (f erringStore) Take(context.Context, []ratelimit.Hit) ([]ratelimit.Outcome, error) {
	return nil, f.err
}

func TestServiceStoreErrorMetrics(t *testing.T) {
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(serviceConfig)})
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	for _, e := range []error{
		fmt.Errorf("%w: redis: %w", ratelimit.ErrStoreUnavailable, context.DeadlineExceeded),
		fmt.Errorf("%w: redis: connection refused", ratelimit.ErrStoreUnavailable),
	} {
		svc := ratelimit.NewService(erringStore{e}, &ratelimit.ServiceOptions{FailOpen: true, MeterProvider: mp})
		svc.SetConfig(cfg)
		if _, err := svc.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "mcp",
			Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=alice")}}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int64{"backend=custom,reason=timeout": 1, "backend=custom,reason=error": 1}
	if diff := cmp.Diff(want, points(t, reader, "portcullis.ratelimit.store_errors")); diff != "" {
		t.Errorf("store errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{"domain=mcp": 2}, points(t, reader, "portcullis.ratelimit.failure_mode_allowed")); diff != "" {
		t.Errorf("failure mode allowed (-want +got):\n%s", diff)
	}
}
