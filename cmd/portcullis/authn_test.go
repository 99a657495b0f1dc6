package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/internal/config"
)

// idp is a fake identity provider: it publishes a JWKS and mints tokens.
type idp struct {
	*httptest.Server
	key *rsa.PrivateKey
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *idp) token(t *testing.T, key *rsa.PrivateKey, claims jwt.MapClaims) string {
	t.Helper()
	base := jwt.MapClaims{"iss": p.URL, "aud": "https://mcp.example.com/mcp", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		base[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, base)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestServeAuthentication is the end-to-end test of the identity stage:
// the same MCP tools/call over real gRPC with no token, a bad token, a
// token lacking a role and a good token, against the shipped RBAC policy.
func TestServeAuthentication(t *testing.T) {
	ctx := testContext(t)
	provider := newIDP(t)
	rbac, err := filepath.Abs("../../rego/examples/rbac")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(`
grpc: { listen: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0" }
authn:
  resource: "https://mcp.example.com/mcp"
  resource_metadata_url: "https://mcp.example.com/.well-known/oauth-protected-resource"
  providers:
    - name: corp
      jwt: { issuer: "`+provider.URL+`", jwks_url: "`+provider.URL+`/jwks" }
policy: { paths: ["`+rbac+`"] }
`), t.TempDir(), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan listeners, 1)
	done := make(chan error, 1)
	go func() { done <- serve(serveCtx, cfg, slog.New(slog.DiscardHandler), ready) }()
	var addrs listeners
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	defer func() { stop(); <-done }()
	conn, err := grpc.NewClient(addrs.grpc.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for {
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING && adminReady(t, addrs) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("never ready")
		case <-time.After(20 * time.Millisecond):
		}
	}
	client := authv3.NewAuthorizationClient(conn)
	check := func(auth string) *authv3.CheckResponse {
		t.Helper()
		h := map[string]string{"content-type": "application/json", "x-portcullis-subject": "spoofed"}
		if auth != "" {
			h["authorization"] = auth
		}
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/mcp", Host: "mcp.example.com", Headers: h,
				Body: `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"fs.read","arguments":{"path":"/docs/a.md"}}}`,
			}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	type denial struct {
		Status    int32
		Challenge string
		ID        any
		Code      int
		Message   string
	}
	denied := func(resp *authv3.CheckResponse) denial {
		t.Helper()
		dr := resp.GetDeniedResponse()
		if dr == nil {
			t.Fatalf("not denied: %v", resp)
		}
		d := denial{Status: int32(dr.GetStatus().GetCode())}
		for _, h := range dr.GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" {
				d.Challenge = h.GetHeader().GetValue()
			}
		}
		var body struct {
			ID    any `json:"id"`
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(dr.GetBody()), &body); err != nil {
			t.Fatal(err)
		}
		d.ID, d.Code, d.Message = body.ID, body.Error.Code, body.Error.Message
		return d
	}
	const rm = `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`

	// No token.
	if got := denied(check("")); got.Status != 401 || got.Challenge != `Bearer `+rm || got.ID != 42.0 {
		t.Errorf("no token: %+v", got)
	}
	// A token signed by another key.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	got := denied(check("Bearer " + provider.token(t, other, jwt.MapClaims{"sub": "mallory", "roles": []string{"admin"}})))
	if got.Status != 401 || !containsAll(got.Challenge, `Bearer error="invalid_token"`, `error_description="`, rm) {
		t.Errorf("bad token: %+v", got)
	}
	// A good token whose roles do not permit the tool.
	got = denied(check("Bearer " + provider.token(t, provider.key, jwt.MapClaims{"sub": "vic", "roles": []string{"viewer"}, "scope": "mcp:tools"})))
	if got.Status != 403 || got.Code != -32003 || !containsAll(got.Message, `tool "fs.read" not permitted for roles [viewer]`) {
		t.Errorf("token lacking a role: %+v", got)
	}
	// A good token.
	good := provider.token(t, provider.key, jwt.MapClaims{"sub": "alice", "roles": []string{"dev"}, "scope": "mcp:tools", "client_id": "cli"})
	resp := check("Bearer " + good)
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("good token denied: %v", resp)
	}
	headers := map[string]string{}
	for _, h := range ok.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	for k, v := range map[string]string{"x-portcullis-subject": "alice", "x-portcullis-roles": "dev", "x-portcullis-scopes": "mcp:tools", "x-portcullis-provider": "corp", "x-portcullis-client-id": "cli"} {
		if headers[k] != v {
			t.Errorf("%s = %q, want %q", k, headers[k], v)
		}
	}
	if !slices.Contains(ok.GetHeadersToRemove(), "authorization") {
		t.Errorf("the token is not stripped: %v", ok.GetHeadersToRemove())
	}
	md := resp.GetDynamicMetadata().AsMap()
	if md["subject"] != "alice" || md["mcp_name"] != "fs.read" || md["mcp_method"] != "tools/call" || md["provider"] != "corp" {
		t.Errorf("dynamic metadata %v", md)
	}

	// The identity token verifies with the key the admin port publishes.
	var jwks struct {
		Keys []struct {
			X string `json:"x"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(adminGet(t, addrs, "/identity/jwks.json"), &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("jwks: %v", err)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[0].X)
	c, err := identity.VerifyIdentityToken(headers["x-portcullis-identity"], ed25519.PublicKey(pub), "https://mcp.example.com/mcp", time.Now())
	if err != nil || c.Subject != "alice" || c.MCPName != "fs.read" {
		t.Errorf("identity token: %+v, %v", c, err)
	}
	// Protected Resource Metadata, at both RFC 9728 locations.
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		var prm identity.ResourceMetadata
		if err := json.Unmarshal(adminGet(t, addrs, path), &prm); err != nil {
			t.Fatal(err)
		}
		if prm.Resource != "https://mcp.example.com/mcp" || !slices.Equal(prm.AuthorizationServers, []string{provider.URL}) {
			t.Errorf("%s: %+v", path, prm)
		}
	}
}

func adminGet(t *testing.T, addrs listeners, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addrs.admin.String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return b
}

func adminReady(t *testing.T, addrs listeners) bool {
	resp, err := http.Get("http://" + addrs.admin.String() + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
