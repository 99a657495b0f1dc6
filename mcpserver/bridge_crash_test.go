package mcpserver

import (
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// TestBridgeCrashLoop: an upstream whose child exits at once, every time,
// is restarted with a growing delay — no fork bomb — while another
// upstream keeps answering.
func TestBridgeCrashLoop(t *testing.T) {
	const minBackoff, maxBackoff = 20 * time.Millisecond, 160 * time.Millisecond
	reader := sdkmetric.NewManualReader()
	start := time.Now()
	h := startBridge(t, &BridgeOptions{
		Upstreams: []UpstreamOptions{
			goUpstream("go", nil),
			{Name: "crashloop", Command: "/bin/sh", Args: []string{"-c", "exit 1"}},
		},
		MinBackoff:    minBackoff,
		MaxBackoff:    maxBackoff,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	h.waitTools(t, "the healthy upstream's tools", hasAll("go.echo"))
	restarts := func(upstream string) int64 {
		return metricPoints(t, reader, "portcullis.mcp.bridge.restarts")["upstream="+upstream]
	}
	// The healthy upstream answers all along while the other one crashes.
	for i := 0; i < 20 || restarts("crashloop") < 3; i++ {
		if got, isErr := h.call(t, "go.echo", map[string]any{"text": "still here"}); isErr || got != "upstream says still here" {
			t.Fatalf("call %d to the healthy upstream: %q (isError %v)", i, got, isErr)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the crashing upstream was restarted %d times in 20s", restarts("crashloop"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	// Delays double from minBackoff to maxBackoff: within elapsed there is
	// room for at most the doubling steps plus elapsed/maxBackoff restarts.
	// A slow machine restarts less, never more; a missing backoff would
	// restart hundreds of times.
	steps := 1
	for d := minBackoff; d < maxBackoff; d *= 2 {
		steps++
	}
	if n, limit := restarts("crashloop"), int64(steps)+int64(elapsed/maxBackoff)+2; n > limit {
		t.Errorf("%d restarts in %v, at most %d with backoff", n, elapsed.Round(time.Millisecond), limit)
	}
	if n := restarts("go"); n != 0 {
		t.Errorf("the healthy upstream was restarted %d times", n)
	}
	if h.b.HasTool("crashloop.anything") {
		t.Error("the crashing upstream exposes tools")
	}
}
