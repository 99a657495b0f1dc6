package bench

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGoalVerdict(t *testing.T) {
	c := &Comparison{Baseline: "bare-mcp", Summary: Summary{ThroughputRatio: 0.5, P50Ratio: 2.31}}
	for _, tc := range []struct {
		name   string
		goal   Goal
		met    bool
		detail string
	}{
		{"latency over", Goal{MaxLatencyRatio: 1.2}, false, "✗ latency ≤ 1.2× bare-mcp"},
		{"latency under", Goal{MaxLatencyRatio: 2.5}, true, "✓ latency ≤ 2.5× bare-mcp"},
		{"reported only", Goal{ReportLatencyRatio: true}, true, "latency 2.31× bare-mcp (p50; reported, no target)"},
		{"both", Goal{MinThroughputRatio: 0.6, ReportLatencyRatio: true}, false,
			"✗ throughput ≥ 60% of bare-mcp, latency 2.31× bare-mcp (p50; reported, no target)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			met, detail := tc.goal.Verdict(c)
			if diff := cmp.Diff(tc.detail, detail); diff != "" || met != tc.met {
				t.Errorf("met %v, want %v; detail (-want +got):\n%s", met, tc.met, diff)
			}
		})
	}
}
