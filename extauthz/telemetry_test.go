package extauthz

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/internal/telemetry/telemetrytest"
	"github.com/portcullis-mcp/portcullis/policy"
)

// metricPoints returns the values of the metric name by attributes.
func metricPoints(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	return telemetrytest.Points(t, r, name)
}

// TestCheckMetrics: every answer is counted once with a bounded reason
// code (never the policy's text), the provider and the MCP method, and
// timed by result.
func TestCheckMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	s := New(testEngine(t, []string{"testdata/policy"}, ""), &Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{tokenProvider{}}}),
		MeterProvider: mp,
	})
	good := map[string]string{"authorization": "Bearer good"}
	odd := `{"jsonrpc":"2.0","id":1,"method":"x-` + secretArg + `","params":{}}`
	for _, req := range []*authv3.CheckRequest{
		mcpCheck(toolCall, good), // allowed
		mcpCheck(toolCall, good),
		mcpCheck(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell.exec"}}`, good), // the policy says no
		mcpCheck(odd, good),     // no rule: denied, and the method is the client's
		mcpCheck(toolCall, nil), // no credential
		mcpCheck(toolCall, map[string]string{"authorization": "Bearer bad"}), // refused by the provider
		mcpCheck(toolCall, map[string]string{"authorization": "Bearer down"}),
		mcpCheck(`{"jsonrpc":`, good), // not JSON
		{},                            // no HTTP attributes
	} {
		if _, err := s.Check(testContext(t), req); err != nil {
			t.Fatal(err)
		}
	}
	// A policy that fails is an error, never an allow.
	failing := New(&fixedDecider{err: errors.New("boom")}, &Options{MeterProvider: mp})
	_, _ = failing.Check(testContext(t), mcpCheck(toolCall, nil))
	dry := New(&fixedDecider{d: policy.Decision{Allowed: true, DryRun: true, Reason: "would deny"}}, &Options{MeterProvider: mp})
	_, _ = dry.Check(testContext(t), mcpCheck(toolCall, nil))

	want := map[string]int64{
		"mcp_method=tools/call,provider=test,reason=policy_allowed,result=allowed":    2,
		"mcp_method=tools/call,provider=test,reason=policy_denied,result=denied":      1,
		"mcp_method=_OTHER,provider=test,reason=policy_denied,result=denied":          1,
		"mcp_method=tools/call,provider=,reason=no_credential,result=denied":          1,
		"mcp_method=tools/call,provider=test,reason=invalid_credential,result=denied": 1,
		"mcp_method=tools/call,provider=test,reason=authn_unavailable,result=error":   1,
		"mcp_method=,provider=,reason=parse_error,result=denied":                      1,
		"mcp_method=,provider=,reason=no_http_attributes,result=denied":               1,
		"mcp_method=tools/call,provider=,reason=policy_error,result=error":            1,
		"mcp_method=tools/call,provider=,reason=dry_run,result=allowed":               1,
	}
	if diff := cmp.Diff(want, metricPoints(t, reader, "portcullis.extauthz.decisions")); diff != "" {
		t.Errorf("decisions (-want +got):\n%s", diff)
	}
	wantTimed := map[string]int64{"result=allowed": 3, "result=denied": 6, "result=error": 2}
	if diff := cmp.Diff(wantTimed, metricPoints(t, reader, "portcullis.extauthz.check.duration")); diff != "" {
		t.Errorf("check duration (-want +got):\n%s", diff)
	}
}

