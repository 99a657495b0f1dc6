package telemetry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// TestSetupMetricExporter: OTEL_METRICS_EXPORTER adds a periodic exporter
// that Shutdown flushes; unset, none and prometheus add none (the
// Prometheus text is served by the command).
func TestSetupMetricExporter(t *testing.T) {
	for _, tc := range []struct {
		env      string
		exported bool
	}{{"", false}, {"none", false}, {"prometheus", false}, {"console", true}} {
		clearOTELEnv(t)
		t.Setenv("OTEL_METRICS_EXPORTER", tc.env)
		t.Setenv("OTEL_SERVICE_NAME", "metrics-test")
		out := captureStdout(t, func() {
			p, err := Setup(context.Background(), "portcullis")
			if err != nil {
				t.Fatal(err)
			}
			c, _ := p.Meter.Meter("test").Int64Counter("portcullis.test.flushed")
			c.Add(context.Background(), 1)
			// The period is a minute: only Shutdown's flush can export it.
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
		if got := strings.Contains(out, "portcullis.test.flushed"); got != tc.exported {
			t.Errorf("OTEL_METRICS_EXPORTER=%q: exported %v, want %v: %q", tc.env, got, tc.exported, out)
		}
		if tc.exported && !strings.Contains(out, "metrics-test") {
			t.Errorf("no service.name in the exported resource: %s", out)
		}
	}
	clearOTELEnv(t)
	t.Setenv("OTEL_METRICS_EXPORTER", "carrier-pigeon")
	if _, err := Setup(context.Background(), "portcullis"); err == nil {
		t.Error("an unknown metrics exporter was accepted")
	}
}

func TestPrometheusAddr(t *testing.T) {
	clearOTELEnv(t)
	if addr, ok := PrometheusAddr(); ok {
		t.Errorf("PrometheusAddr without OTEL_METRICS_EXPORTER: %s", addr)
	}
	t.Setenv("OTEL_METRICS_EXPORTER", "prometheus")
	if addr, ok := PrometheusAddr(); !ok || addr != "localhost:9464" {
		t.Errorf("default: %s %v", addr, ok)
	}
	t.Setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "0.0.0.0")
	t.Setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "19464")
	if addr, _ := PrometheusAddr(); addr != "0.0.0.0:19464" {
		t.Errorf("configured: %s", addr)
	}
}

// TestNewAuditLogger: records at info whatever the log level, marked
// log=audit, with no trace ids of the handler's (they are fields).
func TestNewAuditLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewAuditLogger(&buf, "json")
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}})
	l.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "decision", "outcome", "allowed")
	l.Debug("not audited")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if m[AuditKey] != AuditValue || m["outcome"] != "allowed" || m[TraceIDKey] != nil {
		t.Errorf("record %v", m)
	}
	if _, err := NewAuditLogger(&buf, "xml"); err == nil {
		t.Error("format xml accepted")
	}
	buf.Reset()
	l, _ = NewAuditLogger(&buf, "text")
	l.Info("tool call")
	if !strings.Contains(buf.String(), "log=audit") {
		t.Errorf("text record %q", buf.String())
	}
}

func TestArgumentsDigest(t *testing.T) {
	sum := func(s string) string {
		d := sha256.Sum256([]byte(s))
		return hex.EncodeToString(d[:])
	}
	decode := func(s string) any {
		var v any
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name string
		args any
		want string
	}{
		{"absent", nil, sum("")},
		{"empty", map[string]any{}, sum("{}")},
		{"keys sorted, no space", decode(`{ "b": 2, "a": [1, "x"] }`), sum(`{"a":[1,"x"],"b":2}`)},
		{"numbers as written", decode(`{"n": 1.50, "big": 12345678901234567890}`), sum(`{"big":12345678901234567890,"n":1.50}`)},
		{"no HTML escaping", decode(`{"q": "a<b&c"}`), sum(`{"q":"a<b&c"}`)},
		{"escapes decoded", decode(`{"q": "\u0041\n"}`), sum(`{"q":"A\n"}`)},
	} {
		if got := ArgumentsDigest(tc.args); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
