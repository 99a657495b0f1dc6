package observability_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/portcullis-mcp/portcullis/extauthz"
	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/mcpserver"
	"github.com/portcullis-mcp/portcullis/policy"
	"github.com/portcullis-mcp/portcullis/ratelimit"
)

// The scenario runs Portcullis in one process the way serve and mcp wire
// it — ext_authz and the rate limit service on a gRPC server with its stats handler,
// the MCP server behind its HTTP middleware and a stand-in for Envoy that asks Check
// about every request — with every identity provider that talks to the
// network, one meter provider exported as Prometheus text, an in-memory
// span recorder, and the main and audit logs in buffers.

const (
	resource     = "https://mcp.example.com/mcp"
	apiKey       = "pk-live-4f1c9a7e2b"
	opaqueToken  = "opaque-7c2e9d41f0"
	clientSecret = "client-secret-a93b"
	argument     = "argument-value-5e8f"
	traceID      = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID = "00f067aa0ba902b7"
)

const testPolicy = `package mcp.authz

default decision := {"allowed": false, "reason": "not permitted"}

decision := {"allowed": true, "reason": "developers may echo"} if {
	input.mcp.method == "tools/call"
	input.mcp.tool == "echo"
	"dev" in input.identity.roles
}
`

const limits = `domain: mcp
descriptors:
  - key: subject
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: tenant
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
`

