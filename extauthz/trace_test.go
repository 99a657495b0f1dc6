package extauthz

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"log/slog"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/policy"
)

const (
	secretToken = "secret-token-value"
	secretArg   = "secret-arg"
	// The trace context of the user's request, as Envoy forwards it.
	userTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	userSpanID  = "00f067aa0ba902b7"
)

// secretTokenProvider accepts the bearer token secretToken.
type secretTokenProvider struct{}

func (secretTokenProvider) Name() string { return "corp" }

func (secretTokenProvider) Authenticate(_ context.Context, r *identity.Request) (*identity.Result, error) {
	tok, err := identity.BearerToken("corp", r.Headers)
	if err != nil {
		return nil, err
	}
	if tok != secretToken {
		return nil, &identity.Error{Kind: identity.Invalid, Provider: "corp", Description: "unknown token"}
	}
	return &identity.Result{Identity: policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice"},
		CredentialHeader: "authorization"}, nil
}

// tracedServer returns a Server tracing into an in-memory recorder, with
// an authenticator and the small test policy, and a logger writing JSON
// through telemetry.WithTraceIDs into the returned buffer.
func tracedServer(t *testing.T) (*Server, *tracetest.SpanRecorder, *bytes.Buffer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var logs bytes.Buffer
	s := New(testEngine(t, []string{"testdata/policy"}, ""), &Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{secretTokenProvider{}}}),
		Tracer:        tp,
		Propagator:    propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Logger:        slog.New(telemetry.WithTraceIDs(slog.NewJSONHandler(&logs, nil))),
	})
	return s, rec, &logs
}

const secretToolCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs.read","arguments":{"path":"/docs/a.md","note":"` + secretArg + `"}}}`

func checkWith(t *testing.T, s *Server, headers map[string]string) {
	t.Helper()
	h := map[string]string{"authorization": "Bearer " + secretToken}
	for k, v := range headers {
		h[k] = v
	}
	resp, err := s.Check(context.Background(), mcpCheck(secretToolCall, h))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() == nil {
		t.Fatalf("denied: %v", resp.GetStatus())
	}
}

func spanNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(spans))
	return nil
}

func attrMap(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func TestCheckSpanJoinsTraceparent(t *testing.T) {
	s, rec, _ := tracedServer(t)
	checkWith(t, s, map[string]string{"traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"})
	span := spanNamed(t, rec.Ended(), "portcullis.Check")
	if got := span.Parent().TraceID().String(); got != userTraceID {
		t.Errorf("parent trace id %s, want %s", got, userTraceID)
	}
	if got := span.SpanContext().TraceID().String(); got != userTraceID {
		t.Errorf("trace id %s, want %s", got, userTraceID)
	}
	if got := span.Parent().SpanID().String(); got != userSpanID || !span.Parent().IsRemote() {
		t.Errorf("parent span id %s (remote %v), want remote %s", got, span.Parent().IsRemote(), userSpanID)
	}
	a := attrMap(span)
	want := map[string]string{
		"portcullis.decision": "allow", "mcp.method.name": "tools/call", "mcp.tool.name": "fs.read",
		"http.request.method": "POST", "url.path": "/mcp",
	}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("%s = %q, want %q", k, a[k], v)
		}
	}
	for _, k := range []string{"portcullis.reason", "portcullis.decision_id"} {
		if _, ok := a[k]; !ok {
			t.Errorf("no attribute %s", k)
		}
	}
	if len(a["portcullis.decision_id"]) != 36 {
		t.Errorf("decision id %q", a["portcullis.decision_id"])
	}
}

func TestCheckSpanDenyAttributes(t *testing.T) {
	s, rec, _ := tracedServer(t)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell.exec","arguments":{"cmd":"` + secretArg + `"}}}`
	resp, _ := s.Check(context.Background(), mcpCheck(body, map[string]string{"authorization": "Bearer " + secretToken}))
	if resp.GetOkResponse() != nil {
		t.Fatal("allowed")
	}
	a := attrMap(spanNamed(t, rec.Ended(), "portcullis.Check"))
	if a["portcullis.decision"] != "deny" || a["portcullis.reason"] != "not permitted" || a["mcp.tool.name"] != "shell.exec" {
		t.Errorf("attributes %v", a)
	}
	// A refusal before the policy (no credential) is traced too.
	rec2 := tracetest.NewSpanRecorder()
	s.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec2)).Tracer(tracerName)
	_, _ = s.Check(context.Background(), mcpCheck(toolCall, nil))
	a = attrMap(spanNamed(t, rec2.Ended(), "portcullis.Check"))
	if a["portcullis.decision"] != "deny" || a["portcullis.reason"] != ReasonNoCredential {
		t.Errorf("attributes %v", a)
	}
}

