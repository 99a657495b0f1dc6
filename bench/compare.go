package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// CompareOptions configures [Compare].
type CompareOptions struct {
	// Baseline is the reference (the null server, the bare MCP server);
	// Subject is what is measured against it (Portcullis).
	Baseline, Subject Server
	// NewTarget makes the load target for a started server.
	NewTarget func(r *Running) (Target, func(), error)
	// Rounds is how many times each measurement is repeated, alternating
	// baseline and subject (A B A B) so that drift of the machine hits
	// both; default 2.
	Rounds int
	// Warmup and Duration are those of every run.
	Warmup, Duration time.Duration
	// Workers is the closed-loop concurrency; OpenWorkers bounds the
	// requests in flight in open loop.
	Workers, OpenWorkers int
	// Loads are the open-loop arrival rates, as fractions of the subject's
	// maximum throughput measured in the closed-loop phase; the same
	// absolute rates are offered to both sides.
	Loads []float64
	// Redis, when set, is the Redis the subject counts in: its commands
	// are reported per request.
	Redis *redis.Client
	// MinOK is the least share of "OK" answers the subject should give;
	// below it the comparison carries a warning.
	MinOK float64
	// ProfileDir, when set and the subject serves pprof, receives a CPU
	// profile of the subject taken during its first closed-loop run.
	ProfileDir string
	// Progress receives one line per run; nil discards.
	Progress io.Writer
}

// Comparison is the result of [Compare]: every run, and the ratios of the
// subject to the baseline.
type Comparison struct {
	Scenario string    `json:"scenario"`
	Measures string    `json:"measures,omitempty"`
	Kind     Kind      `json:"kind,omitempty"`
	Baseline string    `json:"baseline"`
	Subject  string    `json:"subject"`
	Time     time.Time `json:"time"`
	Machine  Machine   `json:"machine"`
	Settings Settings  `json:"settings"`
	// Closed holds the closed-loop runs, one pair per round.
	Closed []Pair `json:"closed"`
	// Open holds the open-loop runs at each offered rate.
	Open     []OpenPoint `json:"open"`
	Summary  Summary     `json:"summary"`
	Warnings []string    `json:"warnings,omitempty"`
	// Profile is the file of the subject's CPU profile, if one was taken.
	Profile string `json:"profile,omitempty"`
}

// Machine describes where the comparison ran.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	// LoadAvg is /proc/loadavg when the comparison started: other work on
	// the machine makes every number noisier.
	LoadAvg string `json:"loadavg,omitempty"`
}

// Settings are the options a comparison ran with.
type Settings struct {
	Rounds      int       `json:"rounds"`
	Warmup      string    `json:"warmup"`
	Duration    string    `json:"duration"`
	Workers     int       `json:"workers"`
	OpenWorkers int       `json:"open_workers"`
	Loads       []float64 `json:"loads"`
}

// Pair is one round: the baseline's run then the subject's.
type Pair struct {
	Baseline *Result `json:"baseline"`
	Subject  *Result `json:"subject"`
}

// OpenPoint is the open-loop runs at one offered rate.
type OpenPoint struct {
	// Load is the rate as a fraction of the subject's max throughput.
	Load   float64 `json:"load"`
	Rate   float64 `json:"rate"`
	Rounds []Pair  `json:"rounds"`
}

// Summary holds the headline numbers, each the median over rounds; a ratio
// is the median of the per-round ratios subject / baseline, so each ratio
// compares two runs made seconds apart.
type Summary struct {
	BaselineThroughput float64 `json:"baseline_throughput"`
	SubjectThroughput  float64 `json:"subject_throughput"`
	ThroughputRatio    float64 `json:"throughput_ratio"`
	// P50Ratio is the subject's closed-loop p50 over the baseline's:
	// above 1, the subject is slower.
	P50Ratio float64 `json:"closed_p50_ratio"`
	// BaselineP99 and SubjectP99 are the closed-loop p99s (µs).
	BaselineP99 float64 `json:"baseline_closed_p99_us"`
	SubjectP99  float64 `json:"subject_closed_p99_us"`
	// CPUPerRequestRatio compares server CPU per request (subject over
	// baseline); 0 when the servers ran in this process.
	CPUPerRequestRatio float64 `json:"cpu_per_request_ratio,omitempty"`
	SubjectCPUPerReq   float64 `json:"subject_cpu_per_request_us,omitempty"`
	// MachineCPURatio is the CPU per request of everything that runs on
	// the machine for the baseline's answers (its server and the
	// generator) over the same for the subject's (server, generator and
	// Redis, see [MachineCPUPerRequest]): baseline over subject, like
	// ThroughputRatio, which follows it wherever the closed loop keeps the
	// cores busy. SubjectMachineCPU and BaselineMachineCPU are the sums.
	MachineCPURatio    float64 `json:"machine_cpu_per_request_ratio,omitempty"`
	SubjectMachineCPU  float64 `json:"subject_machine_cpu_per_request_us,omitempty"`
	BaselineMachineCPU float64 `json:"baseline_machine_cpu_per_request_us,omitempty"`
	SubjectPeakRSS     int64   `json:"subject_peak_rss_bytes,omitempty"`
	// HalfLoad is the open-loop point nearest 50% of the subject's max.
	HalfLoad *LoadSummary `json:"half_load,omitempty"`
	// RedisPerRequest is the subject's Redis commands per request (those
	// run by scripts included), RedisScriptsPerRequest its EVALSHAs and
	// RedisRoundTrips its round trips, RedisCPUPerReq Redis's CPU per
	// request in µs (see [RedisUsage]).
	RedisPerRequest        float64          `json:"redis_commands_per_request,omitempty"`
	RedisScriptsPerRequest float64          `json:"redis_scripts_per_request,omitempty"`
	RedisRoundTrips        float64          `json:"redis_round_trips_per_request,omitempty"`
	RedisCPUPerReq         float64          `json:"redis_cpu_per_request_us,omitempty"`
	RedisCommands          map[string]int64 `json:"redis_commands,omitempty"`
}

