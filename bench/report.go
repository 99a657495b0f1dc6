package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Verdict says whether c meets the goal, and how it was judged.
func (g Goal) Verdict(c *Comparison) (met bool, detail string) {
	s := c.Summary
	met = true
	var parts []string
	check := func(ok bool, format string, args ...any) {
		mark := "✓"
		if !ok {
			mark, met = "✗", false
		}
		parts = append(parts, mark+" "+fmt.Sprintf(format, args...))
	}
	if g.MinThroughputRatio > 0 {
		check(s.ThroughputRatio >= g.MinThroughputRatio, "throughput ≥ %.0f%% of %s", g.MinThroughputRatio*100, c.Baseline)
	}
	if g.MaxHalfLoadP99 > 0 {
		check(s.HalfLoad != nil && s.HalfLoad.SubjectP99 <= g.MaxHalfLoadP99, "p99 ≤ %s at 50%% load", us(g.MaxHalfLoadP99))
	}
	if g.RedisPerRequest > 0 {
		// One command sent per request: what a script run inside Redis
		// calls is not a command of the client's. Requests in flight at
		// the window's edges are counted on one side only, hence the
		// tolerance. Round trips may be fewer (concurrent requests share
		// pipelines), never more.
		near := func(v float64) bool { return math.Abs(v-g.RedisPerRequest) <= 0.03*g.RedisPerRequest }
		check(near(s.RedisScriptsPerRequest) && s.RedisRoundTrips <= g.RedisPerRequest*1.03,
			"%.0f Redis command per request, at most one round trip", g.RedisPerRequest)
	}
	if g.MaxLatencyRatio > 0 {
		h := s.HalfLoad
		check(h != nil && h.P50Ratio > 0 && h.P50Ratio <= g.MaxLatencyRatio, "latency ≤ %.1f× %s %s", g.MaxLatencyRatio, c.Baseline, halfLoadLatency(h))
	}
	if g.ReportLatencyRatio {
		parts = append(parts, fmt.Sprintf("latency vs %s %s, reported, no target", c.Baseline, halfLoadLatency(s.HalfLoad)))
	}
	return met, strings.Join(parts, ", ")
}

// halfLoadLatency describes the latency ratios at the half-load point.
func halfLoadLatency(h *LoadSummary) string {
	if h == nil {
		return "(no open-loop run)"
	}
	return fmt.Sprintf("at %.0f%% load (p50 %.2f×, p99 %.2f×)", h.Load*100, h.P50Ratio, h.P99Ratio)
}

// WriteJSON writes c, indented.
func WriteJSON(path string, c *Comparison) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ErrNotComparison is returned by [ReadComparison] for a JSON file that
// holds no comparison's runs, such as a soak report.
var ErrNotComparison = errors.New("not a comparison (no closed-loop runs)")

// ReadComparison reads a comparison written by [WriteJSON] and computes its
// summary again from its runs, so that a file written before a summary
// field existed reports it too.
func ReadComparison(path string) (*Comparison, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Comparison
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Scenario == "" || len(c.Closed) == 0 || c.Closed[0].Baseline == nil || c.Closed[0].Subject == nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNotComparison)
	}
	c.summarize()
	return &c, nil
}

// WriteTable writes the comparisons as a Markdown table: the headline
// numbers of each and its verdict against issue 8's goal.
func WriteTable(w io.Writer, cs []*Comparison) error {
	var b strings.Builder
	b.WriteString("| scenario | baseline | max throughput, Portcullis vs baseline (req/s) | ratio | closed-loop p99 | open-loop p99 at ~50% load | Portcullis CPU/request | ratio | machine CPU/request, Portcullis vs baseline (ratio) | Portcullis peak RSS | Redis per request | goal (issue 8) |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range cs {
		s := c.Summary
		half := "—"
		if h := s.HalfLoad; h != nil {
			half = fmt.Sprintf("%s vs %s", us(h.SubjectP99), us(h.BaselineP99))
		}
		cpu, cpuRatio, machine, rss, redisCmds := "—", "—", "—", "—", "—"
		if s.SubjectCPUPerReq > 0 {
			cpu, cpuRatio = fmt.Sprintf("%.0fµs", s.SubjectCPUPerReq), fmt.Sprintf("%.1f×", s.CPUPerRequestRatio)
		}
		if s.MachineCPURatio > 0 {
			machine = fmt.Sprintf("%.0fµs vs %.0fµs (%.2f)", s.SubjectMachineCPU, s.BaselineMachineCPU, s.MachineCPURatio)
		}
		if s.SubjectPeakRSS > 0 {
			rss = mib(s.SubjectPeakRSS)
		}
		if s.RedisPerRequest > 0 {
			redisCmds = fmt.Sprintf("%.2f round trips (%.2f EVALSHA; %.2f counting commands run by the script)",
				s.RedisRoundTrips, s.RedisScriptsPerRequest, s.RedisPerRequest)
			if s.RedisCPUPerReq > 0 {
				redisCmds += fmt.Sprintf(", Redis CPU %.0fµs", s.RedisCPUPerReq)
			}
		}
		goal := "—"
		if sc, err := FindScenario(c.Scenario); err == nil && sc.Goal != (Goal{}) {
			_, goal = sc.Goal.Verdict(c)
		}
		ratio := fmt.Sprintf("%.2f", s.ThroughputRatio)
		if c.Kind == KindMCP {
			ratio += fmt.Sprintf(" (closed-loop p50 %.2f×)", s.P50Ratio)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f vs %.0f | %s | %s vs %s | %s | %s | %s | %s | %s | %s | %s |\n",
			c.Scenario, c.Baseline, s.SubjectThroughput, s.BaselineThroughput, ratio,
			us(s.SubjectP99), us(s.BaselineP99), half, cpu, cpuRatio, machine, rss, redisCmds, goal)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
