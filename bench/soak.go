package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/portcullis-mcp/portcullis/internal/config"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// The faults a soak injects, in the order they rotate.
const (
	// FaultRedisCut partitions Redis away: the proxy between Portcullis and
	// Redis still accepts connections but holds every byte until the fault
	// ends. With failure_mode allow, ShouldRateLimit must keep answering
	// OK within the Redis timeout.
	FaultRedisCut = "redis-cut"
	// FaultRedisSlow delays every byte through the proxy by twice the
	// Redis timeout each way: each round trip takes four times the
	// timeout. Answers as for FaultRedisCut.
	FaultRedisSlow = "redis-slow"
	// FaultPolicyBroken replaces the watched policy file with one that
	// does not compile, then restores it: the old policy keeps answering,
	// so every Check answer stays right.
	FaultPolicyBroken = "policy-broken"
)

// Timing rules of the soak's verdict.
const (
	// errorGrace extends a fault window for explaining errors: a request
	// that fails up to this long after the fault was repaired is still
	// charged to the fault (connections being re-established).
	errorGrace = 2 * time.Second
	// settleBeforeFinal is the pause between the end of the load and the
	// final RSS and goroutine sample, for in-flight requests to drain.
	settleBeforeFinal = 2 * time.Second
	// policyReloadTimeout bounds the wait for the server to notice a broken
	// or restored policy file.
	policyReloadTimeout = 30 * time.Second
	// quietBeforeEnd is the least time between a fault's planned end and
	// the end of the soak: the last samples are taken without a fault.
	quietBeforeEnd = 3 * time.Second
)

// APIs of the soak's mix, as they prefix outcomes ("check OK", "rl OK").
const (
	apiCheck = "check"
	apiRL    = "rl"
)

// Causes of errors that are not injected faults.
const (
	// causeUnexplained names the errors nothing explains: they fail the
	// soak.
	causeUnexplained = "unexplained"
	// causeStalled names the errors of requests during which the load
	// generator itself did not run for stallExcuse or more, in all: on a
	// machine that busy, a client deadline passing says nothing about the
	// server. They are reported, and do not fail the soak.
	causeStalled = "generator-stalled"
)

// stallExcuse is how long the load generator must have been kept from
// running during a request for its error to be charged to the machine.
const stallExcuse = time.Second

// heartbeatTick is the period of the timer that detects the load
// generator's stalls; a tick later than stallMin counts as a stall.
const (
	heartbeatTick = 50 * time.Millisecond
	stallMin      = 10 * time.Millisecond
)

// SoakOptions configures [Soak]. Zero fields mean the defaults given.
type SoakOptions struct {
	// Portcullis is the portcullis binary. Required.
	Portcullis string
	// Scenarios is the scenarios directory (bench/scenarios): the soak
	// runs soak/portcullis.yaml with the requests of authz-jwt and
	// rl-redis. Required.
	Scenarios string
	// Policy is the policy directory the server is given a copy of, to
	// watch: the soak breaks and restores the copy's policy.rego.
	// Required (rego/examples/rbac).
	Policy string
	// Work is an existing directory for generated files. Required.
	Work string
	// RedisAddr is the Redis (host:port) the server counts in, reached
	// through the soak's fault proxy. It should be a private one: the
	// server's keys go into its database 0. Required.
	RedisAddr string

	// Duration is the whole soak, warm-up included; default 15m.
	Duration time.Duration
	// Warmup is the start of the soak after which RSS and goroutines are
	// sampled; default 1m.
	Warmup time.Duration
	// FaultEvery is the period of the faults; the first is injected one
	// period after the load starts; default 3m.
	FaultEvery time.Duration
	// FaultFor is how long each fault lasts; default a third of
	// FaultEvery, at most 30s.
	FaultFor time.Duration
	// Probe is the closed-loop run that measures the maximum throughput
	// before the soak; default 10s.
	Probe time.Duration
	// Load is the offered rate as a fraction of that maximum; default 0.5.
	Load float64
	// Workers is the probe's concurrency (default 16); OpenWorkers bounds
	// the soak's requests in flight (default 512: a Redis fault holds
	// ShouldRateLimit calls for the Redis timeout); Conns is the number of
	// gRPC connections (default 4).
	Workers, OpenWorkers, Conns int
	// SampleEvery is the period of the RSS and goroutine samples; default
	// 10s.
	SampleEvery time.Duration
	// RequestTimeout is the client deadline of every request; default 5s.
	RequestTimeout time.Duration
	// Slack is added to the server's Redis timeout to bound the answers
	// to ShouldRateLimit during a Redis fault; default 2s, for a loaded
	// machine.
	Slack time.Duration
	// RSSGrowth is the most the final RSS may exceed the median of the
	// samples taken after warm-up, as a fraction; default 0.10.
	RSSGrowth float64
	// GoroutineGrowth and GoroutineGrowthFraction bound the final
	// goroutine count: it fails when it exceeds the median by more than
	// both; defaults 50 and 0.20.
	GoroutineGrowth         int
	GoroutineGrowthFraction float64
	// Progress receives a line per phase, fault and sample, one write at a
	// time; nil discards.
	Progress io.Writer
}

