package extauthz

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis-mcp/portcullis/identity"
)

// BenchmarkCheckJWT measures one Check with an RS256 bearer token against
// the shipped RBAC policy: "cached" repeats one token (a hash and a cache
// lookup), "cached-1000-subjects" cycles through the tokens of 1000
// subjects as bench's authz-jwt does, each verified once beforehand (the
// same work, on data no longer in the CPU's caches), and "uncached"
// verifies the signature every time.
func BenchmarkCheckJWT(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	defer idp.Close()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": idp.URL, "aud": "https://mcp.example.com/mcp", "sub": "alice", "roles": []string{"dev"}, "scope": "mcp:tools",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = "k1"
	token, err := tok.SignedString(key)
	if err != nil {
		b.Fatal(err)
	}
	// As authz-jwt sends them: 1000 subjects, each with its own token.
	const subjects = 1000
	many := make([]*authv3.CheckRequest, subjects)
	for i := range many {
		t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": idp.URL, "aud": "https://mcp.example.com/mcp", "sub": fmt.Sprintf("user-%d", i), "roles": []string{"dev"}, "scope": "mcp:tools",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
		})
		t.Header["kid"] = "k1"
		s, err := t.SignedString(key)
		if err != nil {
			b.Fatal(err)
		}
		many[i] = mcpCheck(toolCall, map[string]string{"authorization": "Bearer " + s})
	}
	engine := testEngine(b, []string{"../rego/examples/rbac"}, "")
	for _, bc := range []struct {
		name      string
		cacheSize int64
		reqs      int
	}{{"cached", 0, 1}, {"cached-1000-subjects", 0, subjects}, {"uncached", -1, 1}} {
		b.Run(bc.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			j, err := identity.NewJWT(&identity.JWTOptions{Name: "corp", Issuer: idp.URL, Audiences: []string{"https://mcp.example.com/mcp"},
				JWKSURL: idp.URL, CacheSize: bc.cacheSize})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() { _ = j.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			for !j.Ready() {
				time.Sleep(time.Millisecond)
			}
			s := New(engine, &Options{Authenticator: identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{j}})})
			reqs := []*authv3.CheckRequest{mcpCheck(toolCall, map[string]string{"authorization": "Bearer " + token})}
			if bc.reqs > 1 {
				reqs = many
			}
			for _, req := range reqs { // every token verified once, as after authz-jwt's warm-up
				if resp, _ := s.Check(ctx, req); resp.GetStatus().GetCode() != 0 {
					b.Fatalf("denied: %v", resp)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := s.Check(ctx, reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