// TestCheckAudit: one record per Check, refusals included, with the
// caller, the call and the SHA-256 of its arguments, never a credential or
// an argument value; the per-decision log line moves to debug.
func TestCheckAudit(t *testing.T) {
	var audit, logs bytes.Buffer
	auditLogger, err := telemetry.NewAuditLogger(&audit, "json")
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := New(testEngine(t, []string{"testdata/policy"}, ""), &Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{secretTokenProvider{}}}),
		Logger:        slog.New(telemetry.WithTraceIDs(slog.NewJSONHandler(&logs, nil))),
		Audit:         auditLogger,
		Tracer:        tp,
		Propagator:    propagation.TraceContext{},
	})
	allow := mcpCheck(secretToolCall, map[string]string{"authorization": "Bearer " + secretToken, "traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"})
	allow.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7"}}}}
	for _, req := range []*authv3.CheckRequest{
		allow,
		mcpCheck(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell.exec","arguments":{"cmd":"`+secretArg+`"}}}`,
			map[string]string{"authorization": "Bearer " + secretToken}),
		mcpCheck(secretToolCall, map[string]string{"authorization": "Bearer wrong-" + secretToken}),
		mcpCheck(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"authorization": "Bearer " + secretToken}),
	} {
		if _, err := s.Check(testContext(t), req); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(logs.String(), `"msg":"decision"`) {
		t.Errorf("decision lines at info with an audit stream:\n%s", logs.String())
	}
	for _, secret := range []string{secretToken, secretArg} {
		if strings.Contains(audit.String(), secret) {
			t.Errorf("the audit stream holds %q:\n%s", secret, audit.String())
		}
	}
	var got []map[string]any
	dec := json.NewDecoder(&audit)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"time", "latency_us", "decision_id"} {
			if _, ok := m[k]; !ok {
				t.Errorf("record without %s: %v", k, m)
			}
			delete(m, k)
		}
		got = append(got, m)
	}
	args := map[string]any{"path": "/docs/a.md", "note": secretArg}
	want := []map[string]any{
		{"level": "INFO", "msg": "decision", "log": "audit", "outcome": "allowed", "reason": "policy_allowed", "status": 200.0,
			"trace_id": userTraceID, "source_address": "203.0.113.7", "subject": "alice", "client_id": "", "provider": "corp", "kind": "jwt",
			"mcp_method": "tools/call", "mcp_name": "fs.read", "args_sha256": telemetry.ArgumentsDigest(args)},
		{"level": "INFO", "msg": "decision", "log": "audit", "outcome": "denied", "reason": "policy_denied", "policy_reason": "not permitted",
			"status": 403.0, "source_address": "", "subject": "alice", "client_id": "", "provider": "corp", "kind": "jwt",
			"mcp_method": "tools/call", "mcp_name": "shell.exec", "args_sha256": telemetry.ArgumentsDigest(map[string]any{"cmd": secretArg})},
		{"level": "INFO", "msg": "decision", "log": "audit", "outcome": "denied", "reason": "invalid_credential", "status": 401.0,
			"source_address": "", "subject": "", "client_id": "", "provider": "corp", "kind": "",
			"mcp_method": "tools/call", "mcp_name": "fs.read", "args_sha256": telemetry.ArgumentsDigest(args)},
		{"level": "INFO", "msg": "decision", "log": "audit", "outcome": "allowed", "reason": "policy_allowed", "policy_reason": "lifecycle",
			"status": 200.0, "source_address": "", "subject": "alice", "client_id": "", "provider": "corp", "kind": "jwt",
			"mcp_method": "tools/list", "mcp_name": ""},
	}
	// Traces without a traceparent are new roots: their ids are random.
	for i, m := range got {
		if i > 0 {
			if id, _ := m["trace_id"].(string); len(id) != 32 {
				t.Errorf("record %d: trace_id %q", i, id)
			}
			delete(m, "trace_id")
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}
}