// LoadSummary is the open-loop latency at one rate.
type LoadSummary struct {
	Load        float64 `json:"load"`
	Rate        float64 `json:"rate"`
	BaselineP50 float64 `json:"baseline_p50_us"`
	SubjectP50  float64 `json:"subject_p50_us"`
	BaselineP99 float64 `json:"baseline_p99_us"`
	SubjectP99  float64 `json:"subject_p99_us"`
	P50Ratio    float64 `json:"p50_ratio"`
	P99Ratio    float64 `json:"p99_ratio"`
}

// Compare starts both servers, measures each in closed loop and then in
// open loop at the configured loads, alternating baseline and subject
// within every round, and stops them.
func Compare(ctx context.Context, scenario string, o CompareOptions) (cmp *Comparison, err error) {
	if o.Baseline == nil || o.Subject == nil || o.NewTarget == nil {
		return nil, errNoServer
	}
	if o.Rounds <= 0 {
		o.Rounds = 2
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.OpenWorkers <= 0 {
		o.OpenWorkers = 128
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	cmp = &Comparison{
		Scenario: scenario, Baseline: o.Baseline.Name(), Subject: o.Subject.Name(), Time: time.Now().UTC(),
		Machine: Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), LoadAvg: loadAvg()},
		Settings: Settings{Rounds: o.Rounds, Warmup: o.Warmup.String(), Duration: o.Duration.String(),
			Workers: o.Workers, OpenWorkers: o.OpenWorkers, Loads: o.Loads},
	}

	sides := [2]*side{{server: o.Baseline}, {server: o.Subject}}
	defer func() {
		for _, s := range sides {
			s.stop(&err)
		}
	}()
	for _, s := range sides {
		if err := s.start(ctx, o.NewTarget); err != nil {
			return nil, err
		}
	}
	base, subj := sides[0], sides[1]

	run := func(s *side, l Load, label string) (*Result, error) {
		if s.running.PID != 0 {
			l.Meters = append(l.Meters, &ProcMeter{PID: s.running.PID})
		}
		if s == subj && o.Redis != nil {
			l.Meters = append(l.Meters, &RedisMeter{Client: o.Redis})
		}
		r, err := Run(ctx, s.target, l)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", s.server.Name(), label, err)
		}
		fmt.Fprintf(progress, "  %-10s %-16s %s\n", s.server.Name(), label, r.Line())
		return r, nil
	}

	closed := Load{Mode: Closed, Workers: o.Workers, Warmup: o.Warmup, Duration: o.Duration}
	for round := range o.Rounds {
		var p Pair
		if p.Baseline, err = run(base, closed, fmt.Sprintf("closed r%d", round+1)); err != nil {
			return nil, err
		}
		var profile chan error
		if round == 0 && o.ProfileDir != "" && subj.running.AdminAddr != "" {
			cmp.Profile = filepath.Join(o.ProfileDir, scenario+".cpu.pprof")
			profile = make(chan error, 1)
			go func() { profile <- fetchProfile(ctx, subj.running.AdminAddr, o.Warmup, o.Duration, cmp.Profile) }()
		}
		if p.Subject, err = run(subj, closed, fmt.Sprintf("closed r%d", round+1)); err != nil {
			return nil, err
		}
		if profile != nil {
			if perr := <-profile; perr != nil {
				cmp.Warnings = append(cmp.Warnings, "profile: "+perr.Error())
				cmp.Profile = ""
			}
		}
		cmp.Closed = append(cmp.Closed, p)
	}
	maxRate := median(mapPairs(cmp.Closed, func(p Pair) float64 { return p.Subject.Throughput }))
	if !(maxRate > 0) {
		return nil, fmt.Errorf("%s answered nothing in closed loop", subj.server.Name())
	}
	for _, load := range o.Loads {
		rate := math.Round(load * maxRate)
		if rate < 1 {
			continue
		}
		pt := OpenPoint{Load: load, Rate: rate}
		open := Load{Mode: Open, Workers: o.OpenWorkers, Rate: rate, Warmup: o.Warmup, Duration: o.Duration}
		for round := range o.Rounds {
			label := fmt.Sprintf("open %3.0f%% r%d", load*100, round+1)
			var p Pair
			if p.Baseline, err = run(base, open, label); err != nil {
				return nil, err
			}
			if p.Subject, err = run(subj, open, label); err != nil {
				return nil, err
			}
			pt.Rounds = append(pt.Rounds, p)
		}
		cmp.Open = append(cmp.Open, pt)
	}
	cmp.summarize()
	cmp.warn(o.MinOK)
	return cmp, nil
}