func TestCheckSpanJoinsB3(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		traceID string
		sampled bool
	}{
		{"single", map[string]string{"b3": userTraceID + "-" + userSpanID + "-1"}, userTraceID, true},
		{"single-64bit-with-parent", map[string]string{"b3": "a3ce929d0e0e4736-" + userSpanID + "-1-05e3ac9a4f6e3b90"}, "0000000000000000a3ce929d0e0e4736", true},
		{"multi", map[string]string{"x-b3-traceid": userTraceID, "x-b3-spanid": userSpanID, "x-b3-sampled": "1"}, userTraceID, true},
		{"multi-unsampled", map[string]string{"x-b3-traceid": userTraceID, "x-b3-spanid": userSpanID, "x-b3-sampled": "0"}, userTraceID, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, rec, _ := tracedServer(t)
			checkWith(t, s, tc.headers)
			if !tc.sampled { // the default sampler is parent based: nothing recorded
				if n := len(rec.Ended()); n != 0 {
					t.Fatalf("%d spans recorded under an unsampled parent", n)
				}
				return
			}
			span := spanNamed(t, rec.Ended(), "portcullis.Check")
			if got := span.Parent().TraceID().String(); got != tc.traceID {
				t.Errorf("parent trace id %s, want %s", got, tc.traceID)
			}
			if got := span.Parent().SpanID().String(); got != userSpanID {
				t.Errorf("parent span id %s, want %s", got, userSpanID)
			}
		})
	}
}

func TestExtractB3Invalid(t *testing.T) {
	for _, h := range []map[string]string{
		{"b3": "0"},
		{"b3": "d"},
		{"b3": "xyz-" + userSpanID + "-1"},
		{"b3": userTraceID + "-" + userSpanID + "-maybe"},
		{"x-b3-traceid": userTraceID},
		{"x-b3-traceid": "00000000000000000000000000000000", "x-b3-spanid": userSpanID},
	} {
		if sc, ok := extractB3(propagation.MapCarrier(h)); ok {
			t.Errorf("%v: extracted %v", h, sc)
		}
	}
}

func TestCheckSpanNewRootWithoutHeaders(t *testing.T) {
	s, rec, _ := tracedServer(t)
	checkWith(t, s, nil)
	span := spanNamed(t, rec.Ended(), "portcullis.Check")
	if span.Parent().IsValid() {
		t.Errorf("parent %v, want a root span", span.Parent())
	}
	if !span.SpanContext().TraceID().IsValid() {
		t.Error("no trace id")
	}
}

// TestCheckSpanUnderGRPCSpan: when the gRPC call carries no trace context
// but the request does, the Check span joins the request's trace; a span
// already in the context (the stats handler's) is linked.
func TestCheckSpanUnderGRPCSpan(t *testing.T) {
	s, rec, _ := tracedServer(t)
	ctx, grpcSpan := s.opts.Tracer.Tracer("test").Start(context.Background(), "grpc")
	h := map[string]string{"authorization": "Bearer " + secretToken, "traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"}
	if _, err := s.Check(ctx, mcpCheck(secretToolCall, h)); err != nil {
		t.Fatal(err)
	}
	grpcSpan.End()
	span := spanNamed(t, rec.Ended(), "portcullis.Check")
	if span.Parent().TraceID().String() != userTraceID {
		t.Errorf("trace %s", span.Parent().TraceID())
	}
	if l := span.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != grpcSpan.SpanContext().SpanID() {
		t.Errorf("links %v", l)
	}
	// Without a request trace context, the span is the gRPC span's child.
	rec2 := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec2))
	s.tracer = tp.Tracer(tracerName)
	ctx, grpcSpan = tp.Tracer("test").Start(context.Background(), "grpc")
	checkWith(t, s, nil)
	if _, err := s.Check(ctx, mcpCheck(secretToolCall, map[string]string{"authorization": "Bearer " + secretToken})); err != nil {
		t.Fatal(err)
	}
	grpcSpan.End()
	var found bool
	for _, sp := range rec2.Ended() {
		if sp.Name() == "portcullis.Check" && sp.Parent().SpanID() == grpcSpan.SpanContext().SpanID() {
			found = true
		}
	}
	if !found {
		t.Error("no Check span under the gRPC span")
	}
}

