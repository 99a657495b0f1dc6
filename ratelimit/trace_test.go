package ratelimit_test

import (
	"context"
	"strings"
	"testing"

	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/portcullis-mcp/portcullis/ratelimit"
)

// TestShouldRateLimitSpan: under a recording span (otelgrpc's), each call
// gets a portcullis.ratelimit child span with the domain, the number of
// descriptors, the backend and the overall code, never descriptor values.
func TestShouldRateLimitSpan(t *testing.T) {
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(serviceConfig)})
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	svc := ratelimit.NewService(ratelimit.NewMemoryStore(nil), nil)
	svc.SetConfig(cfg)
	req := &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=secret-subject", "tool=search")}}

	// No span in the context: nothing is traced.
	other := &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*rlcommonv3.RateLimitDescriptor{desc("subject=bob")}}
	if _, err := svc.ShouldRateLimit(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "grpc")
	for range 2 {
		if _, err := svc.ShouldRateLimit(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	parent.End()
	var got []map[string]string
	for _, s := range rec.Ended() {
		if s.Name() != "portcullis.ratelimit" {
			continue
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("parent %s", s.Parent().SpanID())
		}
		m := map[string]string{}
		for _, kv := range s.Attributes() {
			m[string(kv.Key)] = kv.Value.String()
			if strings.Contains(kv.Value.String(), "secret-subject") || strings.Contains(kv.Value.String(), "search") {
				t.Errorf("descriptor value in %s", kv.Key)
			}
		}
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("%d spans, want 2", len(got))
	}
	want := map[string]string{"portcullis.ratelimit.domain": "mcp", "portcullis.ratelimit.descriptors": "1",
		"portcullis.ratelimit.backend": "memory", "portcullis.ratelimit.overall_code": "OK"}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %q, want %q", k, got[0][k], v)
		}
	}
	if got[1]["portcullis.ratelimit.overall_code"] != "OVER_LIMIT" {
		t.Errorf("second call: %v", got[1])
	}

	// An explicit TracerProvider traces without a parent span.
	rec2 := tracetest.NewSpanRecorder()
	svc2 := ratelimit.NewService(ratelimit.NewMemoryStore(nil), &ratelimit.ServiceOptions{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec2))})
	svc2.SetConfig(cfg)
	if _, err := svc2.ShouldRateLimit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n := len(rec2.Ended()); n != 1 {
		t.Errorf("%d spans with an explicit provider", n)
	}
}