// side is one server of a comparison while it runs.
type side struct {
	server  Server
	running *Running
	target  Target
	close   func()
}

func (s *side) start(ctx context.Context, newTarget func(*Running) (Target, func(), error)) error {
	r, err := s.server.Start(ctx)
	if err != nil {
		return err
	}
	s.running = r
	if s.target, s.close, err = newTarget(r); err != nil {
		return fmt.Errorf("%s: %w", s.server.Name(), err)
	}
	return nil
}

func (s *side) stop(errp *error) {
	if s.close != nil {
		s.close()
	}
	if s.running != nil && s.running.Stop != nil {
		if err := s.running.Stop(); err != nil && *errp == nil {
			*errp = err
		}
	}
}

// MachineCPUPerRequest is the CPU per answered request (µs) of every
// process measured in r: the server (with its children), the generator,
// and Redis when it was metered. On a machine they share, that is the
// request's whole cost.
func MachineCPUPerRequest(r *Result) float64 {
	var sum float64
	if r.Server != nil {
		sum += r.Server.CPUPerRequest
	}
	if r.Client != nil {
		sum += r.Client.CPUPerRequest
	}
	if r.Redis != nil {
		sum += r.Redis.CPUPerRequest
	}
	return sum
}

// summarize fills the summary from the runs.
func (c *Comparison) summarize() {
	c.Summary = Summary{}
	s := &c.Summary
	s.BaselineThroughput = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Baseline.Throughput }))
	s.SubjectThroughput = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Subject.Throughput }))
	s.ThroughputRatio = median(mapPairs(c.Closed, func(p Pair) float64 { return ratio(p.Subject.Throughput, p.Baseline.Throughput) }))
	s.P50Ratio = median(mapPairs(c.Closed, func(p Pair) float64 { return ratio(p.Subject.Latency.P50, p.Baseline.Latency.P50) }))
	s.BaselineP99 = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Baseline.Latency.P99 }))
	s.SubjectP99 = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Subject.Latency.P99 }))
	if c.Closed[0].Subject.Server != nil && c.Closed[0].Baseline.Server != nil {
		s.CPUPerRequestRatio = median(mapPairs(c.Closed, func(p Pair) float64 {
			return ratio(p.Subject.Server.CPUPerRequest, p.Baseline.Server.CPUPerRequest)
		}))
		s.SubjectCPUPerReq = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Subject.Server.CPUPerRequest }))
		if c.Closed[0].Subject.Client != nil && c.Closed[0].Baseline.Client != nil {
			s.MachineCPURatio = median(mapPairs(c.Closed, func(p Pair) float64 {
				return ratio(MachineCPUPerRequest(p.Baseline), MachineCPUPerRequest(p.Subject))
			}))
			s.SubjectMachineCPU = median(mapPairs(c.Closed, func(p Pair) float64 { return MachineCPUPerRequest(p.Subject) }))
			s.BaselineMachineCPU = median(mapPairs(c.Closed, func(p Pair) float64 { return MachineCPUPerRequest(p.Baseline) }))
		}
	}
	all := c.subjectRuns()
	for _, r := range all {
		if r.Server != nil {
			s.SubjectPeakRSS = max(s.SubjectPeakRSS, r.Server.PeakRSSBytes)
		}
	}
	if c.Closed[0].Subject.Redis != nil {
		s.RedisPerRequest = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Subject.Redis.PerRequest }))
		s.RedisScriptsPerRequest = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Subject.Redis.ScriptsPerRequest }))
		s.RedisRoundTrips = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Subject.Redis.ReadsPerRequest }))
		s.RedisCPUPerReq = median(mapPairs(c.Closed, func(p Pair) float64 { return p.Subject.Redis.CPUPerRequest }))
		s.RedisCommands = c.Closed[len(c.Closed)-1].Subject.Redis.ByCommand
	}
	best := -1
	for i, pt := range c.Open {
		if best < 0 || math.Abs(pt.Load-0.5) < math.Abs(c.Open[best].Load-0.5) {
			best = i
		}
	}
	if best >= 0 {
		pt := c.Open[best]
		h := &LoadSummary{Load: pt.Load, Rate: pt.Rate}
		h.BaselineP50 = median(mapPairs(pt.Rounds, func(p Pair) float64 { return p.Baseline.Latency.P50 }))
		h.SubjectP50 = median(mapPairs(pt.Rounds, func(p Pair) float64 { return p.Subject.Latency.P50 }))
		h.BaselineP99 = median(mapPairs(pt.Rounds, func(p Pair) float64 { return p.Baseline.Latency.P99 }))
		h.SubjectP99 = median(mapPairs(pt.Rounds, func(p Pair) float64 { return p.Subject.Latency.P99 }))
		h.P50Ratio = median(mapPairs(pt.Rounds, func(p Pair) float64 { return ratio(p.Subject.Latency.P50, p.Baseline.Latency.P50) }))
		h.P99Ratio = median(mapPairs(pt.Rounds, func(p Pair) float64 { return ratio(p.Subject.Latency.P99, p.Baseline.Latency.P99) }))
		s.HalfLoad = h
	}
}