func TestCheckSpanNoSecrets(t *testing.T) {
	s, rec, logs := tracedServer(t)
	checkWith(t, s, map[string]string{"traceparent": "00-" + userTraceID + "-" + userSpanID + "-01", "x-api-key": secretToken})
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell.exec","arguments":{"cmd":"` + secretArg + `"}}}`
	_, _ = s.Check(context.Background(), mcpCheck(body, map[string]string{"authorization": "Bearer " + secretToken}))
	_, _ = s.Check(context.Background(), mcpCheck(body, map[string]string{"authorization": "Bearer wrong-" + secretToken}))
	spans := rec.Ended()
	if len(spans) == 0 {
		t.Fatal("no spans")
	}
	for _, sp := range spans {
		var texts []string
		for _, kv := range sp.Attributes() {
			texts = append(texts, kv.Value.String())
		}
		for _, e := range sp.Events() {
			texts = append(texts, e.Name)
			for _, kv := range e.Attributes {
				texts = append(texts, kv.Value.String())
			}
		}
		texts = append(texts, sp.Status().Description)
		for _, v := range texts {
			if strings.Contains(v, secretToken) || strings.Contains(v, secretArg) {
				t.Errorf("span %s carries a secret: %q", sp.Name(), v)
			}
		}
	}
	if strings.Contains(logs.String(), secretToken) || strings.Contains(logs.String(), secretArg) {
		t.Errorf("a log line carries a secret:\n%s", logs)
	}
}

func TestCheckChildSpans(t *testing.T) {
	s, rec, _ := tracedServer(t)
	checkWith(t, s, map[string]string{"traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"})
	spans := rec.Ended()
	check := spanNamed(t, spans, "portcullis.Check")
	for _, name := range []string{"portcullis.identity", "portcullis.policy.eval"} {
		child := spanNamed(t, spans, name)
		if child.Parent().SpanID() != check.SpanContext().SpanID() {
			t.Errorf("%s parent %s, want the Check span %s", name, child.Parent().SpanID(), check.SpanContext().SpanID())
		}
	}
	if a := attrMap(spanNamed(t, spans, "portcullis.identity")); a["portcullis.identity.provider"] != "corp" || a["portcullis.identity.result"] != "ok" {
		t.Errorf("identity attributes %v", a)
	}
	if a := attrMap(spanNamed(t, spans, "portcullis.policy.eval")); a["portcullis.policy.decision_path"] != "mcp/authz/decision" || a["portcullis.policy.result"] != "allow" {
		t.Errorf("policy attributes %v", a)
	}
}

func TestCheckLogCarriesTraceIDs(t *testing.T) {
	s, rec, logs := tracedServer(t)
	checkWith(t, s, map[string]string{"traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"})
	check := spanNamed(t, rec.Ended(), "portcullis.Check")
	var line map[string]any
	for l := range strings.Lines(logs.String()) {
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatal(err)
		}
		if line["msg"] == "decision" {
			break
		}
	}
	if line["msg"] != "decision" {
		t.Fatalf("no decision line in %s", logs)
	}
	if line["trace_id"] != userTraceID || line["span_id"] != check.SpanContext().SpanID().String() {
		t.Errorf("trace_id %v span_id %v, want %s %s", line["trace_id"], line["span_id"], userTraceID, check.SpanContext().SpanID())
	}
}

// TestCheckUntraced: without a Tracer, Check starts no span and the context
// it logs with is the caller's.
func TestCheckUntraced(t *testing.T) {
	var logs bytes.Buffer
	s := New(testEngine(t, []string{"testdata/policy"}, ""), &Options{
		Logger: slog.New(telemetry.WithTraceIDs(slog.NewJSONHandler(&logs, nil))),
	})
	if _, err := s.Check(context.Background(), mcpCheck(toolCall, map[string]string{"traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"})); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "trace_id") {
		t.Errorf("trace ids without a tracer: %s", logs.String())
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: [16]byte{1}, SpanID: [8]byte{2}})
	logs.Reset()
	_, _ = s.Check(trace.ContextWithSpanContext(context.Background(), sc), mcpCheck(toolCall, nil))
	if !strings.Contains(logs.String(), `"trace_id":"01000000000000000000000000000000"`) {
		t.Errorf("no trace id of the caller's span: %s", logs.String())
	}
}