func (o *SoakOptions) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Duration, 15*time.Minute)
	def(&o.Warmup, time.Minute)
	def(&o.FaultEvery, 3*time.Minute)
	def(&o.FaultFor, min(o.FaultEvery/3, 30*time.Second).Round(time.Millisecond))
	def(&o.Probe, 10*time.Second)
	def(&o.SampleEvery, 10*time.Second)
	def(&o.RequestTimeout, 5*time.Second)
	def(&o.Slack, 2*time.Second)
	if o.Load <= 0 {
		o.Load = 0.5
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.OpenWorkers <= 0 {
		o.OpenWorkers = 512
	}
	if o.Conns <= 0 {
		o.Conns = 4
	}
	if o.RSSGrowth <= 0 {
		o.RSSGrowth = 0.10
	}
	if o.GoroutineGrowth <= 0 {
		o.GoroutineGrowth = 50
	}
	if o.GoroutineGrowthFraction <= 0 {
		o.GoroutineGrowthFraction = 0.20
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	// The sampler and the fault injector both report progress.
	o.Progress = &lockedWriter{w: o.Progress}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (o *SoakOptions) validate() error {
	var errs []error
	for name, v := range map[string]string{"Portcullis": o.Portcullis, "Scenarios": o.Scenarios, "Policy": o.Policy, "Work": o.Work, "RedisAddr": o.RedisAddr} {
		if v == "" {
			errs = append(errs, fmt.Errorf("soak: %s is required", name))
		}
	}
	if o.Warmup >= o.Duration {
		errs = append(errs, fmt.Errorf("soak: warm-up %s leaves nothing of duration %s", o.Warmup, o.Duration))
	}
	if o.FaultFor >= o.FaultEvery {
		errs = append(errs, fmt.Errorf("soak: faults last %s, longer than their period %s", o.FaultFor, o.FaultEvery))
	}
	if o.Load > 2 {
		errs = append(errs, fmt.Errorf("soak: load %.2f is not a fraction of the maximum", o.Load))
	}
	return errors.Join(errs...)
}

// SoakReport is what a soak measured and its verdict.
type SoakReport struct {
	Time     time.Time    `json:"time"`
	Machine  Machine      `json:"machine"`
	Settings SoakSettings `json:"settings"`
	// MaxThroughput is the mix's closed-loop throughput measured before
	// the soak (req/s); Rate the open-loop rate offered, Load times it.
	MaxThroughput float64 `json:"max_throughput"`
	Rate          float64 `json:"rate"`
	// Result is the open-loop run after warm-up: throughput, latency
	// percentiles, outcomes, the server's CPU.
	Result *Result `json:"result"`
	// Checks judges every request of the soak: probe, warm-up and the
	// measured window.
	Checks SoakChecks `json:"checks"`
	// Faults are the faults injected, in order.
	Faults []*FaultWindow `json:"faults"`
	// Samples are the server's RSS and goroutines, every SampleEvery
	// after warm-up and once after the load ended (the final sample).
	Samples    []SoakSample `json:"samples"`
	RSS        Series       `json:"rss_bytes"`
	Goroutines Series       `json:"goroutines"`
	// Timeline holds, per sample period from the start of the load, the
	// requests sent in it and how they went, and how long the load
	// generator itself was kept from running.
	Timeline []SoakPeriod `json:"timeline"`
	Pass     bool         `json:"pass"`
	Failures []string     `json:"failures,omitempty"`
	Warnings []string     `json:"warnings,omitempty"`
}

// SoakSettings are the options a soak ran with.
type SoakSettings struct {
	Duration       string  `json:"duration"`
	Warmup         string  `json:"warmup"`
	FaultEvery     string  `json:"fault_every"`
	FaultFor       string  `json:"fault_for"`
	Probe          string  `json:"probe"`
	Load           float64 `json:"load"`
	Workers        int     `json:"workers"`
	OpenWorkers    int     `json:"open_workers"`
	Conns          int     `json:"conns"`
	SampleEvery    string  `json:"sample_every"`
	RequestTimeout string  `json:"request_timeout"`
	// RedisTimeout is the server's ratelimit.redis.timeout; LateAfter is
	// it plus the slack: the bound on answers during Redis faults.
	RedisTimeout            string  `json:"redis_timeout"`
	LateAfter               string  `json:"late_after"`
	RSSGrowth               float64 `json:"rss_growth_limit"`
	GoroutineGrowth         int     `json:"goroutine_growth_limit"`
	GoroutineGrowthFraction float64 `json:"goroutine_growth_fraction_limit"`
}

// SoakChecks is the verdict on every request of a soak.
type SoakChecks struct {
	// Answered counts the answers by API; Outcomes by API and outcome.
	Answered map[string]int64 `json:"answered"`
	Outcomes map[string]int64 `json:"outcomes"`
	// Wrong counts answers other than the expected one.
	Wrong        int64    `json:"wrong"`
	WrongSamples []string `json:"wrong_samples,omitempty"`
	// Errors counts requests that got no answer, by the fault that
	// explains them, "generator-stalled" when the load generator itself
	// did not run for a second or more during the request, else
	// "unexplained".
	Errors       map[string]int64    `json:"errors_by_cause"`
	ErrorSamples map[string][]string `json:"error_samples,omitempty"`
	// RedisFaultCalls counts the ShouldRateLimit calls that overlapped a
	// Redis fault; RedisFaultMaxUS is the slowest of them (µs, from the
	// actual send, less the time the load generator itself was stalled
	// meanwhile: an answer cannot be read by a process that is not
	// running); Late those that took longer than the Redis timeout plus
	// the slack, so measured, answered or not.
	RedisFaultCalls int64    `json:"redis_fault_calls"`
	RedisFaultMaxUS float64  `json:"redis_fault_max_us"`
	Late            int64    `json:"late"`
	LateSamples     []string `json:"late_samples,omitempty"`
}

// FaultWindow is one injected fault.
type FaultWindow struct {
	Kind string `json:"kind"`
	// Start and End are seconds since the soak's load started; End is
	// when the repair was confirmed.
	Start float64 `json:"start_s"`
	End   float64 `json:"end_s"`
	// Detail is what showed that the fault took effect and was repaired.
	Detail string `json:"detail"`
	// Failure, when set, says how the fault or its repair went wrong.
	Failure string `json:"failure,omitempty"`

	start, end time.Time // end is zero while the fault lasts
}

// SoakSample is one reading of the server.
type SoakSample struct {
	// At is seconds since the soak's load started.
	At         float64 `json:"at_s"`
	RSS        int64   `json:"rss_bytes"`
	Goroutines int64   `json:"goroutines"`
	// LoadAvg is the machine's 1-minute load average; CPUPressure the
	// share of the last 10 seconds in which some runnable task waited for
	// a CPU (/proc/pressure/cpu), when the kernel reports it.
	LoadAvg     float64 `json:"loadavg"`
	CPUPressure float64 `json:"cpu_pressure_pct,omitempty"`
	// Fault is the fault active (or repaired less than a few seconds
	// before), or "final" for the sample taken after the load.
	Fault string `json:"fault,omitempty"`
}

// SoakPeriod is one sample period of the soak's timeline.
type SoakPeriod struct {
	// At is the start of the period, in seconds since the load started.
	At float64 `json:"at_s"`
	// Answered, Errors, Unexplained (errors no fault explains) and Late
	// count the requests sent in the period.
	Answered    int64 `json:"answered"`
	Errors      int64 `json:"errors,omitempty"`
	Unexplained int64 `json:"unexplained,omitempty"`
	Late        int64 `json:"late,omitempty"`
	// MaxUS is the longest one of them took, answered or not, from its
	// actual send (µs).
	MaxUS float64 `json:"max_us"`
	// StallUS is the most a 50ms timer of the load generator fired late
	// in the period (µs): the generator was not running, on a machine too
	// busy to schedule it, and the latencies it measured meanwhile are
	// longer by as much.
	StallUS float64 `json:"generator_stall_us"`
}

// Series summarizes samples. Min and Max are over the samples under
// load; Median over those taken without a fault (the baseline); Final is
// the sample after the load; Growth is Final minus Median.
type Series struct {
	Min    int64 `json:"min"`
	Median int64 `json:"median"`
	Max    int64 `json:"max"`
	Final  int64 `json:"final"`
	Growth int64 `json:"growth"`
}

// Soak runs the authz-jwt and rl-redis mixes together — one Check, then
// one ShouldRateLimit, as Envoy sends them for each MCP call — against one
// `portcullis serve` (bench/scenarios/soak), for o.Duration at o.Load of
// the maximum throughput measured just before, in open loop. Every
// o.FaultEvery it injects a fault for o.FaultFor, rotating
// [FaultRedisCut], [FaultRedisSlow] and [FaultPolicyBroken]; the server is
// never restarted. After o.Warmup it samples the server's RSS and
// goroutines every o.SampleEvery.
//
// The report fails when an answer is not the one the mix expects (Check:
// the authz-jwt design, 403 for a viewer's call or a token without
// mcp:tools, else OK; ShouldRateLimit: OK, the limits being far above the
// load, and failure_mode allow answering OK while Redis is away); when a
// request gets no answer and no fault explains it (only a Redis fault
// explains a ShouldRateLimit error, nothing explains a Check error); when
// a ShouldRateLimit call during a Redis fault takes longer than the
// server's Redis timeout plus o.Slack; when a fault does not take effect or
// is not repaired; or when the final RSS or goroutine count grew beyond
// the limits over the median of the samples taken without a fault.
//
// The load generator measures its own stalls (a timer that fires late:
// the machine did not run it). Times during Redis faults are judged less
// the stalls within them, and an error during which the generator did not
// run for a second or more is reported as "generator-stalled", with a
// warning, rather than failing the soak.
//
// Soak returns an error only when it cannot run; a failed soak is a
// report with Pass false.
func Soak(ctx context.Context, o SoakOptions) (*SoakReport, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	fx, err := prepareSoak(o)
	if err != nil {
		return nil, err
	}
	proxy, err := ratelimittest.StartProxy(o.RedisAddr)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	proc, err := fx.ws.PortcullisProcess(o.Portcullis, "redis://"+proxy.Addr()+"/0")
	if err != nil {
		return nil, err
	}
	redisTimeout, err := soakRedisTimeout(fx.ws.Config, proc.Env)
	if err != nil {
		return nil, err
	}
	running, err := proc.Start(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = running.Stop() }()

	r := &SoakReport{
		Time:    time.Now().UTC(),
		Machine: Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), LoadAvg: loadAvg()},
		Settings: SoakSettings{
			Duration: o.Duration.String(), Warmup: o.Warmup.String(), FaultEvery: o.FaultEvery.String(), FaultFor: o.FaultFor.String(),
			Probe: o.Probe.String(), Load: o.Load, Workers: o.Workers, OpenWorkers: o.OpenWorkers, Conns: o.Conns,
			SampleEvery: o.SampleEvery.String(), RequestTimeout: o.RequestTimeout.String(),
			RedisTimeout: redisTimeout.String(), LateAfter: (redisTimeout + o.Slack).String(),
			RSSGrowth: o.RSSGrowth, GoroutineGrowth: o.GoroutineGrowth, GoroutineGrowthFraction: o.GoroutineGrowthFraction,
		},
	}
	faults := &faultLog{}
	acct := newSoakAccount(faults, redisTimeout+o.Slack)
	target, err := newSoakTarget(running.Addr, o.Conns, fx, acct)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	beat, stopBeat := context.WithCancel(ctx)
	var beating sync.WaitGroup
	beating.Go(func() { acct.heartbeat(beat) })
	defer beating.Wait()
	defer stopBeat()

	fmt.Fprintf(o.Progress, "soak: probing the maximum throughput of the mix for %s\n", o.Probe)
	probe, err := Run(ctx, target, Load{Mode: Closed, Workers: o.Workers, Warmup: o.Probe / 4, Duration: o.Probe, Timeout: o.RequestTimeout})
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	r.MaxThroughput = probe.Throughput
	r.Rate = math.Round(o.Load * probe.Throughput)
	if r.Rate < 1 {
		return nil, fmt.Errorf("probe: the server answered %d requests in %s (%d errors: %v)", probe.Requests, o.Probe, probe.Errors, probe.ErrorSamples)
	}
	fmt.Fprintf(o.Progress, "soak: max %.0f req/s; offering %.0f req/s for %s (warm-up %s), a fault every %s for %s\n",
		r.MaxThroughput, r.Rate, o.Duration, o.Warmup, o.FaultEvery, o.FaultFor)

	admin := &http.Client{Timeout: 5 * time.Second}
	smp := &soakSampler{pid: running.PID, admin: running.AdminAddr, client: admin, faults: faults}
	inj := &injector{o: o, faults: faults, proxy: proxy, admin: running.AdminAddr, client: admin,
		policyFile: filepath.Join(fx.policyDir, "policy.rego"), redisTimeout: redisTimeout}
	start := time.Now()
	end := start.Add(o.Duration)
	faults.start, smp.start = start, start
	acct.startTimeline(start, o.SampleEvery)
	bg, stopBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { smp.run(bg, start.Add(o.Warmup), o.SampleEvery, end, o.Progress) })
	wg.Go(func() { inj.run(bg, start, end) })
	res, runErr := Run(ctx, target, Load{Mode: Open, Workers: o.OpenWorkers, Rate: r.Rate, Warmup: o.Warmup,
		Duration: o.Duration - o.Warmup, Timeout: o.RequestTimeout, Meters: []Meter{&ProcMeter{PID: running.PID}}})
	stopBG()
	wg.Wait()
	if runErr != nil {
		return nil, runErr
	}
	r.Result = res

	if err := sleepUntil(ctx, time.Now().Add(settleBeforeFinal)); err != nil {
		return nil, err
	}
	final, err := smp.sample(ctx, "final")
	for attempt := 1; attempt < 3 && err != nil && !errors.Is(err, errServerGone) && ctx.Err() == nil; attempt++ {
		_ = sleepUntil(ctx, time.Now().Add(time.Second))
		final, err = smp.sample(ctx, "final")
	}
	if err != nil {
		smp.fail("final sample: " + err.Error())
	} else {
		smp.add(final)
		fmt.Fprintf(o.Progress, "soak: %s\n", final.line())
	}
	stopBeat()
	beating.Wait()
	r.Faults = faults.windows
	r.Samples = smp.samples
	r.Checks = acct.checks()
	r.Timeline = acct.periods()
	r.Warnings = smp.warnings
	r.judge(o, smp.failures)
	return r, nil
}

