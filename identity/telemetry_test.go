package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/internal/telemetry/telemetrytest"
)

// counts returns the int64 sums of the metric name by their attributes
// rendered "k=v,k=v" (sorted).
func counts(t *testing.T, r *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	return telemetrytest.Points(t, r, name)
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// noSecretInSpans fails when any attribute, event or status of spans holds
// one of secrets.
func noSecretInSpans(t *testing.T, spans []sdktrace.ReadOnlySpan, secrets ...string) {
	t.Helper()
	for _, sp := range spans {
		texts := []string{sp.Name(), sp.Status().Description}
		for _, kv := range sp.Attributes() {
			texts = append(texts, kv.Value.String())
		}
		for _, e := range sp.Events() {
			texts = append(texts, e.Name)
			for _, kv := range e.Attributes {
				texts = append(texts, kv.Value.String())
			}
		}
		for _, text := range texts {
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("span %s holds a secret: %q", sp.Name(), text)
				}
			}
		}
	}
}

func TestJWTTelemetry(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	reader := sdkmetric.NewManualReader()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	opts := jwtTestOptions(t, srv, clock)
	opts.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	opts.TracerProvider = tp
	j := jwtTestStart(t, opts)

	ctx, parent := tp.Tracer("test").Start(jwtTestContext(t), "identity")
	tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil))
	for range 2 {
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
			t.Fatal(err)
		}
	}
	unknown := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa3, "rsa3", clock.claims(nil))
	if _, err := j.Authenticate(ctx, jwtTestBearer(unknown)); err == nil {
		t.Fatal("a token of an unknown key was accepted")
	}
	parent.End()

	want := map[string]int64{"cache=jwt,provider=corp,result=hit": 1, "cache=jwt,provider=corp,result=miss": 2}
	if diff := cmp.Diff(want, counts(t, reader, "portcullis.identity.cache.lookups")); diff != "" {
		t.Errorf("cache lookups (-want +got):\n%s", diff)
	}
	want = map[string]int64{"provider=corp,result=success,trigger=scheduled": 1, "provider=corp,result=success,trigger=unknown_kid": 1}
	if diff := cmp.Diff(want, counts(t, reader, "portcullis.identity.jwks.refreshes")); diff != "" {
		t.Errorf("refreshes (-want +got):\n%s", diff)
	}

	spans := rec.Ended()
	var refreshes []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "portcullis.jwks.refresh" {
			refreshes = append(refreshes, s)
		}
	}
	if len(refreshes) != 2 {
		t.Fatalf("%d refresh spans, want 2", len(refreshes))
	}
	for _, r := range refreshes {
		a := spanAttrs(r)
		if a["portcullis.identity.provider"] != "corp" || a["portcullis.jwks.result"] != "success" || a["portcullis.jwks.keys"] != "4" {
			t.Errorf("refresh attributes %v", a)
		}
		switch a["portcullis.jwks.trigger"] {
		case "scheduled":
			if r.Parent().IsValid() {
				t.Errorf("the scheduled refresh has a parent %v", r.Parent())
			}
		case "unknown_kid":
			if r.Parent().SpanID() != parent.SpanContext().SpanID() {
				t.Errorf("the unknown-kid refresh is not under the request's span")
			}
		default:
			t.Errorf("trigger %q", a["portcullis.jwks.trigger"])
		}
		var gets int
		for _, s := range spans {
			if s.Parent().SpanID() != r.SpanContext().SpanID() {
				continue
			}
			gets++
			a := spanAttrs(s)
			if s.Name() != "GET" || a["url.full"] != srv.URL+"/jwks" || a["http.response.status_code"] != "200" || a["http.request.method"] != "GET" {
				t.Errorf("HTTP span %s %v", s.Name(), a)
			}
		}
		if gets != 1 {
			t.Errorf("%d HTTP spans under a refresh", gets)
		}
	}
	if a := spanAttrs(parentSpan(t, spans, parent.SpanContext().SpanID())); a["portcullis.identity.cache_hit"] != "false" {
		t.Errorf("the last lookup (the unknown key) is a miss: %v", a)
	}
	noSecretInSpans(t, spans, tok, unknown)

	// A cached verification allocates no more with metrics on.
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := j.Authenticate(context.Background(), jwtTestBearer(tok)); err != nil {
			t.Fatal(err)
		}
	})
	if limit := 2.0; allocs > limit && !jwtTestRace() {
		t.Errorf("a cached Authenticate with metrics makes %v allocations, want at most %v", allocs, limit)
	}
}

