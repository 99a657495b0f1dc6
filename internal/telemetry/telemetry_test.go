package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// clearOTELEnv unsets the variables Setup reads, for the test.
func clearOTELEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_PROMETHEUS_HOST", "OTEL_EXPORTER_PROMETHEUS_PORT"} {
		t.Setenv(k, "")
	}
}

func emitSpan(t *testing.T, p *Providers) trace.Span {
	t.Helper()
	_, span := p.Tracer.Tracer("test").Start(context.Background(), "test-span")
	span.End()
	return span
}

func TestSetupDefaultIsNoop(t *testing.T) {
	for _, env := range []map[string]string{nil, {"OTEL_TRACES_EXPORTER": "none"}} {
		clearOTELEnv(t)
		for k, v := range env {
			t.Setenv(k, v)
		}
		var p *Providers
		out := captureStdout(t, func() {
			var err error
			if p, err = Setup(context.Background(), "portcullis"); err != nil {
				t.Fatal(err)
			}
			if span := emitSpan(t, p); span.IsRecording() || span.SpanContext().IsValid() {
				t.Errorf("%v: span recorded without an exporter", env)
			}
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
		if out != "" {
			t.Errorf("%v: wrote %q", env, out)
		}
		if p.Meter == nil || p.MetricsHandler == nil || p.Propagator == nil {
			t.Fatalf("incomplete providers %+v", p)
		}
		if f := strings.Join(p.Propagator.Fields(), ","); !strings.Contains(f, "traceparent") || !strings.Contains(f, "baggage") {
			t.Errorf("propagator fields %s", f)
		}
	}
}

func TestSetupConsoleFlushesOnShutdown(t *testing.T) {
	clearOTELEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	out := captureStdout(t, func() {
		p, err := Setup(context.Background(), "from-config")
		if err != nil {
			t.Fatal(err)
		}
		if span := emitSpan(t, p); !span.SpanContext().IsValid() {
			t.Error("no span context")
		}
		// The batcher holds the span until Shutdown flushes it.
		if err := p.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	if !strings.Contains(out, "test-span") {
		t.Errorf("console exporter wrote %q, want the span", out)
	}
	if !strings.Contains(out, "from-env") || strings.Contains(out, "from-config") {
		t.Errorf("service.name: OTEL_SERVICE_NAME should win: %s", out)
	}
}

func TestSetupServiceNameAndSampler(t *testing.T) {
	clearOTELEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	out := captureStdout(t, func() {
		p, err := Setup(context.Background(), "from-config")
		if err != nil {
			t.Fatal(err)
		}
		if span := emitSpan(t, p); span.SpanContext().IsSampled() {
			t.Error("sampled with always_off")
		}
		_ = p.Shutdown(context.Background())
	})
	if out != "" {
		t.Errorf("wrote %q with always_off", out)
	}
	clearOTELEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	out = captureStdout(t, func() {
		p, err := Setup(context.Background(), "from-config")
		if err != nil {
			t.Fatal(err)
		}
		emitSpan(t, p)
		_ = p.Shutdown(context.Background())
	})
	if !strings.Contains(out, "from-config") {
		t.Errorf("service.name from the configuration missing: %s", out)
	}
}

func TestSetupMetricsHandler(t *testing.T) {
	clearOTELEnv(t)
	p, err := Setup(context.Background(), "portcullis")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	c, _ := p.Meter.Meter("test").Int64Counter("test.counter")
	c.Add(context.Background(), 1)
	rec := httptest.NewRecorder()
	p.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "test_counter") {
		t.Errorf("metrics: %s", rec.Body)
	}
}

func TestWithTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(WithTraceIDs(slog.NewJSONHandler(&buf, nil))).With(slog.String("component", "x"))
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	logger.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "with span")
	logger.InfoContext(context.Background(), "without span")
	logger.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if m[TraceIDKey] != "4bf92f3577b34da6a3ce929d0e0e4736" || m[SpanIDKey] != "00f067aa0ba902b7" || m["component"] != "x" {
		t.Errorf("line %v", m)
	}
	for _, l := range lines[1:] {
		if strings.Contains(l, TraceIDKey) {
			t.Errorf("trace id without a span: %s", l)
		}
	}
	if h := WithTraceIDs(WithTraceIDs(slog.DiscardHandler)); h.(traceIDHandler).Handler != slog.DiscardHandler {
		t.Error("wrapped twice")
	}
}

func TestNewLoggerCarriesTraceIDs(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		logger, err := NewLogger(&buf, "info", format)
		if err != nil {
			t.Fatal(err)
		}
		logger.InfoContext(ctx, "hello")
		if !strings.Contains(buf.String(), "01000000000000000000000000000000") || !strings.Contains(buf.String(), "0200000000000000") {
			t.Errorf("%s: %s", format, buf.String())
		}
	}
}
