//go:build faults

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	ratelimitcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// Redis faults under load (make faults): Redis partitioned away (the link
// cut, bytes held), killed (connections reset, new ones refused) and slow
// (latency below and above ratelimit.redis.timeout), each then repaired.
// While it is broken, ShouldRateLimit answers within the timeout (plus
// slack for a loaded machine) with failure_mode allow, and every call
// through the front door is answered; once it is repaired counting resumes
// without a restart, and the counts acknowledged before the fault are
// still there.

// redisTimeout is the chain's ratelimit.redis.timeout: above the round
// trips of a loaded test machine, so that only injected faults fail.
const redisTimeout = 250 * time.Millisecond

// redisFault is one way of breaking Redis and repairing it.
type redisFault struct {
	name          string
	cause, repair func()
	countedDuring bool // calls during the fault are still counted (latency within the timeout)
}

func TestFaultRedis(t *testing.T) {
	ratelimittest.Redis(t) // skips without a Redis (fails with CI=true)
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = ratelimittest.DefaultRedisAddr
	}
	cut := ratelimittest.NewProxy(t, addr)
	fp := ratelimittest.NewProxy(t, addr)
	for _, f := range []struct {
		via   string
		fault redisFault
	}{
		{cut.Addr(), redisFault{name: "partitioned (link cut)", cause: cut.Cut, repair: cut.Restore}},
		{fp.Addr(), redisFault{name: "killed (connections reset and refused)", cause: fp.Kill, repair: fp.Revive}},
		{fp.Addr(), redisFault{name: "slow beyond the timeout (4x)", cause: func() { fp.SetDelay(4 * redisTimeout) }, repair: func() { fp.SetDelay(0) }}},
		{fp.Addr(), redisFault{name: "slow within the timeout (10ms each way)", cause: func() { fp.SetDelay(10 * time.Millisecond) }, repair: func() { fp.SetDelay(0) },
			countedDuring: true}},
	} {
		t.Run(f.fault.name, func(t *testing.T) { testRedisFault(t, f.via, f.fault) })
	}
}

func testRedisFault(t *testing.T, redisAddr string, f redisFault) {
	limits := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(limits, []byte(`domain: mcp
descriptors:
  - key: subject
    descriptors:
      - key: tool
        value: time
        rate_limit: { unit: day, requests_per_unit: 3 }
      - key: tool
        rate_limit: { unit: day, requests_per_unit: 100000 }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChain(t, fmt.Sprintf(`ratelimit:
  backend: redis
  redis: { url: "redis://%s/0", timeout: %q }
  failure_mode: allow
  config_paths: [%q]
`, redisAddr, redisTimeout, limits))
	waitReady(t, c.env.admin)
	ctx := testContext(t)
	client := &http.Client{Timeout: 30 * time.Second}
	rls := rlsv3.NewRateLimitServiceClient(grpcConn(t, c.env.grpc))

	// remaining calls a tool and reports x-ratelimit-remaining, -1 when
	// the call was not counted (the store failed open).
	remaining := func(tok, tool string) (int, outcome) {
		args := "{}"
		if tool == "echo" {
			args = `{"text":"x"}`
		}
		o := post(ctx, client, c.url, tok, toolCall(tool, args))
		v := o.header.Get("X-Ratelimit-Remaining")
		if v == "" {
			return -1, o
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("x-ratelimit-remaining %q", v)
		}
		return n, o
	}
	// Acknowledged counts: a subject with three counted calls.
	_, steady := c.token(t, "user")
	var before int
	for range 3 {
		n, o := remaining(steady, "echo")
		if n < 0 || toolResult(o) != nil {
			t.Fatalf("before the fault: remaining %d, %d %s", n, o.status, o.body)
		}
		before = n
	}

	_, loader := c.token(t, "user")
	l := startLoad(4, "before", func(int) outcome { return post(ctx, client, c.url, loader, toolCall("echo", `{"text":"x"}`)) })
	l.waitFor(t, "before", 40)

	f.cause()
	l.setPhase(t, "fault", 0)
	// Straight to the rate limit service, from the moment Redis broke (the
	// first round trips wait for the timeout, then the breaker opens):
	// answered, OK, within the timeout.
	var direct []outcome
	countedDirect := 0
	for range 10 {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := rls.ShouldRateLimit(dctx, &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{
			{Entries: []*ratelimitcommonv3.RateLimitDescriptor_Entry{{Key: "subject", Value: "probe-" + randHex(4)}, {Key: "tool", Value: "echo"}}}}})
		cancel()
		o := outcome{phase: "fault", took: time.Since(start), err: err, status: http.StatusOK}
		switch {
		case err != nil:
		case resp.GetOverallCode() != rlsv3.RateLimitResponse_OK:
			o.status = http.StatusTooManyRequests
		case resp.GetStatuses()[0].GetCurrentLimit() != nil:
			countedDirect++
			if !f.countedDuring {
				// Counted while Redis was away: the fault was not injected.
				o.err = fmt.Errorf("counted: %v", resp.GetStatuses()[0])
			}
		}
		direct = append(direct, o)
	}
	l.waitFor(t, "fault", 60)
	f.repair()
	l.setPhase(t, "mending", 0)
	// Counting resumes: the breaker closes on its own.
	_, probe := c.token(t, "user")
	until(t, "counting resumes", func() bool { n, _ := remaining(probe, "whoami"); return n >= 0 })
	l.setPhase(t, "after", 60)
	results := l.finish()

	account(t, "through the front door", results, func(o outcome) error {
		// With Redis away no call can be counted. (With Redis slow but in
		// time, a call may still miss the front door's own 100ms timeout on
		// a loaded machine: not asserted.)
		if o.phase == "fault" && !f.countedDuring && o.header.Get("X-Ratelimit-Remaining") != "" {
			return fmt.Errorf("x-ratelimit-remaining %q during the fault", o.header.Get("X-Ratelimit-Remaining"))
		}
		return toolResult(o)
	})
	slowest := time.Duration(0)
	for _, o := range direct {
		slowest = max(slowest, o.took)
	}
	t.Logf("ShouldRateLimit during the fault: slowest answer %s (timeout %s), %d of %d counted", slowest, redisTimeout, countedDirect, len(direct))
	account(t, "ShouldRateLimit during the fault", direct, func(o outcome) error {
		switch {
		case o.err != nil:
			return fmt.Errorf("failed: %w", o.err)
		case o.status != http.StatusOK:
			return errors.New("not OK with failure_mode allow")
		case o.took > redisTimeout+2*time.Second:
			return fmt.Errorf("answered after %s, timeout %s", o.took, redisTimeout)
		}
		return nil
	})

	// The counts acknowledged before the fault are there: the next counted
	// call of the steady subject is one less.
	n, o := remaining(steady, "echo")
	if n != before-1 {
		t.Errorf("after the fault: remaining %d (status %d), want %d: acknowledged counts were lost", n, o.status, before-1)
	}
	// And limits bite again: 3 time calls a day.
	_, fresh := c.token(t, "user")
	for i := range 3 {
		if n, o := remaining(fresh, "time"); n != 2-i || o.status != http.StatusOK {
			t.Errorf("time call %d after the fault: remaining %d, status %d", i+1, n, o.status)
		}
	}
	if _, o := remaining(fresh, "time"); o.status != http.StatusTooManyRequests {
		t.Errorf("time call 4 after the fault: status %d, want 429", o.status)
	}
	if f.countedDuring && countedDirect == 0 {
		t.Error("no call was counted while Redis was slow but within the timeout")
	}
}
