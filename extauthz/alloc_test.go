package extauthz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis-mcp/portcullis/identity"
)

// Allocation ceilings of the hot paths: a regression fails here, in CI,
// without timing anything. The ceilings sit about 20% above what the code
// allocates today (in parentheses), so they catch a new per-request map or
// conversion, not noise: allocation counts are exact.

func TestCheckAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation ceilings")
	}
	ctx := context.Background()

	// A Check with a JWT the provider verified before (its cache answers),
	// the shipped RBAC example deciding from its decision cache, and the
	// identity token for the upstream signed before: the steady state of a
	// caller repeating a call.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := key.PublicKey.ECDH()
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
		"x": base64.RawURLEncoding.EncodeToString(raw.Bytes()[1:33]), "y": base64.RawURLEncoding.EncodeToString(raw.Bytes()[33:])}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	defer idp.Close()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": idp.URL, "aud": "https://mcp.example.com/mcp", "sub": "alice",
		"roles": []string{"dev"}, "scope": "mcp:tools", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "k1"
	token, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	j, err := identity.NewJWT(&identity.JWTOptions{Name: "corp", Issuer: idp.URL, Audiences: []string{"https://mcp.example.com/mcp"}, JWKSURL: idp.URL})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = j.Run(runCtx); close(done) }()
	defer func() { cancel(); <-done }()
	for !j.Ready() {
		time.Sleep(time.Millisecond)
	}
	signer, err := identity.NewSigner(identity.SignerOptions{Audience: "https://mcp.example.com/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(testEngine(t, []string{"../rego/examples/rbac"}, ""), &Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{j}}),
		Signer:        signer,
	})
	req := mcpCheck(toolCall, map[string]string{"authorization": "Bearer " + token})
	for range 3 { // fill the caches
		if resp, _ := s.Check(ctx, req); resp.GetOkResponse() == nil {
			t.Fatalf("denied: %v", resp)
		}
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = s.Check(ctx, req) }); n > 56 {
		t.Errorf("Check with a cached token: %.0f allocations, ceiling 56 (46)", n)
	}
}

func TestExtractMCPAllocs(t *testing.T) {
	req := &mcpRequest{
		HTTPMethod: "POST",
		Headers:    map[string]string{"mcp-method": "tools/call", "mcp-name": "search_issues", "mcp-protocol-version": "2025-06-18"},
		Body:       []byte(typicalToolsCall),
		MaxDepth:   64,
	}
	if n := testing.AllocsPerRun(200, func() { _, _, _ = extractMCP(req) }); n > 38 {
		t.Errorf("extractMCP: %.0f allocations, ceiling 38 (31)", n)
	}
}
