package mcpserver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/portcullis-mcp/portcullis/internal/telemetry/telemetrytest"
	"github.com/portcullis-mcp/portcullis/policy"
)

// metricPoints returns the values of the metric name by attributes.
func metricPoints(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	return telemetrytest.Points(t, r, name)
}

// TestToolCallMetrics: tool calls are counted by tool and outcome, and a
// tool the server does not have is labelled _unknown whatever its name.
func TestToolCallMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	s := newServer(t, &Options{
		Decider:       newEngine(t),
		StdioIdentity: policy.Identity{Subject: "local", Roles: []string{"dev"}},
		KnownTool:     func(name string) bool { return name == "up.search" },
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	cs := connectInMemory(t, s)
	for _, name := range []string{"echo", "echo", "time", "nope-s3cret", "up.search"} {
		_, _ = cs.CallTool(testContext(t), &mcp.CallToolParams{Name: name, Arguments: map[string]any{"text": "s3cret"}})
	}
	want := map[string]int64{
		"outcome=ok,tool=echo":          2,
		"outcome=denied,tool=time":      1,
		"outcome=denied,tool=_unknown":  1,
		"outcome=denied,tool=up.search": 1,
	}
	if diff := cmp.Diff(want, metricPoints(t, reader, "portcullis.mcp.tool_calls")); diff != "" {
		t.Errorf("tool calls (-want +got):\n%s", diff)
	}
	wantTimed := map[string]int64{"tool=echo": 2, "tool=time": 1, "tool=_unknown": 1, "tool=up.search": 1}
	if diff := cmp.Diff(wantTimed, metricPoints(t, reader, "portcullis.mcp.tool_call.duration")); diff != "" {
		t.Errorf("tool call durations (-want +got):\n%s", diff)
	}
}

// TestBridgeMetrics: an upstream that cannot be reached is reconnected
// (counted by upstream) and reported down; one that works is up, and its
// tools are known to the server.
func TestBridgeMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := startBridge(t, &BridgeOptions{
		Upstreams:     []UpstreamOptions{goUpstream("go", nil), {Name: "gone", URL: "http://127.0.0.1:1/mcp"}},
		MinBackoff:    5 * time.Millisecond,
		MaxBackoff:    20 * time.Millisecond,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	h.waitTools(t, "the upstream's tools", hasAll("go.echo"))
	if !h.b.HasTool("go.echo") || h.b.HasTool("go.nope") || h.b.HasTool("echo") {
		t.Error("HasTool does not follow the exposed tools")
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricPoints(t, reader, "portcullis.mcp.bridge.restarts")["upstream=gone"] < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("restarts %v", metricPoints(t, reader, "portcullis.mcp.bridge.restarts"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := metricPoints(t, reader, "portcullis.mcp.bridge.restarts")["upstream=go"]; n != 0 {
		t.Errorf("%d restarts of a healthy upstream", n)
	}
	if diff := cmp.Diff(map[string]int64{"upstream=go": 1, "upstream=gone": 0}, metricPoints(t, reader, "portcullis.mcp.bridge.upstream_up")); diff != "" {
		t.Errorf("upstream_up (-want +got):\n%s", diff)
	}
}

// TestUpstreamOptionsLogValue: an upstream logged by mistake shows its
// shape, never its secrets.
func TestUpstreamOptionsLogValue(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("upstreams",
		slog.Any("stdio", UpstreamOptions{Name: "gh", Command: "gh-mcp", Args: []string{"--token", "s3cret-arg"}, Env: map[string]string{"GITHUB_TOKEN": "s3cret-env"}}),
		slog.Any("http", UpstreamOptions{Name: "web", URL: "https://user:s3cret-pass@mcp.example.com/mcp?key=s3cret-query", Headers: map[string]string{"Authorization": "Bearer s3cret-header"}}))
	if strings.Contains(buf.String(), "s3cret") {
		t.Errorf("a secret was logged:\n%s", buf.String())
	}
	for _, shape := range []string{`"env":["GITHUB_TOKEN"]`, `"args":2`, `"url":"https://mcp.example.com/mcp"`, `"headers":["Authorization"]`} {
		if !strings.Contains(buf.String(), shape) {
			t.Errorf("no %s in:\n%s", shape, buf.String())
		}
	}
}