func parentSpan(t *testing.T, spans []sdktrace.ReadOnlySpan, id trace.SpanID) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.SpanContext().SpanID() == id {
			return s
		}
	}
	t.Fatalf("no span %s", id)
	return nil
}

func TestIntrospectionTelemetry(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	answers := map[string]string{"good": `{"active":true,"sub":"alice"}`, "gone": `{"active":false}`}
	respond := func(w http.ResponseWriter, r *http.Request, tok string) {
		for prefix, body := range answers {
			if strings.HasPrefix(tok, prefix) {
				introspectionJSON(200, body)(w, r, tok)
				return
			}
		}
		http.Error(w, "boom", http.StatusBadGateway)
	}
	i, _, _ := newTestIntrospection(t, respond, &IntrospectionOptions{
		Name:          "opaque",
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	ctx, parent := tp.Tracer("test").Start(credTestContext(t), "identity")
	good, gone, broken := "good-"+introspectionToken, "gone-"+introspectionToken, "broken-"+introspectionToken
	for _, tok := range []string{good, good, gone, broken} {
		_, _ = i.Authenticate(ctx, introspectionRequest(tok))
		i.cache.wait()
	}
	parent.End()

	want := map[string]int64{"cache=introspection,provider=opaque,result=hit": 1, "cache=introspection,provider=opaque,result=miss": 3}
	if diff := cmp.Diff(want, counts(t, reader, "portcullis.identity.cache.lookups")); diff != "" {
		t.Errorf("cache lookups (-want +got):\n%s", diff)
	}
	want = map[string]int64{"provider=opaque,result=active": 1, "provider=opaque,result=inactive": 1, "provider=opaque,result=error": 1}
	if diff := cmp.Diff(want, counts(t, reader, "portcullis.identity.introspection.requests")); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	var timed uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "portcullis.identity.introspection.duration" {
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					timed += dp.Count
				}
			}
		}
	}
	if timed != 3 {
		t.Errorf("%d introspection requests timed, want 3", timed)
	}

	var got []string
	for _, s := range rec.Ended() {
		if s.Name() != "POST" {
			continue
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("POST span not under the identity span")
		}
		a := spanAttrs(s)
		if !strings.HasSuffix(a["url.full"], "/oauth2/introspect") || a["portcullis.identity.provider"] != "opaque" {
			t.Errorf("POST span attributes %v", a)
		}
		got = append(got, a["http.response.status_code"]+" "+a["portcullis.introspection.result"])
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"200 active", "200 inactive", "502 error"}, got); diff != "" {
		t.Errorf("POST spans (-want +got):\n%s", diff)
	}
	noSecretInSpans(t, rec.Ended(), introspectionToken, introspectionClientSecret, i.authHeader)
}

// TestLogValuers: a credential-holding value passed to a logger by mistake
// logs its shape, never the secret.
func TestLogValuers(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	signer, err := NewSigner(SignerOptions{Key: key, Audience: "https://mcp.example.com/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewIntrospection(&IntrospectionOptions{URL: "https://idp.example.com/introspect", ClientID: "portcullis", ClientSecret: introspectionClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	const apiKey, bcryptHash = "pk-live-0123456789", "$2a$10$abcdefghijklmnopqrstuv"
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	logger.Info("values",
		slog.Any("request", Request{SourceAddress: "10.0.0.1", Headers: map[string]string{"authorization": "Bearer " + introspectionToken, "x-api-key": apiKey}}),
		slog.Any("request_ptr", &Request{Headers: map[string]string{"authorization": "Bearer " + introspectionToken}}),
		slog.Any("introspection_options", IntrospectionOptions{ClientID: "portcullis", ClientSecret: introspectionClientSecret}),
		slog.Any("introspection", in),
		slog.Any("signer", signer),
		slog.Any("signer_options", SignerOptions{Key: key}),
		slog.Any("api_key", apiKeyEntry{SHA256: HashAPIKey(apiKey), Subject: "ci"}),
		slog.Any("user", basicUserEntry{Username: "alice", Bcrypt: bcryptHash}),
	)
	out := buf.String()
	for _, secret := range []string{introspectionToken, apiKey, introspectionClientSecret, in.authHeader, HashAPIKey(apiKey), bcryptHash,
		string(key), strings.TrimRight(jwtB64(string(key)), "=")} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds %q:\n%s", secret, out)
		}
	}
	for _, shape := range []string{`"header_names":["authorization","x-api-key"]`, `"client_secret":"REDACTED"`, `"source_address":"10.0.0.1"`, `"username":"alice"`} {
		if !strings.Contains(out, shape) {
			t.Errorf("the log lacks %s:\n%s", shape, out)
		}
	}
}