// soakFixture is what a soak prepares before the server starts.
type soakFixture struct {
	ws        *Workspace
	policyDir string
	checks    []*authv3.CheckRequest
	want      []string // the expected outcome of each Check
	rls       []*rlsv3.RateLimitRequest
}

// prepareSoak generates the requests of authz-jwt (and its JWKS) into
// o.Work and those of rl-redis into o.Work/rl, and copies the policy into
// o.Work/policy, where the soak configuration reads them.
func prepareSoak(o SoakOptions) (*soakFixture, error) {
	jwtScenario, err := FindScenario("authz-jwt")
	if err != nil {
		return nil, err
	}
	rlScenario, err := FindScenario("rl-redis")
	if err != nil {
		return nil, err
	}
	authz, err := jwtScenario.Prepare(o.Scenarios, o.Work)
	if err != nil {
		return nil, err
	}
	rlWork := filepath.Join(o.Work, "rl")
	if err := os.Mkdir(rlWork, 0o755); err != nil {
		return nil, err
	}
	rl, err := rlScenario.Prepare(o.Scenarios, rlWork)
	if err != nil {
		return nil, err
	}
	fx := &soakFixture{policyDir: filepath.Join(o.Work, "policy")}
	if err := os.CopyFS(fx.policyDir, os.DirFS(o.Policy)); err != nil {
		return nil, fmt.Errorf("copy policy %s: %w", o.Policy, err)
	}
	if _, err := os.Stat(filepath.Join(fx.policyDir, "policy.rego")); err != nil {
		return nil, fmt.Errorf("policy %s: the soak breaks its policy.rego: %w", o.Policy, err)
	}
	dir, err := filepath.Abs(filepath.Join(o.Scenarios, "soak"))
	if err != nil {
		return nil, err
	}
	fx.ws = &Workspace{Scenario: &Scenario{Name: "soak", Kind: KindCheck}, Dir: dir, Work: o.Work, Config: filepath.Join(dir, "portcullis.yaml")}
	if fx.checks, err = ReadMessages(func() *authv3.CheckRequest { return new(authv3.CheckRequest) }, authz.Requests...); err != nil {
		return nil, err
	}
	if fx.rls, err = ReadMessages(func() *rlsv3.RateLimitRequest { return new(rlsv3.RateLimitRequest) }, rl.Requests...); err != nil {
		return nil, err
	}
	fx.want = make([]string, len(fx.checks))
	for i, c := range fx.checks {
		if fx.want[i], err = expectedCheck(c); err != nil {
			return nil, fmt.Errorf("check request %d: %w", i, err)
		}
	}
	return fx, nil
}

