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
	calls    *telemetry.LabeledCounter[toolLabels]
	duration metric.Float64Histogram

	mu        sync.RWMutex
	toolAttrs map[string]metric.RecordOption // the duration's, by tool
}

type toolLabels struct{ tool, outcome string }

// maxToolLabels bounds the calls counter's series: tools are the
// registry's (others are unknownTool), outcomes three.
const maxToolLabels = 4096

func newToolMetrics(mp metric.MeterProvider) *toolMetrics {
	m := meter(mp)
	t := &toolMetrics{toolAttrs: map[string]metric.RecordOption{}}
	t.calls = telemetry.NewLabeledCounter(telemetry.NewCounterVec(m, metricToolCalls, metric.WithUnit("{call}"),
		metric.WithDescription("Tool calls, by tool and outcome (ok, error, denied).")),
		maxToolLabels, func(l toolLabels) attribute.Set {
			return attribute.NewSet(attribute.String("tool", l.tool), attribute.String("outcome", l.outcome))
		})
	t.duration, _ = m.Float64Histogram(metricToolDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of tool calls, the policy check included, by tool."),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets()...))
	return t
}

func (t *toolMetrics) record(ctx context.Context, tool, outcome string, d time.Duration) {
	t.calls.Series(toolLabels{tool, outcome}).Add(1)
	t.duration.Record(ctx, d.Seconds(), t.durationAttrs(tool))
}

// durationAttrs returns the duration's attribute set of tool, built once.
func (t *toolMetrics) durationAttrs(tool string) metric.RecordOption {
	t.mu.RLock()
	opt, ok := t.toolAttrs[tool]
	t.mu.RUnlock()
	if ok {
		return opt
	}
	opt = metric.WithAttributeSet(attribute.NewSet(attribute.String("tool", tool)))
	t.mu.Lock()
	t.toolAttrs[tool] = opt
	t.mu.Unlock()
	return opt
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
