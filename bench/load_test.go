package bench

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// funcTarget is a Target whose callers all run one function.
type funcTarget func(ctx context.Context) (string, error)

func (f funcTarget) NewCaller(context.Context, int) (Caller, error) { return f, nil }
func (f funcTarget) Call(ctx context.Context) (string, error)       { return f(ctx) }

// near reports whether a histogram value is want within the histogram's
// precision (three significant digits).
func near(got, want float64) bool { return math.Abs(got-want) <= want*0.001+1 }

func TestHistogramPercentiles(t *testing.T) {
	h := newHistogram()
	// 1..1000 µs, once each: the p-th percentile is p*10 µs.
	for i := 1; i <= 1000; i++ {
		record(h, time.Duration(i)*time.Microsecond)
	}
	record(h, 2*time.Minute) // beyond the range: clamped, still counted
	l := summarize(h)
	if l.Count != 1001 {
		t.Fatalf("count %d, want 1001", l.Count)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", l.P50, 501}, {"p90", l.P90, 901}, {"p99", l.P99, 991}, {"max", l.Max, 60e6},
	} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %.1fµs, want %.0fµs", c.name, c.got, c.want)
		}
	}
	back, err := DecodeLatency(l)
	if err != nil {
		t.Fatal(err)
	}
	if back.TotalCount() != 1001 || back.ValueAtQuantile(50) != h.ValueAtQuantile(50) {
		t.Errorf("decoded histogram differs: %d values, p50 %d", back.TotalCount(), back.ValueAtQuantile(50))
	}
	if summarize(newHistogram()) != (Latency{}) {
		t.Error("an empty histogram should summarize to zero")
	}
}

// In closed loop with a 1ms server and synthetic time, each of 4 workers
// makes exactly one call per millisecond of the window; the warm-up is not
// counted.
func TestRunClosedCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		n := 0
		target := funcTarget(func(ctx context.Context) (string, error) {
			time.Sleep(time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			n++
			switch {
			case n%10 == 0:
				return "", errors.New("boom")
			case n%5 == 0:
				return "PermissionDenied 403", nil
			}
			return "OK", nil
		})
		r, err := Run(t.Context(), target, Load{Mode: Closed, Workers: 4, Warmup: 20 * time.Millisecond, Duration: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Requests + r.Errors; got != 400 {
			t.Errorf("requests+errors = %d, want 400 (4 workers × 100 calls of 1ms)", got)
		}
		if r.Errors == 0 || len(r.ErrorSamples) != 1 || r.ErrorSamples[0] != "boom" {
			t.Errorf("errors %d, samples %q", r.Errors, r.ErrorSamples)
		}
		if r.Outcomes["OK"]+r.Outcomes["PermissionDenied 403"] != r.Requests || r.Outcomes["PermissionDenied 403"] == 0 {
			t.Errorf("outcomes %v do not add up to %d", r.Outcomes, r.Requests)
		}
		if r.Latency.Count != r.Requests {
			t.Errorf("latency samples %d, want one per answer (%d)", r.Latency.Count, r.Requests)
		}
		if !near(r.Latency.P50, 1000) {
			t.Errorf("p50 %.1fµs, want the server's 1000µs", r.Latency.P50)
		}
		if r.Throughput != float64(r.Requests)/0.1 {
			t.Errorf("throughput %.0f", r.Throughput)
		}
		if r.Client == nil {
			t.Error("no client usage")
		}
	})
}