// syncBuffer is a bytes.Buffer safe for the loggers' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type scenario struct {
	ctx     context.Context
	metrics http.Handler
	spans   *tracetest.SpanRecorder
	logs    *syncBuffer
	audit   *syncBuffer

	authz   authv3.AuthorizationClient
	rls     rlsv3.RateLimitServiceClient
	redisRL *ratelimit.Service
	mcpURL  string

	jwt     string   // the caller's JWT
	secrets []string // what must never be seen: credentials, the argument, identity tokens

	mu        sync.Mutex
	decisions []string // decision ids of the allowed Checks, as Envoy's metadata has them
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	sc := &scenario{ctx: ctx, logs: &syncBuffer{}, audit: &syncBuffer{}, spans: tracetest.NewSpanRecorder()}
	mp, metricsHandler, err := telemetry.NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	sc.metrics = metricsHandler
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sc.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	// Debug: every line any component can write is searched.
	logger, err := telemetry.NewLogger(sc.logs, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	audit, err := telemetry.NewAuditLogger(sc.audit, "json")
	if err != nil {
		t.Fatal(err)
	}
	run := func(f func(context.Context) error) {
		done := make(chan struct{})
		go func() { defer close(done); _ = f(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	dir := t.TempDir()

	// The identity provider: a JWKS for the JWT and an introspection
	// endpoint for the opaque token.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/introspect" {
			if _, secret, _ := r.BasicAuth(); secret != clientSecret || r.FormValue("token") != opaqueToken {
				_, _ = w.Write([]byte(`{"active":false}`))
				return
			}
			_, _ = w.Write([]byte(`{"active":true,"sub":"carol","client_id":"opaque-cli","roles":["dev"],"scope":"mcp:tools"}`))
			return
		}
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(idp.Close)
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": idp.URL, "aud": resource, "sub": "alice", "azp": "alice-cli", "roles": []string{"dev"}, "scope": "mcp:tools",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "k1"
	if sc.jwt, err = tok.SignedString(key); err != nil {
		t.Fatal(err)
	}
	sc.secrets = []string{sc.jwt, sc.jwt[strings.LastIndexByte(sc.jwt, '.')+1:], apiKey, opaqueToken, clientSecret, argument}

	idLogger := logger.With(slog.String("component", "identity"))
	jwtProvider, err := identity.NewJWT(&identity.JWTOptions{Name: "corp", Issuer: idp.URL, Audiences: []string{resource},
		JWKSURL: idp.URL + "/jwks", Logger: idLogger, MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	run(jwtProvider.Run)
	sum := sha256.Sum256([]byte(apiKey))
	keysFile := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keysFile, []byte("keys:\n  - { sha256: \""+hex.EncodeToString(sum[:])+"\", subject: ci-bot, roles: [viewer] }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := identity.NewAPIKey(&identity.APIKeyOptions{Name: "keys", KeysFile: keysFile, Logger: idLogger})
	if err != nil {
		t.Fatal(err)
	}
	introspection, err := identity.NewIntrospection(&identity.IntrospectionOptions{Name: "opaque", URL: idp.URL + "/introspect",
		ClientID: "portcullis", ClientSecret: clientSecret, Logger: idLogger, MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	run(introspection.Run)
	for !jwtProvider.Ready() {
		if ctx.Err() != nil {
			t.Fatal("the JWKS was never loaded")
		}
		time.Sleep(time.Millisecond)
	}

	// The policy, ext_authz and the rate limit service on one gRPC server.
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	engine, err := policy.New(ctx, &policy.Options{Paths: []string{dir}, Logger: logger.With(slog.String("component", "policy")),
		MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := identity.NewSigner(identity.SignerOptions{Audience: resource})
	if err != nil {
		t.Fatal(err)
	}
	authz := extauthz.New(engine, &extauthz.Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{jwtProvider, keys, introspection},
			Lockout: identity.NewLockout(identity.LockoutOptions{MaxFailures: 5}), Logger: idLogger}),
		Signer:        signer,
		Logger:        logger.With(slog.String("component", "extauthz")),
		Audit:         audit,
		Tracer:        tp,
		Propagator:    prop,
		MeterProvider: mp,
	})
	cfg, err := ratelimit.ParseConfig(map[string][]byte{"mcp.yaml": []byte(limits)})
	if err != nil {
		t.Fatal(err)
	}
	rl := ratelimit.NewService(ratelimit.NewMemoryStore(nil), &ratelimit.ServiceOptions{FailOpen: true, ResponseHeaders: true,
		Logger: logger.With(slog.String("component", "ratelimit")), MeterProvider: mp})
	rl.SetConfig(cfg)
	var gs *grpc.Server
	gs = grpc.NewServer(grpc.StatsHandler(telemetry.NewGRPCServerHandler(&telemetry.GRPCServerOptions{
		TracerProvider: tp, MeterProvider: mp, Propagator: prop,
		Services: func() map[string]grpc.ServiceInfo { return gs.GetServiceInfo() },
	})))
	authv3.RegisterAuthorizationServer(gs, authz)
	rlsv3.RegisterRateLimitServiceServer(gs, rl)
	lis := bufconn.Listen(1 << 20)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	sc.authz, sc.rls = authv3.NewAuthorizationClient(conn), rlsv3.NewRateLimitServiceClient(conn)

	// A second replica's rate limit service on a Redis that is not there:
	// the store fails, the breaker opens, failure_mode allows.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := ratelimit.NewRedisStore(&ratelimit.RedisOptions{Client: rdb, FailureThreshold: 1, OpenFor: time.Minute,
		Logger: logger.With(slog.String("component", "ratelimit")), MeterProvider: mp})
	if err != nil {
		t.Fatal(err)
	}
	run(store.Run)
	sc.redisRL = ratelimit.NewService(store, &ratelimit.ServiceOptions{FailOpen: true, MeterProvider: mp,
		Logger: logger.With(slog.String("component", "ratelimit"))})
	sc.redisRL.SetConfig(cfg)

	// The MCP server, with a bridged upstream that is down, behind its HTTP middleware
	// and the stand-in for Envoy.
	bridge, err := mcpserver.NewBridge(&mcpserver.BridgeOptions{
		Upstreams:  []mcpserver.UpstreamOptions{{Name: "gone", URL: "http://127.0.0.1:1/mcp", Headers: map[string]string{"Authorization": "Bearer " + clientSecret}}},
		Logger:     logger.With(slog.String("component", "bridge")),
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MeterProvider: mp,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mcpserver.New(&mcpserver.Options{
		Decider: engine, IdentityKey: signer.PublicKey(), Audience: resource, RequireIdentity: true,
		Extra: bridge.Attach, KnownTool: bridge.HasTool,
		Logger: logger.With(slog.String("component", "mcp")), Audit: audit, MeterProvider: mp,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(bridge.Run)
	mcpHandler := telemetry.NewHTTPServerHandler(srv.Handler(), &telemetry.HTTPServerOptions{TracerProvider: tp, MeterProvider: mp,
		Propagator: prop})
	front := httptest.NewServer(&frontDoor{sc: sc, next: mcpHandler})
	t.Cleanup(front.Close)
	sc.mcpURL = front.URL + mcpserver.PathMCP
	return sc
}

// frontDoor stands in for Envoy's ext_authz filter: it asks Check about
// every request, and forwards an allowed one with the header mutations
// applied; a denial is answered as Check says.
type frontDoor struct {
	sc   *scenario
	next http.Handler
}

func (f *frontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	headers := map[string]string{}
	for k, v := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(v, ",")
	}
	resp, err := f.sc.authz.Check(r.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.10", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Headers: headers, Body: string(body),
		}},
	}})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		dr := resp.GetDeniedResponse()
		for _, h := range dr.GetHeaders() {
			w.Header().Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		w.WriteHeader(int(dr.GetStatus().GetCode()))
		_, _ = io.WriteString(w, dr.GetBody())
		return
	}
	for _, h := range ok.GetHeaders() {
		r.Header.Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		if h.GetHeader().GetKey() == extauthz.HeaderIdentity {
			f.sc.mu.Lock()
			f.sc.secrets = append(f.sc.secrets, h.GetHeader().GetValue())
			f.sc.mu.Unlock()
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		r.Header.Del(k)
	}
	f.sc.mu.Lock()
	f.sc.decisions = append(f.sc.decisions, resp.GetDynamicMetadata().GetFields()[extauthz.MetaDecisionID].GetStringValue())
	f.sc.mu.Unlock()
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	f.next.ServeHTTP(w, r)
}

// callTool posts a tools/call of echo with the secret argument through
// the front door, with the credential header given and a traceparent, and
// returns the HTTP status.
func (sc *scenario) callTool(t *testing.T, tool, header, value string) int {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"text":"` + argument + `"}}}`
	req, err := http.NewRequestWithContext(sc.ctx, http.MethodPost, sc.mcpURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	req.Header.Set("Traceparent", "00-"+traceID+"-"+parentSpanID+"-01")
	req.Header.Set(header, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && !strings.Contains(string(out), `"result"`) {
		t.Errorf("%s: no result in %s", tool, out)
	}
	return resp.StatusCode
}

// run makes the traffic the tests look at: tool calls allowed with a JWT
// and with an introspected token, one denied for an API key, a caller
// over its rate limit and a tenant over a shadow limit, a rate limit
// answered while Redis is down, and the bridge reconnecting its upstream.
func (sc *scenario) run(t *testing.T) {
	t.Helper()
	for _, c := range []struct {
		tool, header, value string
		status              int
	}{
		{"echo", "Authorization", "Bearer " + sc.jwt, http.StatusOK},
		{"echo", "Authorization", "Bearer " + sc.jwt, http.StatusOK}, // the verified-token cache answers
		{"echo", "Authorization", "Bearer " + opaqueToken, http.StatusOK},
		{"time", "X-Api-Key", apiKey, http.StatusForbidden},
		{"echo", "Authorization", "Bearer not-" + opaqueToken, http.StatusUnauthorized},
	} {
		if got := sc.callTool(t, c.tool, c.header, c.value); got != c.status {
			t.Errorf("%s with %s: status %d, want %d", c.tool, c.header, got, c.status)
		}
	}
	desc := func(k, v string) []*rlcommonv3.RateLimitDescriptor {
		return []*rlcommonv3.RateLimitDescriptor{{Entries: []*rlcommonv3.RateLimitDescriptor_Entry{{Key: k, Value: v}}}}
	}
	var codes []string
	for _, d := range [][]*rlcommonv3.RateLimitDescriptor{desc("subject", "alice"), desc("subject", "alice"), desc("tenant", "acme"), desc("tenant", "acme")} {
		resp, err := sc.rls.ShouldRateLimit(sc.ctx, &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: d})
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.GetOverallCode().String())
	}
	if want := "OK OVER_LIMIT OK OK"; strings.Join(codes, " ") != want {
		t.Errorf("rate limit codes %v, want %s", codes, want)
	}
	for range 2 { // the first fails and opens the breaker; the second fails fast
		if resp, err := sc.redisRL.ShouldRateLimit(sc.ctx, &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: desc("subject", "alice")}); err != nil ||
			resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("failure_mode allow: %v, %v", resp, err)
		}
	}
	for !strings.Contains(sc.scrape(t), "portcullis_mcp_bridge_restarts_total") {
		if sc.ctx.Err() != nil {
			t.Fatal("the bridge never reconnected")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scrape returns the Prometheus text of /metrics.
func (sc *scenario) scrape(t *testing.T) string {
	t.Helper()
	rec := httptest.NewRecorder()
	sc.metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}