// TestCheckAuditDigestMatchesArguments: the digest is of the arguments,
// not of how the client wrote them.
func TestCheckAuditDigestMatchesArguments(t *testing.T) {
	var audit bytes.Buffer
	auditLogger, _ := telemetry.NewAuditLogger(&audit, "json")
	s := New(testEngine(t, []string{"testdata/policy"}, ""), &Options{Audit: auditLogger})
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fs.read","arguments":{"b":1.50,"a":"x<y"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"arguments":{"a":"x\u003cy", "b":1.50},"name":"fs.read"}}`,
	} {
		_, _ = s.Check(testContext(t), mcpCheck(body, nil))
	}
	var digests []string
	for l := range strings.Lines(audit.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, m["args_sha256"].(string))
	}
	var args any
	d := json.NewDecoder(strings.NewReader(`{"a":"x<y","b":1.50}`))
	d.UseNumber()
	_ = d.Decode(&args)
	if want := telemetry.ArgumentsDigest(args); len(digests) != 2 || digests[0] != want || digests[1] != want {
		t.Errorf("digests %q, want both %s", digests, want)
	}
}

// TestCheckSpanRecordSubject: enduser.id only when configured.
func TestCheckSpanRecordSubject(t *testing.T) {
	for _, record := range []bool{false, true} {
		s, rec, _ := tracedServer(t)
		s.opts.RecordSubject = record
		checkWith(t, s, nil)
		id, ok := attrMap(spanNamed(t, rec.Ended(), "portcullis.Check"))["enduser.id"]
		if ok != record || record && id != "alice" {
			t.Errorf("record_subject %v: enduser.id %q (present %v)", record, id, ok)
		}
	}
}

// TestCheckSpanTree: with an introspection provider, one Check is the
// tree portcullis.Check → portcullis.identity → POST (the introspection
// call) and portcullis.Check → portcullis.policy.eval, in the trace of the
// checked request's traceparent, and no span holds the token or the
// client secret.
func TestCheckSpanTree(t *testing.T) {
	const token, clientSecret = "opaque-token-0d5c9", "client-secret-8f1e"
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":true,"sub":"alice"}`))
	}))
	defer idp.Close()
	in, err := identity.NewIntrospection(&identity.IntrospectionOptions{Name: "opaque", URL: idp.URL + "/introspect", ClientID: "portcullis", ClientSecret: clientSecret})
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	s := New(testEngine(t, []string{"testdata/policy"}, ""), &Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{in}}),
		Tracer:        tp,
	})
	resp, err := s.Check(testContext(t), mcpCheck(toolCall, map[string]string{"authorization": "Bearer " + token,
		"traceparent": "00-" + userTraceID + "-" + userSpanID + "-01"}))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("%v, %v", resp.GetStatus(), err)
	}
	spans := rec.Ended()
	parentOf := map[string]string{}
	names := map[string]string{}
	for _, sp := range spans {
		names[sp.SpanContext().SpanID().String()] = sp.Name()
		if got := sp.SpanContext().TraceID().String(); got != userTraceID {
			t.Errorf("%s in trace %s, want %s", sp.Name(), got, userTraceID)
		}
	}
	for _, sp := range spans {
		p := names[sp.Parent().SpanID().String()]
		if p == "" {
			p = "remote " + sp.Parent().SpanID().String()
		}
		parentOf[sp.Name()] = p
	}
	want := map[string]string{
		"portcullis.Check":       "remote " + userSpanID,
		"portcullis.identity":    "portcullis.Check",
		"POST":                   "portcullis.identity",
		"portcullis.policy.eval": "portcullis.Check",
	}
	if diff := cmp.Diff(want, parentOf); diff != "" {
		t.Errorf("span tree, child → parent (-want +got):\n%s", diff)
	}
	if a := attrMap(spanNamed(t, spans, "portcullis.identity")); a["portcullis.identity.provider"] != "opaque" || a["portcullis.identity.cache_hit"] != "false" {
		t.Errorf("identity span %v", a)
	}
	for _, sp := range spans {
		for _, kv := range sp.Attributes() {
			if v := kv.Value.String(); strings.Contains(v, token) || strings.Contains(v, clientSecret) {
				t.Errorf("span %s attribute %s holds a secret", sp.Name(), kv.Key)
			}
		}
	}
}