// An open loop of 100 requests/s against a server that takes 20ms, with one
// worker: the worker can send only every 20ms, so request i, due at 10i ms,
// leaves at 20i ms. Its latency counts the 10i ms it waited — from the
// scheduled time — while its service time stays 20ms. Half the slots
// cannot be sent before the window closes and are reported as dropped.
func TestRunOpenMeasuresFromScheduledTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := funcTarget(func(ctx context.Context) (string, error) {
			time.Sleep(20 * time.Millisecond)
			return "OK", nil
		})
		r, err := Run(t.Context(), slow, Load{Mode: Open, Workers: 1, Rate: 100, Duration: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests != 50 || r.Dropped != 50 {
			t.Errorf("sent %d, dropped %d; want 50 and 50", r.Requests, r.Dropped)
		}
		if r.Service == nil || !near(r.Service.Max, 20000) || !near(r.Service.P50, 20000) {
			t.Fatalf("service time %+v, want 20ms throughout", r.Service)
		}
		// The last request sent, number 49, was due at 490ms and answered
		// at 1000ms: 510ms. The median one waited about 250ms.
		if !near(r.Latency.Max, 510000) {
			t.Errorf("max latency %.0fµs, want 510000µs (queueing counted)", r.Latency.Max)
		}
		if r.Latency.P50 < 10*r.Service.P50 {
			t.Errorf("p50 %.0fµs hides the queue (service p50 %.0fµs)", r.Latency.P50, r.Service.P50)
		}
	})
}

// With enough workers the same open loop keeps up: nothing is dropped and
// latency is the service time.
func TestRunOpenKeepsUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := funcTarget(func(ctx context.Context) (string, error) {
			time.Sleep(20 * time.Millisecond)
			return "OK", nil
		})
		r, err := Run(t.Context(), slow, Load{Mode: Open, Workers: 4, Rate: 100, Warmup: 100 * time.Millisecond, Duration: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests != 100 || r.Dropped != 0 {
			t.Errorf("sent %d, dropped %d; want 100 and 0", r.Requests, r.Dropped)
		}
		if !near(r.Latency.Max, 20000) {
			t.Errorf("max latency %.0fµs, want 20000µs", r.Latency.Max)
		}
	})
}

func TestRunRejectsBadLoad(t *testing.T) {
	ok := funcTarget(func(context.Context) (string, error) { return "OK", nil })
	for _, l := range []Load{
		{Mode: Closed, Workers: 0, Duration: time.Second},
		{Mode: Closed, Workers: 1},
		{Mode: Open, Workers: 1, Duration: time.Second},
		{Mode: "sideways", Workers: 1, Duration: time.Second},
	} {
		if _, err := Run(t.Context(), ok, l); err == nil {
			t.Errorf("Run(%+v) succeeded", l)
		}
	}
}

func TestParseProc(t *testing.T) {
	// A command name with spaces and parentheses, as a process may set.
	stat := []byte("4242 (bench (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 9 0 1000 0 0")
	cpu, waited, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if cpu != 3*time.Second || waited != 100*time.Millisecond {
		t.Errorf("cpu %s, waited-for children %s; want 3s (300 ticks) and 100ms (10 ticks)", cpu, waited)
	}
	rss, hwm := parseStatusMemory([]byte("Name:\tbench\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	if rss != 1<<20 || hwm != 2<<20 {
		t.Errorf("rss %d hwm %d", rss, hwm)
	}
	self, err := ReadProc(0)
	if err != nil {
		t.Fatal(err)
	}
	if self.PeakRSS <= 0 || self.RSS <= 0 {
		t.Errorf("this process: %+v", self)
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=1\r\n# Stats\r\ntotal_reads_processed:99\r\n" +
		"# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250001\r\nused_cpu_sys_children:9.000000\r\n"
	got := parseCommandStats(info)
	if got["evalsha"] != 12 || got["client|setinfo"] != 2 || got[readsKey] != 99 || got[cpuKey] != 1_750_001 || len(got) != 4 {
		t.Errorf("parsed %v", got)
	}
	m := &RedisMeter{begin: map[string]int64{"evalsha": 2, "info": 5, readsKey: 10, cpuKey: 1_000_000},
		end: map[string]int64{"evalsha": 12, "get": 20, "info": 6, readsKey: 21, cpuKey: 1_000_250}}
	r := &Result{Requests: 10}
	m.Report(r)
	u := r.Redis
	if u.Commands != 30 || u.Scripts != 10 || u.ScriptsPerRequest != 1 || u.Reads != 10 || u.ReadsPerRequest != 1 || u.PerRequest != 3 ||
		u.CPUPerRequest != 25 || u.ByCommand[cpuKey] != 0 {
		t.Errorf("usage %+v", u)
	}
}
