package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// TestSoakShort is the soak of `make soak`, shortened for CI: 30 seconds
// of the mix at half the probed maximum, a fault every 7 seconds (Redis
// cut, Redis slow, policy broken: one of each), samples every second.
//
// It asserts nothing about time but the soak's own rule: during a Redis
// fault, ShouldRateLimit answers within the server's Redis timeout plus a
// slack, here a generous 5s for a loaded 2-core machine. Goroutine growth
// has the soak's default limits (the final count is taken with no load,
// so in-flight requests do not count). The RSS limit is looser than the
// default 10%: 30 seconds is too short for the heap to settle, and the
// last fault, the policy restored 6 seconds before the end, recompiles it
// and starts a cold decision cache: in one trial RSS rose by a quarter
// just after, and the Go runtime returns such a burst to the system over
// seconds to minutes.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs for 30s")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the soak needs redis-server on PATH: %v", err)
		}
		t.Skipf("the soak needs redis-server on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "portcullis")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/portcullis-mcp/portcullis/cmd/portcullis").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	rp, err := RedisServer(addr)
	if err != nil {
		t.Fatal(err)
	}
	redis, err := rp.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = redis.Stop() }()
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}

	var progress strings.Builder
	r, err := Soak(ctx, SoakOptions{
		Portcullis: bin, Scenarios: "scenarios", Policy: "../rego/examples/rbac", Work: work, RedisAddr: addr,
		Duration: 30 * time.Second, Warmup: 5 * time.Second, FaultEvery: 7 * time.Second, Probe: 3 * time.Second,
		SampleEvery: time.Second, OpenWorkers: 256, RequestTimeout: 10 * time.Second, Slack: 5 * time.Second,
		RSSGrowth: 0.5, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	var summary strings.Builder
	if err := r.WriteSummary(&summary); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", summary.String())
	if !r.Pass {
		t.Errorf("the soak failed:\n%s", progress.String())
	}
	var kinds []string
	for _, f := range r.Faults {
		kinds = append(kinds, f.Kind)
	}
	if diff := cmp.Diff([]string{FaultRedisCut, FaultRedisSlow, FaultPolicyBroken}, kinds); diff != "" {
		t.Errorf("faults injected (-want +got):\n%s", diff)
	}
	c := r.Checks
	if c.Answered[apiCheck] == 0 || c.Answered[apiRL] == 0 || c.Outcomes["check "+outcomeDenied] == 0 || c.RedisFaultCalls == 0 {
		t.Errorf("the mix was not exercised: answered %v, outcomes %v, %d calls during Redis faults", c.Answered, c.Outcomes, c.RedisFaultCalls)
	}
}

// The expectations follow authz-jwt's design: 8 in 10 allowed, a viewer's
// call and a token without mcp:tools refused.
func TestExpectedCheckMix(t *testing.T) {
	sc, err := FindScenario("authz-jwt")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sc.Prepare("scenarios", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := ReadMessages(func() *authv3.CheckRequest { return new(authv3.CheckRequest) }, w.Requests...)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for i, req := range reqs {
		want, err := expectedCheck(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got[want]++
	}
	if diff := cmp.Diff(map[string]int{outcomeOK: 800, outcomeDenied: 200}, got); diff != "" {
		t.Errorf("expected outcomes (-want +got):\n%s", diff)
	}
	if _, err := expectedCheck(&authv3.CheckRequest{}); err == nil {
		t.Error("a request without a token has an expectation")
	}
}

func TestFaultLogOverlapping(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	l := &faultLog{start: t0, windows: []*FaultWindow{
		{Kind: FaultRedisCut, start: at(10), end: at(20)},
		{Kind: FaultPolicyBroken, start: at(40), end: at(50)},
		{Kind: FaultRedisSlow, start: at(70)}, // still on
	}}
	for _, tc := range []struct {
		name     string
		from, to float64
		kinds    []string
		want     string
	}{
		{"before any", 1, 2, []string{FaultRedisCut}, ""},
		{"sent before, answered during", 9, 11, []string{FaultRedisCut}, FaultRedisCut},
		{"inside", 12, 13, []string{FaultRedisCut, FaultRedisSlow}, FaultRedisCut},
		{"within the grace after", 21, 21.5, []string{FaultRedisCut}, FaultRedisCut},
		{"after the grace", 23, 24, []string{FaultRedisCut}, ""},
		{"another kind", 45, 46, []string{FaultRedisCut, FaultRedisSlow}, ""},
		{"that kind", 45, 46, []string{FaultPolicyBroken}, FaultPolicyBroken},
		{"open window", 100, 101, []string{FaultRedisSlow}, FaultRedisSlow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.overlapping(at(tc.from), at(tc.to), tc.kinds...); got != tc.want {
				t.Errorf("overlapping = %q, want %q", got, tc.want)
			}
		})
	}
}

// Errors are charged to the Redis fault they overlap, ShouldRateLimit
// calls only, or to the load generator when it was stalled a second or
// more during the request; the rest are unexplained. Wrong answers are
// counted, and late ones less the generator's stalls.
func TestSoakAccount(t *testing.T) {
	t0 := time.Now()
	in := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	l := &faultLog{start: t0, windows: []*FaultWindow{{Kind: FaultRedisCut, start: in(10), end: in(20)}}}
	a := newSoakAccount(l, time.Second)
	a.startTimeline(t0, 10*time.Second)
	a.stalled(in(40), in(41.5)) // the generator did not run for 1.5s
	a.stalled(in(50), in(50.001))
	timeout := errors.New("deadline exceeded")
	a.record(apiRL, 1, outcomeOK, "", timeout, in(11), in(16))      // explained, late
	a.record(apiCheck, 2, outcomeOK, "", timeout, in(11), in(16))   // a Check: unexplained
	a.record(apiRL, 3, outcomeOK, "", timeout, in(30), in(35))      // no fault: unexplained
	a.record(apiRL, 4, outcomeOK, outcomeOK, nil, in(12), in(12.3)) // in time
	a.record(apiCheck, 5, outcomeDenied, outcomeOK, nil, in(1), in(1.1))
	a.record(apiCheck, 6, outcomeOK, "", timeout, in(38), in(43)) // the generator stalled
	a.record(apiCheck, 7, outcomeOK, "", timeout, in(48), in(53)) // a stall too short to excuse it
	l.windows = append(l.windows, &FaultWindow{Kind: FaultRedisSlow, start: in(39), end: in(45)})
	a.record(apiRL, 8, outcomeOK, outcomeOK, nil, in(40.9), in(42.2)) // 1.3s, of which 0.6s stalled: in time
	c := a.checks()
	got := struct {
		Errors                map[string]int64
		Wrong, Late, InFaults int64
		Answered              map[string]int64
	}{c.Errors, c.Wrong, c.Late, c.RedisFaultCalls, c.Answered}
	want := got
	want.Errors = map[string]int64{FaultRedisCut: 1, causeUnexplained: 3, causeStalled: 1}
	want.Wrong, want.Late, want.InFaults = 1, 1, 3
	want.Answered = map[string]int64{apiRL: 2, apiCheck: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("account (-want +got):\n%s", diff)
	}
	unexplained := map[float64]int64{}
	for _, p := range a.periods() {
		if p.Unexplained > 0 {
			unexplained[p.At] = p.Unexplained
		}
	}
	if diff := cmp.Diff(map[float64]int64{10: 1, 30: 1, 40: 1}, unexplained); diff != "" {
		t.Errorf("unexplained errors by period (-want +got):\n%s", diff)
	}
}

func TestSoakJudge(t *testing.T) {
	samples := func(rss, goroutines []int64, final [2]int64) []SoakSample {
		var out []SoakSample
		for i := range rss {
			out = append(out, SoakSample{RSS: rss[i], Goroutines: goroutines[i]})
		}
		return append(out, SoakSample{RSS: final[0], Goroutines: final[1], Fault: "final"})
	}
	steady := samples([]int64{100, 102, 101}, []int64{40, 41, 40}, [2]int64{104, 38})
	for _, tc := range []struct {
		name string
		r    SoakReport
		want []string // substrings of the failures, in order
	}{
		{"pass", SoakReport{Samples: steady}, nil},
		{"wrong answer", SoakReport{Samples: steady, Checks: SoakChecks{Wrong: 1}}, []string{"1 wrong answers"}},
		{"unexplained error", SoakReport{Samples: steady, Checks: SoakChecks{Errors: map[string]int64{FaultRedisCut: 3, causeUnexplained: 1}}},
			[]string{"1 errors outside any fault"}},
		{"explained errors only", SoakReport{Samples: steady, Checks: SoakChecks{Errors: map[string]int64{FaultRedisCut: 3}}}, nil},
		{"errors while the generator stalled", SoakReport{Samples: steady, Checks: SoakChecks{Errors: map[string]int64{causeStalled: 2}}}, nil},
		{"late", SoakReport{Samples: steady, Checks: SoakChecks{Late: 2}}, []string{"2 ShouldRateLimit calls"}},
		{"fault not effective", SoakReport{Samples: steady, Faults: []*FaultWindow{{Kind: FaultRedisCut, Failure: "no effect"}}}, []string{"fault redis-cut"}},
		{"rss growth", SoakReport{Samples: samples([]int64{100, 100, 100}, []int64{40, 40, 40}, [2]int64{111, 40})}, []string{"RSS grew"}},
		{"goroutine growth", SoakReport{Samples: samples([]int64{100, 100, 100}, []int64{40, 40, 40}, [2]int64{100, 91})}, []string{"goroutines grew"}},
		{"goroutines within +50", SoakReport{Samples: samples([]int64{100, 100, 100}, []int64{40, 40, 40}, [2]int64{100, 90})}, nil},
		// A spike during a fault is in max, not in the median.
		{"fault spike", SoakReport{Samples: []SoakSample{{RSS: 100, Goroutines: 40}, {RSS: 300, Goroutines: 900, Fault: FaultPolicyBroken},
			{RSS: 100, Goroutines: 40}, {RSS: 105, Goroutines: 41, Fault: "final"}}}, nil},
		{"no final sample", SoakReport{Samples: steady[:3]}, []string{"no final sample"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := SoakOptions{}
			o.setDefaults()
			r := tc.r
			r.judge(o, nil)
			if r.Pass != (len(tc.want) == 0) || len(r.Failures) != len(tc.want) {
				t.Fatalf("pass %v, failures %q; want %q", r.Pass, r.Failures, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(r.Failures[i], w) {
					t.Errorf("failure %q lacks %q", r.Failures[i], w)
				}
			}
		})
	}
}

func TestMetricSum(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `# HELP portcullis_ratelimit_failure_mode_allowed_total Requests allowed.
# TYPE portcullis_ratelimit_failure_mode_allowed_total counter
portcullis_ratelimit_failure_mode_allowed_total{domain="mcp",otel_scope_name="x"} 12
portcullis_ratelimit_failure_mode_allowed_total{domain="other"} 3.5
portcullis_ratelimit_failure_mode_allowed_other_total 100
portcullis_ratelimit_requests_total 7
`)
	}))
	defer srv.Close()
	got, err := metricSum(testContext(t), srv.Client(), strings.TrimPrefix(srv.URL, "http://"), "portcullis_ratelimit_failure_mode_allowed")
	if err != nil {
		t.Fatal(err)
	}
	if got != 15.5 {
		t.Errorf("sum = %v, want 15.5", got)
	}
}

// The fault proxy forwards, holds every byte while cut (and delivers them
// on restore), and delays them when told to.
func TestFaultProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	p, err := ratelimittest.StartProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	echo := func(msg string, wait time.Duration) (string, error) {
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		return rd.ReadString('\n')
	}
	if got, err := echo("one", 10*time.Second); err != nil || got != "one\n" {
		t.Fatalf("forwarding: %q, %v", got, err)
	}

	p.Cut()
	var ne net.Error
	if got, err := echo("two", 200*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("while cut: %q, %v; want a timeout", got, err)
	}
	p.Restore()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := rd.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("after restore, the held bytes: %q, %v", got, err)
	}

	// A delay is a lower bound, whatever the machine's load.
	const delay = 150 * time.Millisecond
	p.SetDelay(delay)
	t0 := time.Now()
	if got, err := echo("three", 10*time.Second); err != nil || got != "three\n" {
		t.Fatalf("delayed: %q, %v", got, err)
	}
	if took := time.Since(t0); took < 2*delay {
		t.Errorf("round trip took %s, want at least %s (delayed both ways)", took, 2*delay)
	}
}
