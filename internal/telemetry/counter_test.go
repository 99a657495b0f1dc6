package telemetry

import (
	"context"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
)

// TestCounterVecExportsWhatACounterDoes counts the same adds on a
// CounterVec and on a synchronous Int64Counter, from several goroutines
// while the reader collects, and compares what the reader exports.
func TestCounterVecExportsWhatACounterDoes(t *testing.T) {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	m := mp.Meter("test")
	opts := []metric.Int64ObservableCounterOption{metric.WithUnit("{call}"), metric.WithDescription("Calls.")}
	vec := NewCounterVec(m, "vec", opts...)
	sync, err := m.Int64Counter("sync", metric.WithUnit("{call}"), metric.WithDescription("Calls."))
	if err != nil {
		t.Fatal(err)
	}
	sets := []attribute.Set{
		attribute.NewSet(attribute.String("result", "hit")),
		attribute.NewSet(attribute.String("result", "miss"), attribute.String("domain", "mcp")),
		*attribute.EmptySet(),
	}
	// Equal sets are one series, whatever the order they were built in.
	if a, b := vec.Series(sets[1]), vec.Series(attribute.NewSet(attribute.String("domain", "mcp"), attribute.String("result", "miss"))); a != b {
		t.Fatal("two series for one attribute set")
	}
	var wg goGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				set := sets[(g+i)%len(sets)]
				vec.Series(set).Add(int64(i % 3))
				sync.Add(ctx, int64(i%3), metric.WithAttributeSet(set))
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			var rm metricdata.ResourceMetrics
			_ = reader.Collect(ctx, &rm)
		}
	})
	wg.Wait()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, mm := range sm.Metrics {
			got[mm.Name] = mm
		}
	}
	want := got["sync"]
	want.Name = "vec"
	metricdatatest.AssertEqual(t, want, got["vec"], metricdatatest.IgnoreTimestamp())
	var total int64
	for _, dp := range got["vec"].Data.(metricdata.Sum[int64]).DataPoints {
		total += dp.Value
	}
	if total != 4*999 { // 4 goroutines × Σ(i mod 3) for i < 1000
		t.Errorf("total %d, want %d", total, 4*999)
	}
}

// goGroup is a sync.WaitGroup under another name: the test's counter is
// called sync.
type goGroup = sync.WaitGroup

// TestLabeledCounter checks that a key's series carries its attributes,
// that a key keeps its series, and that keys past the bound count in the
// overflow series.
func TestLabeledCounter(t *testing.T) {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(ctx) })
	c := NewLabeledCounter(NewCounterVec(mp.Meter("test"), "calls"), 2, func(k string) attribute.Set {
		return attribute.NewSet(attribute.String("k", k))
	})
	if first, again := c.Series("a"), c.Series("a"); first != again {
		t.Fatal("one key, two series")
	}
	for _, k := range []string{"a", "a", "b", "c", "d", "c"} {
		c.Series(k).Add(1)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, dp := range rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]).DataPoints {
		got[dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Value
	}
	want := map[string]int64{"k=a": 2, "k=b": 1, "otel.metric.overflow=true": 3}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("series %v, want %v", got, want)
			break
		}
	}
}
