package identity

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	fuzzJWTIssuer   = "https://issuer.example"
	fuzzJWTAudience = "https://mcp.example.com/mcp"
)

// FuzzJWTFrontMatter sends arbitrary bearer tokens to a running JWT
// provider whose JWKS file holds one freshly generated RSA key. The seeds
// include tokens signed with that key that are expired, for another
// audience or issuer, without exp, with a tampered signature, with alg
// none or HS256, with an unknown kid or a crit header. Properties:
// Authenticate never panics and never authenticates (an arbitrary string is
// not a valid token signed with the key), and its error is ErrNoCredential,
// ErrNotMine or an *Error with a known kind whose Description does not
// contain the token.
func FuzzJWTFrontMatter(f *testing.F) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwks, 0o600); err != nil {
		f.Fatal(err)
	}
	j, err := NewJWT(&JWTOptions{Name: "corp", Issuer: fuzzJWTIssuer, Audiences: []string{fuzzJWTAudience}, JWKSFile: path})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Error(err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); !j.Ready(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			f.Fatal("the JWKS file was not loaded")
		}
	}

	now := time.Now()
	sign := func(m jwt.SigningMethod, k any, hdr, claims map[string]any) string {
		tok := jwt.NewWithClaims(m, jwt.MapClaims(claims))
		for name, v := range hdr {
			tok.Header[name] = v
		}
		s, err := tok.SignedString(k)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	claims := func(edit func(map[string]any)) map[string]any {
		c := map[string]any{"iss": fuzzJWTIssuer, "aud": fuzzJWTAudience, "sub": "alice",
			"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	kid := map[string]any{"kid": "k1"}
	expired := sign(jwt.SigningMethodRS256, key, kid, claims(nil))
	valid := sign(jwt.SigningMethodRS256, key, kid, claims(func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }))
	// The fixture works: the key verifies a good token (never a seed).
	if _, err := j.Authenticate(context.Background(), &Request{Headers: map[string]string{"authorization": "Bearer " + valid}}); err != nil {
		f.Fatalf("a valid token is refused: %v", err)
	}
	h, p, _ := strings.Cut(valid, ".")
	p, sig, _ := strings.Cut(p, ".")
	for _, s := range []string{
		expired,
		h + "." + p + "." + strings.Repeat("A", len(sig)), // signature of zeros
		h + "." + p + "." + sig[:len(sig)-4] + "AAAA",     // tampered signature
		h + "." + p + ".", // no signature
		h + "." + b64([]byte(`{"iss":"`+fuzzJWTIssuer+`"}`)) + "." + sig, // payload swapped
		sign(jwt.SigningMethodRS256, key, kid, claims(func(c map[string]any) { c["aud"] = "https://other.example" })),
		sign(jwt.SigningMethodRS256, key, kid, claims(func(c map[string]any) { c["iss"] = "https://other.example" })),
		sign(jwt.SigningMethodRS256, key, kid, claims(func(c map[string]any) { delete(c, "exp"); c["nbf"] = now.Unix() })),
		sign(jwt.SigningMethodRS256, key, map[string]any{"kid": "unknown"}, claims(nil)),
		sign(jwt.SigningMethodRS256, key, map[string]any{"kid": 7}, claims(nil)),
		sign(jwt.SigningMethodRS256, key, map[string]any{"crit": []string{"b64"}, "b64": false}, claims(nil)),
		sign(jwt.SigningMethodPS256, key, kid, claims(nil)),
		sign(jwt.SigningMethodHS256, []byte(jwks), kid, claims(nil)),
		sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, claims(nil)),
		b64([]byte(`{"alg":"none"}`)) + "." + p + ".",
		b64([]byte(`{"alg":"RS256","kid":"k1"}`)) + "." + b64([]byte(`{"iss":"`+fuzzJWTIssuer+`","exp":1e400}`)) + ".c2ln",
		b64([]byte(`{"alg":"RS256"}`)) + "." + b64([]byte(`{"iss":"`+fuzzJWTIssuer+`","aud":[1],"exp":"x"}`)) + ".c2ln",
		b64([]byte(`{"alg":"RS256"}`)) + ".bm90IGpzb24.c2ln",
		"e30.e30.e30",
		"a.b.c",
		"..",
		"a..c",
		"eyJhbGciOiJSUzI1NiJ9.%%%.c2ln",
		"opaque-token",
		"a.b.c.d.e",
		"a b.c",
		"",
		strings.Repeat("A", MaxTokenBytes) + ".b.c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := &Request{Headers: map[string]string{"authorization": "Bearer " + s}}
		res, err := j.Authenticate(context.Background(), r)
		if err == nil || res != nil {
			t.Fatalf("token %q authenticated: %+v, %v", s, res, err)
		}
		if err == ErrNoCredential || err == ErrNotMine {
			return
		}
		ie, ok := err.(*Error)
		if !ok {
			t.Fatalf("error %v (%T) is neither ErrNoCredential, ErrNotMine nor an *Error", err, err)
		}
		switch ie.Kind {
		case Invalid, Malformed, Unavailable:
		default:
			t.Fatalf("error kind %d", ie.Kind)
		}
		if ie.Description == "" {
			t.Fatalf("error %v has no description", err)
		}
		if tok := strings.TrimSpace(s); len(tok) >= 8 && strings.Contains(ie.Description, tok) {
			t.Fatalf("description %q echoes the token", ie.Description)
		}
	})
}
