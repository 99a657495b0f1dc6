package mcpserver

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

const meterName = "github.com/portcullis-mcp/portcullis/mcpserver"

// Metric names.
const (
	metricToolCalls      = "portcullis.mcp.tool_calls"
	metricToolDuration   = "portcullis.mcp.tool_call.duration"
	metricBridgeRestarts = "portcullis.mcp.bridge.restarts"
	metricBridgeUp       = "portcullis.mcp.bridge.upstream_up"
)

// unknownTool labels a call of a tool the server does not have: the client
// names the tool, and must not name label values.
const unknownTool = "_unknown"

func meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	return mp.Meter(meterName)
}

// toolMetrics count and time tool calls by tool and outcome. The tool
// label is a name from the server's registry (built-in tools, and the
// bridge's when Options.KnownTool says so), else unknownTool.
type toolMetrics struct {
	calls    *telemetry.CounterVec
	duration metric.Float64Histogram

	mu     sync.RWMutex
	sets   map[toolLabels]attribute.Set
	series map[toolLabels]*telemetry.CounterSeries
}

type toolLabels struct{ tool, outcome string }

func newToolMetrics(mp metric.MeterProvider) *toolMetrics {
	m := meter(mp)
	t := &toolMetrics{sets: map[toolLabels]attribute.Set{}, series: map[toolLabels]*telemetry.CounterSeries{}}
	t.calls = telemetry.NewCounterVec(m, metricToolCalls, metric.WithUnit("{call}"),
		metric.WithDescription("Tool calls, by tool and outcome (ok, error, denied)."))
	t.duration, _ = m.Float64Histogram(metricToolDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of tool calls, the policy check included, by tool."),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets()...))
	return t
}

func (t *toolMetrics) record(ctx context.Context, tool, outcome string, d time.Duration) {
	t.callSeries(tool, outcome).Add(1)
	t.duration.Record(ctx, d.Seconds(), metric.WithAttributeSet(t.set(tool, "")))
}

// callSeries returns the calls counter's series of tool and outcome.
func (t *toolMetrics) callSeries(tool, outcome string) *telemetry.CounterSeries {
	l := toolLabels{tool, outcome}
	t.mu.RLock()
	s, ok := t.series[l]
	t.mu.RUnlock()
	if ok {
		return s
	}
	s = t.calls.Series(t.set(tool, outcome)) // the CounterVec gives one series per set
	t.mu.Lock()
	t.series[l] = s
	t.mu.Unlock()
	return s
}

// set returns the attribute set of tool and outcome (outcome "" for the
// duration), built once.
func (t *toolMetrics) set(tool, outcome string) attribute.Set {
	l := toolLabels{tool, outcome}
	t.mu.RLock()
	s, ok := t.sets[l]
	t.mu.RUnlock()
	if ok {
		return s
	}
	if outcome == "" {
		s = attribute.NewSet(attribute.String("tool", tool))
	} else {
		s = attribute.NewSet(attribute.String("tool", tool), attribute.String("outcome", outcome))
	}
	t.mu.Lock()
	t.sets[l] = s
	t.mu.Unlock()
	return s
}

// toolLabel is the tool label of a call of name.
func (s *Server) toolLabel(name string) string {
	if _, ok := s.builtin[name]; ok {
		return name
	}
	if s.opts.KnownTool != nil && s.opts.KnownTool(name) {
		return name
	}
	return unknownTool
}
