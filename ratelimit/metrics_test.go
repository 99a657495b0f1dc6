package ratelimit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/portcullis-mcp/portcullis/internal/telemetry/telemetrytest"
)

func TestNearLimitHits(t *testing.T) {
	win := &Limit{Requests: 10, Window: time.Minute}
	gcra := &Limit{Requests: 100, Burst: 5, Window: time.Minute, Algorithm: GCRA}
	for _, tc := range []struct {
		name string
		l    *Limit
		hits uint64
		o    Outcome
		want uint64
	}{
		{"below the threshold", win, 1, Outcome{Remaining: 3}, 0},        // 7 of 10
		{"at the threshold", win, 1, Outcome{Remaining: 2}, 0},           // 8 of 10
		{"first past it", win, 1, Outcome{Remaining: 1}, 1},              // 9 of 10
		{"last one", win, 1, Outcome{Remaining: 0}, 1},                   // 10 of 10
		{"crossing it", win, 4, Outcome{Remaining: 0}, 2},                // 6 → 10: 9 and 10
		{"over the limit", win, 1, Outcome{OverLimit: true}, 0},          // counted as over_limit
		{"only a check", win, 0, Outcome{Remaining: 0}, 0},               // hits_addend 0
		{"unlimited", &Limit{Unlimited: true}, 1, Outcome{}, 0},          //
		{"gcra burst", gcra, 1, Outcome{Remaining: 0}, 1},                // 5 of 5
		{"gcra room", gcra, 1, Outcome{Remaining: 2}, 0},                 // 3 of 5
		{"remaining beyond capacity", win, 1, Outcome{Remaining: 50}, 0}, // a stale estimate
		{"hits beyond what was used", win, 20, Outcome{Remaining: 0}, 2}, // before clamps at 0
	} {
		if got := nearLimitHits(&Hit{Limit: tc.l, Hits: tc.hits}, tc.o); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// collect returns the int64 points of the metric name by attributes
// ("k=v,k=v", sorted): sums and gauges.
func collect(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	return telemetrytest.Points(t, r, name)
}

// TestRedisStoreCircuitMetrics follows the breaker's state gauge and
// openings through a Redis that is not there.
func TestRedisStoreCircuitMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	defer client.Close()
	s, err := NewRedisStore(&RedisOptions{Client: client, FailureThreshold: 2, OpenFor: time.Minute,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	state := func() map[string]int64 { return collect(t, reader, "portcullis.ratelimit.circuit.state") }
	want := map[string]int64{"backend=redis,state=closed": 1, "backend=redis,state=open": 0, "backend=redis,state=half_open": 0}
	if diff := cmp.Diff(want, state()); diff != "" {
		t.Errorf("closed (-want +got):\n%s", diff)
	}
	hits := []Hit{{Key: "d|k=v|x", Limit: perMinute(5, FixedWindow), Hits: 1}}
	for range 3 {
		if _, err := s.Take(storeTestContext(t), hits); err == nil {
			t.Fatal("a Take with no Redis succeeded")
		}
	}
	want = map[string]int64{"backend=redis,state=closed": 0, "backend=redis,state=open": 1, "backend=redis,state=half_open": 0}
	if diff := cmp.Diff(want, state()); diff != "" {
		t.Errorf("open (-want +got):\n%s", diff)
	}
	if got := collect(t, reader, "portcullis.ratelimit.circuit.opens"); got[""] != 1 {
		t.Errorf("openings %v", got)
	}
	s.breaker.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	want = map[string]int64{"backend=redis,state=closed": 0, "backend=redis,state=open": 0, "backend=redis,state=half_open": 1}
	if diff := cmp.Diff(want, state()); diff != "" {
		t.Errorf("half open (-want +got):\n%s", diff)
	}
}

// TestRedisStoreOverLimitCacheMetrics counts the over-limit cache's hits
// and misses.
func TestRedisStoreOverLimitCacheMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	s := newTestRedisStore(t, RedisOptions{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	runStore(t, s)
	hits := []Hit{{Key: "d|k=v|x", Limit: perMinute(1, FixedWindow), Hits: 1}}
	var over []bool
	for range 3 {
		out, err := s.Take(storeTestContext(t), hits)
		if err != nil {
			t.Fatal(err)
		}
		over = append(over, out[0].OverLimit)
		s.cache.wait()
	}
	if diff := cmp.Diff([]bool{false, true, true}, over); diff != "" {
		t.Errorf("over limit (-want +got):\n%s", diff)
	}
	want := map[string]int64{"result=hit": 1, "result=miss": 2}
	if diff := cmp.Diff(want, collect(t, reader, "portcullis.ratelimit.over_limit_cache.lookups")); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
}