// soakRedisTimeout reads the server's Redis timeout from its
// configuration, and checks that the configuration is one the soak's
// rules hold for: Redis, failure_mode allow.
func soakRedisTimeout(path string, env []string) (time.Duration, error) {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cfg, err := config.Load(path, func(k string) string { return vars[k] })
	if err != nil {
		return 0, err
	}
	rl := cfg.RateLimit
	if rl.Backend != "redis" || rl.FailureMode != "allow" {
		return 0, fmt.Errorf("%s: the soak needs ratelimit.backend redis and failure_mode allow, not %s and %s", path, rl.Backend, rl.FailureMode)
	}
	return time.Duration(rl.Redis.Timeout), nil
}

// Outcomes the soak expects.
const (
	outcomeOK     = "OK"
	outcomeDenied = "PermissionDenied 403"
)

// expectedCheck is the answer authz-jwt's mix designs for a Check (see
// generateJWT): a token without the mcp:tools scope, or a viewer calling
// fs.read (not one of a viewer's tools in rego/examples/rbac), is refused
// with 403; every other call is allowed. It reads the token's claims
// without verifying them: the server verifies.
func expectedCheck(req *authv3.CheckRequest) (string, error) {
	h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return "", errors.New("no bearer token")
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return "", err
	}
	scope, _ := claims["scope"].(string)
	roles, _ := claims["roles"].([]any)
	if !slices.Contains(strings.Fields(scope), "mcp:tools") {
		return outcomeDenied, nil
	}
	if len(roles) == 1 && roles[0] == "viewer" {
		return outcomeDenied, nil
	}
	return outcomeOK, nil
}

// checkOutcome names a Check answer as [GRPCTarget]'s callers do: the
// status code, and the HTTP status of a denial.
func checkOutcome(resp *authv3.CheckResponse) string {
	code := codes.Code(resp.GetStatus().GetCode())
	if code == codes.OK {
		return outcomeOK
	}
	outcome := code.String()
	if d := resp.GetDeniedResponse(); d != nil && d.GetStatus() != nil {
		outcome += " " + strconv.Itoa(int(d.GetStatus().GetCode()))
	}
	return outcome
}

// soakTarget sends the mix: Check and ShouldRateLimit in turn, each
// cycling over its requests, and hands every answer to the account.
type soakTarget struct {
	conns []*grpc.ClientConn
	fx    *soakFixture
	acct  *soakAccount
	next  atomic.Uint64
}

func newSoakTarget(addr string, conns int, fx *soakFixture, acct *soakAccount) (*soakTarget, error) {
	t := &soakTarget{fx: fx, acct: acct}
	for range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		cc.Connect()
		t.conns = append(t.conns, cc)
	}
	return t, nil
}

// Close closes the connections.
func (t *soakTarget) Close() {
	for _, cc := range t.conns {
		_ = cc.Close()
	}
}

// NewCaller returns the caller of one worker, on connection worker % conns.
func (t *soakTarget) NewCaller(_ context.Context, worker int) (Caller, error) {
	cc := t.conns[worker%len(t.conns)]
	return &soakCaller{t: t, check: authv3.NewAuthorizationClient(cc), rl: rlsv3.NewRateLimitServiceClient(cc)}, nil
}

type soakCaller struct {
	t     *soakTarget
	check authv3.AuthorizationClient
	rl    rlsv3.RateLimitServiceClient
}

// Call sends the next request of the mix. The outcome is prefixed with
// the API ("check OK", "rl OK").
func (c *soakCaller) Call(ctx context.Context) (string, error) {
	n := c.t.next.Add(1) - 1
	fx := c.t.fx
	sent := time.Now()
	if n%2 == 0 {
		i := int(n / 2 % uint64(len(fx.checks)))
		resp, err := c.check.Check(ctx, fx.checks[i])
		outcome := ""
		if err == nil {
			outcome = checkOutcome(resp)
		}
		c.t.acct.record(apiCheck, i, fx.want[i], outcome, err, sent, time.Now())
		return apiCheck + " " + outcome, err
	}
	i := int(n / 2 % uint64(len(fx.rls)))
	resp, err := c.rl.ShouldRateLimit(ctx, fx.rls[i])
	outcome := ""
	if err == nil {
		outcome = resp.GetOverallCode().String()
	}
	c.t.acct.record(apiRL, i, outcomeOK, outcome, err, sent, time.Now())
	return apiRL + " " + outcome, err
}

// maxSoakSamples bounds the examples kept of each kind of failure.
const maxSoakSamples = 5

