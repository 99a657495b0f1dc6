package extauthz

import (
	"context"
	"io"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/policy"
)

// discardExporter drops every span it is given.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkCheckTelemetry measures what observability costs one Check of
// a request carrying a traceparent: "off" has none; "metrics" records into
// an SDK meter provider read by the Prometheus exporter; "tracing" samples
// every span (always_on) into a batcher whose exporter discards them;
// "all" adds both and an audit record written to io.Discard. The decider
// is the rbac case of BenchmarkCheck ("rbac/..."), or a fixed allow
// ("fixed/...") so that the telemetry's own cost stands out.
func BenchmarkCheckTelemetry(b *testing.B) {
	dev := policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice",
		Roles: []string{"dev"}, Scopes: []string{"mcp:tools"}}
	b.Run("rbac", func(b *testing.B) {
		benchmarkCheckTelemetry(b, asCaller{testEngine(b, []string{"../rego/examples/rbac"}, ""), dev})
	})
	b.Run("fixed", func(b *testing.B) {
		benchmarkCheckTelemetry(b, asCaller{&fixedDecider{d: policy.Decision{Allowed: true}}, dev})
	})
}

func benchmarkCheckTelemetry(b *testing.B, decider Decider) {
	ctx := context.Background()
	req := mcpCheck(toolCall, map[string]string{"traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"})
	tracer := func(b *testing.B) *sdktrace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discardExporter{}))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		return tp
	}
	meter := func(b *testing.B) *sdkmetric.MeterProvider {
		mp, _, err := telemetry.NewMetrics()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		return mp
	}
	for _, bc := range []struct {
		name string
		opts func(b *testing.B) *Options
	}{
		{"off", func(*testing.B) *Options { return &Options{} }},
		{"metrics", func(b *testing.B) *Options { return &Options{MeterProvider: meter(b)} }},
		{"tracing", func(b *testing.B) *Options {
			return &Options{Tracer: tracer(b), Propagator: propagation.TraceContext{}}
		}},
		{"all", func(b *testing.B) *Options {
			audit, _ := telemetry.NewAuditLogger(io.Discard, "json")
			return &Options{MeterProvider: meter(b), Tracer: tracer(b), Propagator: propagation.TraceContext{}, Audit: audit}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(decider, bc.opts(b))
			if resp, _ := s.Check(ctx, req); resp.GetStatus().GetCode() != 0 {
				b.Fatalf("denied: %v", resp)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
