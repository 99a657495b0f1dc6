package bench

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGoalVerdict(t *testing.T) {
	c := &Comparison{Baseline: "bare-mcp", Summary: Summary{ThroughputRatio: 0.5, P50Ratio: 2.31,
		HalfLoad: &LoadSummary{Load: 0.5, P50Ratio: 1.12, P99Ratio: 1.4}}}
	closedOnly := &Comparison{Baseline: "bare-mcp", Summary: Summary{ThroughputRatio: 0.5, P50Ratio: 1.1}}
	for _, tc := range []struct {
		name   string
		c      *Comparison
		goal   Goal
		met    bool
		detail string
	}{
		// The closed loop's p50 ratio (2.31) is the throughput restated;
		// latency is judged at the same arrival rate on both sides.
		{"latency under", c, Goal{MaxLatencyRatio: 1.2}, true, "✓ latency ≤ 1.2× bare-mcp at 50% load (p50 1.12×, p99 1.40×)"},
		{"latency over", c, Goal{MaxLatencyRatio: 1.1}, false, "✗ latency ≤ 1.1× bare-mcp at 50% load (p50 1.12×, p99 1.40×)"},
		{"no open loop", closedOnly, Goal{MaxLatencyRatio: 1.2}, false, "✗ latency ≤ 1.2× bare-mcp (no open-loop run)"},
		{"reported only", c, Goal{ReportLatencyRatio: true}, true, "latency vs bare-mcp at 50% load (p50 1.12×, p99 1.40×), reported, no target"},
		{"both", c, Goal{MinThroughputRatio: 0.6, ReportLatencyRatio: true}, false,
			"✗ throughput ≥ 60% of bare-mcp, latency vs bare-mcp at 50% load (p50 1.12×, p99 1.40×), reported, no target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			met, detail := tc.goal.Verdict(tc.c)
			if diff := cmp.Diff(tc.detail, detail); diff != "" || met != tc.met {
				t.Errorf("met %v, want %v; detail (-want +got):\n%s", met, tc.met, diff)
			}
		})
	}
}