// soakAccount judges every answer against its expected outcome and
// charges every error to a fault window or to no fault.
type soakAccount struct {
	faults    *faultLog
	lateAfter time.Duration

	mu       sync.Mutex
	c        SoakChecks
	start    time.Time // of the timeline; zero before the load
	period   time.Duration
	timeline []SoakPeriod
	stalls   []stall // in time order
	pending  []suspect
}

// stall is a time the load generator did not run.
type stall struct{ from, to time.Time }

// stalledDuring returns how long the generator was stalled between from
// and to. a.mu must be held.
func (a *soakAccount) stalledDuring(from, to time.Time) time.Duration {
	i, _ := slices.BinarySearchFunc(a.stalls, from, func(s stall, t time.Time) int { return s.to.Compare(t) })
	var d time.Duration
	for ; i < len(a.stalls) && a.stalls[i].from.Before(to); i++ {
		s := a.stalls[i]
		lo, hi := s.from, s.to
		if lo.Before(from) {
			lo = from
		}
		if hi.After(to) {
			hi = to
		}
		if hi.After(lo) {
			d += hi.Sub(lo)
		}
	}
	return d
}

// startTimeline starts the timeline at start, in periods of period.
func (a *soakAccount) startTimeline(start time.Time, period time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.start, a.period = start, period
}

// at returns the period of the timeline t falls in, nil before the
// timeline starts. a.mu must be held.
func (a *soakAccount) at(t time.Time) *SoakPeriod {
	if a.start.IsZero() || t.Before(a.start) {
		return nil
	}
	i := int(t.Sub(a.start) / a.period)
	for len(a.timeline) <= i {
		a.timeline = append(a.timeline, SoakPeriod{At: seconds(time.Duration(len(a.timeline)) * a.period)})
	}
	return &a.timeline[i]
}

// stalled records that the load generator's timer due at due fired at
// now.
func (a *soakAccount) stalled(due, now time.Time) {
	lag := now.Sub(due)
	if lag < stallMin {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stalls = append(a.stalls, stall{from: due, to: now})
	if p := a.at(due); p != nil {
		p.StallUS = max(p.StallUS, float64(lag)/1e3)
	}
}

// when names the moment a request was sent, for samples: "+12.3s" into
// the load, or "probe".
func (a *soakAccount) when(sent time.Time) string {
	if a.start.IsZero() {
		return "probe"
	}
	return fmt.Sprintf("+%.1fs", sent.Sub(a.start).Seconds())
}

func newSoakAccount(faults *faultLog, lateAfter time.Duration) *soakAccount {
	return &soakAccount{faults: faults, lateAfter: lateAfter, c: SoakChecks{
		Answered: map[string]int64{}, Outcomes: map[string]int64{},
		Errors: map[string]int64{}, ErrorSamples: map[string][]string{},
	}}
}

// record judges one request of api, the i-th of its requests, sent at
// sent and done at done.
func (a *soakAccount) record(api string, i int, want, got string, err error, sent, done time.Time) {
	redisFault := ""
	if api == apiRL {
		redisFault = a.faults.overlapping(sent, done, FaultRedisCut, FaultRedisSlow)
	}
	took := done.Sub(sent)
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &a.c
	p := a.at(sent)
	if p == nil {
		p = &SoakPeriod{} // the probe's, not kept
	}
	p.MaxUS = max(p.MaxUS, float64(took)/1e3)
	if redisFault != "" {
		c.RedisFaultCalls++
	}
	if err != nil || (redisFault != "" && took > a.lateAfter) {
		// Judged once the generator's stalls during the request are
		// known: the heartbeat may not have run yet since it resumed.
		a.pending = append(a.pending, suspect{api: api, i: i, err: err, sent: sent, done: done, redisFault: redisFault})
	} else if redisFault != "" {
		c.RedisFaultMaxUS = max(c.RedisFaultMaxUS, float64(took)/1e3)
	}
	if err != nil {
		p.Errors++
		return
	}
	p.Answered++
	c.Answered[api]++
	c.Outcomes[api+" "+got]++
	if got != want {
		c.Wrong++
		c.WrongSamples = sample(c.WrongSamples, fmt.Sprintf("%s #%d sent at %s: %q, want %q", api, i, a.when(sent), got, want))
	}
}

// suspect is a request that got no answer, or a slow one during a Redis
// fault, waiting to be judged.
type suspect struct {
	api        string
	i          int
	err        error
	sent, done time.Time
	redisFault string
}

// settle judges the suspects done before until: errors are charged to
// their cause, and answers during Redis faults are late when they took
// longer than lateAfter less the generator's stalls meanwhile. a.mu must
// be held.
func (a *soakAccount) settle(until time.Time) {
	c := &a.c
	keep := a.pending[:0]
	for _, s := range a.pending {
		if !s.done.Before(until) {
			keep = append(keep, s)
			continue
		}
		p := a.at(s.sent)
		if p == nil {
			p = &SoakPeriod{}
		}
		took := s.done.Sub(s.sent)
		stalled := a.stalledDuring(s.sent, s.done)
		if s.redisFault != "" {
			c.RedisFaultMaxUS = max(c.RedisFaultMaxUS, float64(took-stalled)/1e3)
			if took-stalled > a.lateAfter {
				c.Late++
				p.Late++
				c.LateSamples = sample(c.LateSamples, fmt.Sprintf("%s #%d sent at %s during %s: %s, of which the generator stalled %s (err %v)",
					s.api, s.i, a.when(s.sent), s.redisFault, took.Round(time.Millisecond), stalled.Round(time.Millisecond), s.err))
			}
		}
		if s.err == nil {
			continue
		}
		cause := s.redisFault
		switch {
		case cause != "":
		case stalled >= stallExcuse:
			cause = causeStalled
		default:
			cause = causeUnexplained
			p.Unexplained++
		}
		c.Errors[cause]++
		c.ErrorSamples[cause] = sample(c.ErrorSamples[cause], fmt.Sprintf("%s #%d sent at %s, %s later, the generator stalled %s: %v",
			s.api, s.i, a.when(s.sent), took.Round(time.Millisecond), stalled.Round(time.Millisecond), s.err))
	}
	clear(a.pending[len(keep):])
	a.pending = keep
}

func sample(s []string, v string) []string {
	if len(s) >= maxSoakSamples || slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// periods returns a copy of the timeline, every request judged.
func (a *soakAccount) periods() []SoakPeriod {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.settle(time.Now().Add(time.Hour))
	return slices.Clone(a.timeline)
}

// heartbeat runs a timer every heartbeatTick until ctx ends and records
// how late it fires: the load generator's own stalls.
func (a *soakAccount) heartbeat(ctx context.Context) {
	t := time.NewTimer(heartbeatTick)
	defer t.Stop()
	due := time.Now().Add(heartbeatTick)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := time.Now()
			a.stalled(due, now)
			// Every stall that ended a second ago has been recorded.
			a.mu.Lock()
			a.settle(now.Add(-time.Second))
			a.mu.Unlock()
			due = now.Add(heartbeatTick)
			t.Reset(heartbeatTick)
		}
	}
}