// warn adds the warnings the runs call for: errors, fewer OK answers than
// minOK, requests the open loop could not send in time.
func (c *Comparison) warn(minOK float64) {
	all := c.subjectRuns()
	for _, r := range all {
		if r.Errors > 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: %d errors in a %s run: %s", c.Subject, r.Errors, r.Mode, strings.Join(r.ErrorSamples, "; ")))
			break
		}
	}
	for _, r := range all {
		if ok := r.OKFraction(); r.Requests > 0 && ok < minOK {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: only %.0f%% of answers OK (want ≥ %.0f%%): outcomes %v", c.Subject, ok*100, minOK*100, r.Outcomes))
			break
		}
	}
	for _, pt := range c.Open {
		for _, p := range pt.Rounds {
			// A few slots due in the last instant of a window are always
			// missed; more than 1% means the rate was above capacity.
			if p.Subject.Dropped*100 > p.Subject.Requests || p.Baseline.Dropped*100 > p.Baseline.Requests {
				c.Warnings = append(c.Warnings, fmt.Sprintf("open loop at %.0f req/s: %d (subject) and %d (baseline) requests could not be sent in time — offered load above capacity", pt.Rate, p.Subject.Dropped, p.Baseline.Dropped))
				break
			}
		}
	}
}

func (c *Comparison) subjectRuns() []*Result {
	var out []*Result
	for _, p := range c.Closed {
		out = append(out, p.Subject)
	}
	for _, pt := range c.Open {
		for _, p := range pt.Rounds {
			out = append(out, p.Subject)
		}
	}
	return out
}

// Line is a one-line summary of a run.
func (r *Result) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.0f req/s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
		r.Throughput, us(r.Latency.P50), us(r.Latency.P90), us(r.Latency.P99), us(r.Latency.P999), us(r.Latency.Max))
	if r.Errors > 0 {
		fmt.Fprintf(&b, "  errors %d", r.Errors)
	}
	if r.Dropped > 0 {
		fmt.Fprintf(&b, "  dropped %d", r.Dropped)
	}
	if r.Server != nil {
		fmt.Fprintf(&b, "  cpu %.2fs (%.1fµs/req)  rss %s", r.Server.CPUSeconds, r.Server.CPUPerRequest, mib(r.Server.PeakRSSBytes))
	}
	if r.Redis != nil {
		fmt.Fprintf(&b, "  redis %.2f cmd/req (%.2f scripts, %.2f round trips), cpu %.2fs (%.1fµs/req)", r.Redis.PerRequest, r.Redis.ScriptsPerRequest, r.Redis.ReadsPerRequest, r.Redis.CPUSeconds, r.Redis.CPUPerRequest)
	}
	return b.String()
}

// us formats microseconds for a table: µs below a millisecond, else ms.
func us(v float64) string {
	if v < 1000 {
		return fmt.Sprintf("%.0fµs", v)
	}
	return fmt.Sprintf("%.2fms", v/1000)
}

func mib(b int64) string { return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20)) }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func mapPairs(ps []Pair, f func(Pair) float64) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = f(p)
	}
	return out
}

// median of vs; with an even count, the mean of the middle two.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// fetchProfile takes a CPU profile of the measured window of a run that
// starts now, from the pprof endpoint at admin, and writes it to path.
func fetchProfile(ctx context.Context, admin string, warmup, duration time.Duration, path string) error {
	if err := sleepUntil(ctx, time.Now().Add(warmup)); err != nil {
		return err
	}
	secs := max(1, int(duration.Seconds()))
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
