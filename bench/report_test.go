package bench

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
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

// TestMachineCPU: the machine's CPU per request adds the server's, the
// generator's and Redis's; its ratio (baseline over subject, per pair,
// then the median) is reported beside the throughput ratio, and survives a
// round trip through the JSON file, where the summary is computed again.
func TestMachineCPU(t *testing.T) {
	usage := func(us float64) *ProcUsage { return &ProcUsage{CPUPerRequest: us} }
	pair := func(tpBase, tpSubj, srvBase, cliBase, srvSubj, cliSubj, redis float64) Pair {
		return Pair{
			Baseline: &Result{Mode: Closed, Requests: 1, Throughput: tpBase, Server: usage(srvBase), Client: usage(cliBase)},
			Subject: &Result{Mode: Closed, Requests: 1, Throughput: tpSubj, Server: usage(srvSubj), Client: usage(cliSubj),
				Redis: &RedisUsage{CPUPerRequest: redis, ScriptsPerRequest: 1, PerRequest: 6}},
		}
	}
	c := &Comparison{Scenario: "rl-redis", Baseline: "null", Subject: "portcullis", Closed: []Pair{
		pair(24000, 9000, 34, 34, 80, 55, 41),  // 68 / 176
		pair(26000, 10000, 30, 30, 69, 47, 35), // 60 / 151
		pair(20000, 7000, 40, 40, 93, 62, 45),  // 80 / 200
	}}
	if got := MachineCPUPerRequest(c.Closed[0].Subject); got != 176 {
		t.Errorf("subject's machine CPU per request %v, want 176 (80 + 55 + 41)", got)
	}
	if got := MachineCPUPerRequest(c.Closed[0].Baseline); got != 68 {
		t.Errorf("baseline's %v, want 68 (no Redis)", got)
	}
	c.summarize()
	s := c.Summary
	// The ratios of the pairs are 0.386, 0.397 and 0.400: the median is
	// the second pair's, not the ratio of the medians (68/176).
	if want := 60.0 / 151; s.SubjectMachineCPU != 176 || s.BaselineMachineCPU != 68 || math.Abs(s.MachineCPURatio-want) > 1e-9 {
		t.Errorf("summary: subject %v, baseline %v, ratio %v; want 176, 68, %v", s.SubjectMachineCPU, s.BaselineMachineCPU, s.MachineCPURatio, want)
	}

	// The file forgets nothing the table needs: strip the summary, as a
	// file written before these fields would lack them.
	c.Summary = Summary{}
	path := filepath.Join(t.TempDir(), "rl-redis.json")
	if err := WriteJSON(path, c); err != nil {
		t.Fatal(err)
	}
	back, err := ReadComparison(path)
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := WriteTable(&table, []*Comparison{back}); err != nil {
		t.Fatal(err)
	}
	if want := "| 176µs vs 68µs (0.40) |"; !strings.Contains(table.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, table.String())
	}

	soak := filepath.Join(t.TempDir(), "soak.json")
	if err := os.WriteFile(soak, []byte(`{"duration": "15m", "samples": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadComparison(soak); !errors.Is(err, ErrNotComparison) {
		t.Errorf("a soak report read as a comparison: %v", err)
	}
}