// checks returns a copy of the verdicts so far.
func (a *soakAccount) checks() SoakChecks {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.settle(time.Now().Add(time.Hour))
	c := a.c
	c.Answered, c.Outcomes, c.Errors = cloneCounts(c.Answered), cloneCounts(c.Outcomes), cloneCounts(c.Errors)
	c.ErrorSamples = map[string][]string{}
	for k, v := range a.c.ErrorSamples {
		c.ErrorSamples[k] = slices.Clone(v)
	}
	c.WrongSamples, c.LateSamples = slices.Clone(c.WrongSamples), slices.Clone(c.LateSamples)
	return c
}

func cloneCounts(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// faultLog holds the fault windows; it is read by every request.
type faultLog struct {
	start time.Time // set before the load starts

	mu      sync.RWMutex
	windows []*FaultWindow
}

// begin opens a window of kind now.
func (l *faultLog) begin(kind string) *FaultWindow {
	now := time.Now()
	w := &FaultWindow{Kind: kind, start: now, Start: seconds(now.Sub(l.start))}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windows = append(l.windows, w)
	return w
}

// finish closes w now.
func (l *faultLog) finish(w *FaultWindow, detail, failure string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w.end, w.End, w.Detail, w.Failure = now, seconds(now.Sub(l.start)), detail, failure
}

// seconds is d in seconds, to the millisecond.
func seconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }

// overlapping returns the kind of a window among kinds that was open at
// some moment between from and to, or closed less than errorGrace before
// from; "" when there is none.
func (l *faultLog) overlapping(from, to time.Time, kinds ...string) string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for i := len(l.windows) - 1; i >= 0; i-- {
		w := l.windows[i]
		if !slices.Contains(kinds, w.Kind) || w.start.After(to) {
			continue
		}
		if w.end.IsZero() || !w.end.Add(errorGrace).Before(from) {
			return w.Kind
		}
	}
	return ""
}

// injector injects the faults of a soak.
type injector struct {
	o            SoakOptions
	faults       *faultLog
	proxy        *ratelimittest.Proxy
	admin        string
	client       *http.Client
	policyFile   string
	redisTimeout time.Duration
}

// run injects a fault every FaultEvery from start, rotating the kinds,
// as long as the fault ends quietBeforeEnd before end. A fault under way
// when ctx ends is repaired before run returns.
func (in *injector) run(ctx context.Context, start, end time.Time) {
	kinds := [...]string{FaultRedisCut, FaultRedisSlow, FaultPolicyBroken}
	for k := 1; ; k++ {
		at := start.Add(time.Duration(k) * in.o.FaultEvery)
		if at.Add(in.o.FaultFor + quietBeforeEnd).After(end) {
			return
		}
		if sleepUntil(ctx, at) != nil {
			return
		}
		kind := kinds[(k-1)%len(kinds)]
		w := in.faults.begin(kind)
		fmt.Fprintf(in.o.Progress, "soak: +%.0fs fault %s for %s\n", w.Start, kind, in.o.FaultFor)
		var detail, failure string
		if kind == FaultPolicyBroken {
			detail, failure = in.breakPolicy(ctx)
		} else {
			detail, failure = in.breakRedis(ctx, kind)
		}
		in.faults.finish(w, detail, failure)
		fmt.Fprintf(in.o.Progress, "soak: +%.0fs repaired %s: %s %s\n", w.End, kind, detail, failure)
	}
}

// breakRedis cuts or slows the link to Redis for FaultFor, then repairs
// it. The requests the server answered by failure_mode allow meanwhile
// show that the fault reached it.
func (in *injector) breakRedis(ctx context.Context, kind string) (detail, failure string) {
	// The repair must not wait for ctx: the server is left healthy.
	quiet := context.WithoutCancel(ctx)
	before, err := metricSum(quiet, in.client, in.admin, "portcullis_ratelimit_failure_mode_allowed")
	if err != nil {
		before = -1
	}
	if kind == FaultRedisCut {
		in.proxy.Cut()
	} else {
		in.proxy.SetDelay(2 * in.redisTimeout)
	}
	_ = sleepUntil(ctx, time.Now().Add(in.o.FaultFor))
	in.proxy.Restore()
	in.proxy.SetDelay(0)
	after, err := metricSum(quiet, in.client, in.admin, "portcullis_ratelimit_failure_mode_allowed")
	switch {
	case err != nil || before < 0:
		return "", fmt.Sprintf("could not read /metrics: %v", err)
	case after <= before && ctx.Err() == nil:
		return "", "no ShouldRateLimit was answered by failure_mode allow: the fault did not reach the server"
	}
	return fmt.Sprintf("%.0f calls answered by failure_mode allow", after-before), ""
}

// breakPolicy replaces the policy file with one that does not compile,
// waits until the server reports the failed reload, holds it for the rest
// of FaultFor, and restores the original, waiting for the server to load
// it again.
func (in *injector) breakPolicy(ctx context.Context) (detail, failure string) {
	quiet := context.WithoutCancel(ctx)
	t0 := time.Now()
	original, err := os.ReadFile(in.policyFile)
	if err != nil {
		return "", err.Error()
	}
	before, err := policyStatus(quiet, in.client, in.admin)
	if err != nil {
		return "", err.Error()
	}
	if err := replaceFile(in.policyFile, []byte("package mcp.authz\n\ndecision := {\n")); err != nil {
		return "", err.Error()
	}
	broken, noticed := waitPolicy(quiet, in.client, in.admin, func(st soakPolicyStatus) bool {
		return st.Failures > before.Failures && st.LastError != ""
	})
	noticedAfter := time.Since(t0)
	_ = sleepUntil(ctx, t0.Add(in.o.FaultFor))
	t1 := time.Now()
	if err := replaceFile(in.policyFile, original); err != nil {
		return "", "restore: " + err.Error()
	}
	restored, ok := waitPolicy(quiet, in.client, in.admin, func(st soakPolicyStatus) bool {
		return st.Reloads > before.Reloads && st.LastError == ""
	})
	switch {
	case !noticed:
		failure = fmt.Sprintf("the broken policy was not reported within %s (failures %d → %d)", policyReloadTimeout, before.Failures, broken.Failures)
	case !ok:
		failure = fmt.Sprintf("the restored policy was not loaded within %s (reloads %d → %d, last error %q)", policyReloadTimeout, before.Reloads, restored.Reloads, oneLine(restored.LastError))
	}
	return fmt.Sprintf("reload failure reported after %s (%s); restored policy loaded after %s",
		noticedAfter.Round(time.Millisecond), oneLine(broken.LastError), time.Since(t1).Round(time.Millisecond)), failure
}

