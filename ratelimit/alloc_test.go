package ratelimit_test

import (
	"context"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/portcullis-mcp/portcullis/ratelimit"
)

// TestShouldRateLimitAllocs is the allocation ceiling of ShouldRateLimit on
// the memory store with Envoy's two MCP descriptors, about 20% above what
// it allocates today (18): allocation counts are exact, so this catches a
// regression without timing anything.
func TestShouldRateLimitAllocs(t *testing.T) {
	cfg, req := hotPath(t)
	svc := ratelimit.NewService(ratelimit.NewMemoryStore(nil), nil)
	svc.SetConfig(cfg)
	ctx := context.Background()
	if n := testing.AllocsPerRun(500, func() {
		if resp, err := svc.ShouldRateLimit(ctx, req); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%v %v", resp, err)
		}
	}); n > 22 {
		t.Errorf("ShouldRateLimit on memory: %.0f allocations, ceiling 22 (18)", n)
	}
}