// replaceFile writes data to path atomically, as editors and ConfigMap
// updates do: a new file renamed over the old one.
func replaceFile(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(filepath.Dir(path)), ".soak-"+filepath.Base(path))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// oneLine folds a multi-line error message into one line of at most 160
// bytes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// soakPolicyStatus is the policy component of the admin /readyz.
type soakPolicyStatus struct {
	Reloads   int64  `json:"reloads"`
	Failures  int64  `json:"failures"`
	LastError string `json:"last_error"`
}

func policyStatus(ctx context.Context, client *http.Client, admin string) (soakPolicyStatus, error) {
	var st soakPolicyStatus
	body, err := adminGet(ctx, client, admin, "/readyz")
	if err != nil {
		return st, err
	}
	var doc struct {
		Components map[string]struct {
			Details json.RawMessage `json:"details"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return st, fmt.Errorf("/readyz: %w", err)
	}
	p, ok := doc.Components["policy"]
	if !ok {
		return st, errors.New("/readyz has no policy component")
	}
	if err := json.Unmarshal(p.Details, &st); err != nil {
		return st, fmt.Errorf("/readyz policy details: %w", err)
	}
	return st, nil
}

// waitPolicy polls the policy status until cond holds or
// policyReloadTimeout passes; it returns the last status read.
func waitPolicy(ctx context.Context, client *http.Client, admin string, cond func(soakPolicyStatus) bool) (soakPolicyStatus, bool) {
	deadline := time.Now().Add(policyReloadTimeout)
	var last soakPolicyStatus
	for {
		if st, err := policyStatus(ctx, client, admin); err == nil {
			last = st
			if cond(st) {
				return st, true
			}
		}
		if time.Now().After(deadline) || sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) != nil {
			return last, false
		}
	}
}

// metricSum adds up the samples of a Prometheus metric family on the
// admin /metrics (every label set; the _total suffix of counters
// included).
func metricSum(ctx context.Context, client *http.Client, admin, name string) (float64, error) {
	body, err := adminGet(ctx, client, admin, "/metrics")
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if r, ok := strings.CutPrefix(rest, "_total"); ok {
			rest = r
		}
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // another metric whose name starts with name
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

func adminGet(ctx context.Context, client *http.Client, admin, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// soakSampler reads the server's RSS and goroutines.
type soakSampler struct {
	pid    int
	admin  string
	client *http.Client
	faults *faultLog
	start  time.Time

	mu       sync.Mutex
	samples  []SoakSample
	failures []string
	warnings []string
}

// run samples every period from first until end.
func (s *soakSampler) run(ctx context.Context, first time.Time, period time.Duration, end time.Time, progress io.Writer) {
	for at := first; at.Before(end); at = at.Add(period) {
		if sleepUntil(ctx, at) != nil {
			return
		}
		smp, err := s.sample(ctx, "")
		if err != nil {
			// A server gone fails the soak; an admin endpoint too slow to
			// answer on a loaded machine costs one sample.
			msg := fmt.Sprintf("sample at +%.0fs: %v", time.Since(s.start).Seconds(), err)
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, errServerGone):
				s.fail(msg)
			default:
				s.warn(msg)
			}
			continue
		}
		s.add(smp)
		fmt.Fprintf(progress, "soak: %s\n", smp.line())
	}
}

// sample reads the server now; fault overrides the fault found active.
func (s *soakSampler) sample(ctx context.Context, fault string) (SoakSample, error) {
	now := time.Now()
	if fault == "" {
		fault = s.faults.overlapping(now, now, FaultRedisCut, FaultRedisSlow, FaultPolicyBroken)
	}
	p, err := ReadProc(s.pid)
	if err != nil {
		return SoakSample{}, fmt.Errorf("%w (pid %d): %v", errServerGone, s.pid, err)
	}
	g, err := goroutines(ctx, s.client, s.admin)
	if err != nil {
		return SoakSample{}, err
	}
	la, psi := machineLoad()
	return SoakSample{At: seconds(now.Sub(s.start)), RSS: p.RSS, Goroutines: g, LoadAvg: la, CPUPressure: psi, Fault: fault}, nil
}

func (s *soakSampler) add(smp SoakSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, smp)
}

func (s *soakSampler) fail(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, msg)
}

func (s *soakSampler) warn(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.warnings = append(s.warnings, msg)
}

// errServerGone is a sample that found no server process: it exited.
var errServerGone = errors.New("the server process is gone")

// machineLoad reads the 1-minute load average and the share of the last
// 10 seconds some task waited for a CPU (0 without /proc/pressure).
func machineLoad() (loadavg, pressure float64) {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			loadavg, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		// "some avg10=96.70 avg60=94.62 avg300=86.38 total=3269701194"
		for f := range strings.FieldsSeq(string(b)) {
			if v, ok := strings.CutPrefix(f, "avg10="); ok {
				pressure, _ = strconv.ParseFloat(v, 64)
				break
			}
		}
	}
	return loadavg, pressure
}

func (smp SoakSample) line() string {
	l := fmt.Sprintf("+%.0fs rss %s goroutines %d (machine: load %.1f, cpu pressure %.0f%%)", smp.At, mib(smp.RSS), smp.Goroutines, smp.LoadAvg, smp.CPUPressure)
	if smp.Fault != "" {
		l += " (" + smp.Fault + ")"
	}
	return l
}

// goroutines reads the count from the first line of the admin goroutine
// profile: "goroutine profile: total N".
func goroutines(ctx context.Context, client *http.Client, admin string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts %q", line)
	}
	return strconv.ParseInt(n, 10, 64)
}

// judge summarizes the samples and decides the verdict.
func (r *SoakReport) judge(o SoakOptions, sampleFailures []string) {
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	c := r.Checks
	if c.Wrong > 0 {
		fail("%d wrong answers, e.g. %s", c.Wrong, strings.Join(c.WrongSamples, "; "))
	}
	if n := c.Errors[causeUnexplained]; n > 0 {
		fail("%d errors outside any fault that explains them, e.g. %s", n, strings.Join(c.ErrorSamples[causeUnexplained], "; "))
	}
	if c.Late > 0 {
		fail("%d ShouldRateLimit calls during Redis faults took longer than %s, e.g. %s", c.Late, r.Settings.LateAfter, strings.Join(c.LateSamples, "; "))
	}
	for _, f := range r.Faults {
		if f.Failure != "" {
			fail("fault %s at +%.0fs: %s", f.Kind, f.Start, f.Failure)
		}
	}
	r.Failures = append(r.Failures, sampleFailures...)

	var final *SoakSample
	var under, quiet []SoakSample
	for i, s := range r.Samples {
		switch s.Fault {
		case "final":
			final = &r.Samples[i]
		case "":
			quiet = append(quiet, s)
			under = append(under, s)
		default:
			under = append(under, s)
		}
	}
	if len(quiet) == 0 {
		quiet = under
	}
	switch {
	case final == nil:
		fail("no final sample: RSS and goroutine growth not judged")
	case len(under) == 0:
		fail("no sample under load after warm-up: RSS and goroutine growth not judged")
	default:
		r.RSS = summarizeSeries(under, quiet, *final, func(s SoakSample) int64 { return s.RSS })
		r.Goroutines = summarizeSeries(under, quiet, *final, func(s SoakSample) int64 { return s.Goroutines })
		if limit := int64(float64(r.RSS.Median) * o.RSSGrowth); r.RSS.Growth > limit {
			fail("RSS grew to %s, %s over the median %s (limit +%.0f%%)", mib(r.RSS.Final), mib(r.RSS.Growth), mib(r.RSS.Median), o.RSSGrowth*100)
		}
		limit := max(int64(o.GoroutineGrowth), int64(float64(r.Goroutines.Median)*o.GoroutineGrowthFraction))
		if r.Goroutines.Growth > limit {
			fail("goroutines grew to %d, %d over the median %d (limit +%d)", r.Goroutines.Final, r.Goroutines.Growth, r.Goroutines.Median, limit)
		}
	}
	if n := c.Errors[causeStalled]; n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d errors while the load generator itself was stalled for %s or more (the machine too busy to run it): not charged to the server, e.g. %s",
			n, stallExcuse, strings.Join(c.ErrorSamples[causeStalled], "; ")))
	}
	if res := r.Result; res != nil && res.Dropped*100 > res.Requests {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d requests could not be sent on time: the machine could not keep up with %.0f req/s", res.Dropped, r.Rate))
	}
	r.Pass = len(r.Failures) == 0
}

func summarizeSeries(under, quiet []SoakSample, final SoakSample, v func(SoakSample) int64) Series {
	vals := func(ss []SoakSample) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = float64(v(s))
		}
		return out
	}
	all := vals(under)
	s := Series{Min: int64(slices.Min(all)), Max: int64(slices.Max(all)), Median: int64(median(vals(quiet))), Final: v(final)}
	s.Growth = s.Final - s.Median
	return s
}

// WriteSummary prints the report for a terminal.
func (r *SoakReport) WriteSummary(w io.Writer) error {
	var b strings.Builder
	st := r.Settings
	fmt.Fprintf(&b, "soak: %s at %.0f%% of %.0f req/s = %.0f req/s offered (Check and ShouldRateLimit in turn), warm-up %s\n",
		st.Duration, st.Load*100, r.MaxThroughput, r.Rate, st.Warmup)
	if res := r.Result; res != nil {
		fmt.Fprintf(&b, "  throughput  %.0f req/s after warm-up (%d answered, %d errors, %d not sent in time)\n", res.Throughput, res.Requests, res.Errors, res.Dropped)
		fmt.Fprintf(&b, "  latency     p50 %s  p99 %s  p99.9 %s  max %s (from the scheduled send)\n", us(res.Latency.P50), us(res.Latency.P99), us(res.Latency.P999), us(res.Latency.Max))
		if s := res.Service; s != nil {
			fmt.Fprintf(&b, "  service     p50 %s  p99 %s  p99.9 %s  max %s (from the actual send)\n", us(s.P50), us(s.P99), us(s.P999), us(s.Max))
		}
		if u := res.Server; u != nil {
			fmt.Fprintf(&b, "  server cpu  %.0fs (%.2f cores, %.0fµs per request)\n", u.CPUSeconds, u.Cores, u.CPUPerRequest)
		}
	}
	c := r.Checks
	fmt.Fprintf(&b, "  answers     %d Check, %d ShouldRateLimit, probe and warm-up included: %s; wrong %d\n",
		c.Answered[apiCheck], c.Answered[apiRL], countsLine(c.Outcomes), c.Wrong)
	errs := "none"
	if len(c.Errors) > 0 {
		errs = countsLine(c.Errors)
	}
	fmt.Fprintf(&b, "  errors      %s\n", errs)
	fmt.Fprintf(&b, "  redis down  %d ShouldRateLimit calls overlapped a Redis fault, slowest %s (bound %s), late %d\n",
		c.RedisFaultCalls, us(c.RedisFaultMaxUS), st.LateAfter, c.Late)
	fmt.Fprintf(&b, "  faults      %d injected, every %s for %s\n", len(r.Faults), st.FaultEvery, st.FaultFor)
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "    +%4.0fs to +%4.0fs  %-14s %s", f.Start, f.End, f.Kind, f.Detail)
		if f.Failure != "" {
			fmt.Fprintf(&b, "  FAILED: %s", f.Failure)
		}
		b.WriteByte('\n')
	}
	var rough []string
	for _, p := range r.Timeline {
		if p.Errors > 0 || p.Late > 0 || p.MaxUS > 1e6 || p.StallUS > 5e5 {
			rough = append(rough, fmt.Sprintf("    +%4.0fs  %d errors (%d unexplained), %d late, slowest %s, generator stalled %s",
				p.At, p.Errors, p.Unexplained, p.Late, us(p.MaxUS), us(p.StallUS)))
		}
	}
	if len(rough) > 0 {
		fmt.Fprintf(&b, "  rough periods (errors, late answers, a request over 1s, or the generator stalled over 0.5s):\n%s\n", strings.Join(rough, "\n"))
	}
	n := 0
	for _, s := range r.Samples {
		if s.Fault != "final" {
			n++
		}
	}
	fmt.Fprintf(&b, "  rss         min %s  median %s  max %s  final %s (%+.1f%%; limit +%.0f%%), %d samples\n",
		mib(r.RSS.Min), mib(r.RSS.Median), mib(r.RSS.Max), mib(r.RSS.Final), pct(r.RSS.Growth, r.RSS.Median), st.RSSGrowth*100, n)
	fmt.Fprintf(&b, "  goroutines  min %d  median %d  max %d  final %d (%+d; limit +%d and +%.0f%%)\n",
		r.Goroutines.Min, r.Goroutines.Median, r.Goroutines.Max, r.Goroutines.Final, r.Goroutines.Growth, st.GoroutineGrowth, st.GoroutineGrowthFraction*100)
	for _, warn := range r.Warnings {
		fmt.Fprintf(&b, "  warning     %s\n", warn)
	}
	if r.Pass {
		b.WriteString("  verdict     PASS\n")
	} else {
		b.WriteString("  verdict     FAIL\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "    - %s\n", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) * 100 / float64(whole)
}

// countsLine prints counts sorted by key: "a 1, b 2".
func countsLine(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
