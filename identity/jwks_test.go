package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
)

func TestJWKSUnknownKID(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	j := jwtTestStart(t, jwtTestOptions(t, srv, clock))
	ctx := jwtTestContext(t)
	if n := srv.jwksHits.Load(); n != 1 {
		t.Fatalf("JWKS requests at start = %d, want 1", n)
	}
	var toks []string
	for i := range 40 {
		toks = append(toks, jwtTestMint(t, jwt.SigningMethodRS256, k.rsa3, fmt.Sprintf("ghost-%d", i), clock.claims(nil)))
	}
	unknown := func(i int) error {
		_, err := j.Authenticate(ctx, jwtTestBearer(toks[i]))
		return err
	}
	want := jwtErr{Kind: Invalid, Provider: "corp", Description: "unknown signing key", HasKey: true}
	for i := range 20 {
		if diff := cmp.Diff(want, jwtTestErr(unknown(i))); diff != "" {
			t.Fatalf("token %d (-want +got):\n%s", i, diff)
		}
	}
	if n := srv.jwksHits.Load(); n != 2 {
		t.Errorf("JWKS requests after 20 unknown kids = %d, want 2", n)
	}

	// Once the interval has passed, 20 concurrent unknown kids cause one
	// more request.
	clock.Advance(time.Minute)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if diff := cmp.Diff(want, jwtTestErr(unknown(20+i))); diff != "" {
				t.Errorf("token %d (-want +got):\n%s", i, diff)
			}
		})
	}
	wg.Wait()
	if n := srv.jwksHits.Load(); n != 3 {
		t.Errorf("JWKS requests after the interval = %d, want 3", n)
	}
}

func TestJWKSKeyRotation(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, jwtTestJWK{kid: "rsa1", alg: "RS256", pub: &k.rsa1.PublicKey}))
	j := jwtTestStart(t, jwtTestOptions(t, srv, clock))
	ctx := jwtTestContext(t)
	auth := func(key *rsa.PrivateKey, kid string) error {
		_, err := j.Authenticate(ctx, jwtTestBearer(jwtTestMint(t, jwt.SigningMethodRS256, key, kid, clock.claims(nil))))
		return err
	}

	// The issuer publishes a new key next to the old one and signs with it.
	srv.publish(t, jwtTestJWK{kid: "rsa1", alg: "RS256", pub: &k.rsa1.PublicKey},
		jwtTestJWK{kid: "rsa3", alg: "RS256", pub: &k.rsa3.PublicKey})
	if err := auth(k.rsa3, "rsa3"); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if err := auth(k.rsa1, "rsa1"); err != nil {
		t.Fatalf("old key: %v", err)
	}
	if n := srv.jwksHits.Load(); n != 2 {
		t.Errorf("JWKS requests = %d, want 2", n)
	}

	// Another rotation within the interval waits for the interval.
	srv.publish(t, jwtTestJWK{kid: "rsa3", alg: "RS256", pub: &k.rsa3.PublicKey},
		jwtTestJWK{kid: "rsa2", alg: "RS256", pub: &k.rsa2.PublicKey})
	if err := auth(k.rsa2, "rsa2"); err == nil {
		t.Fatal("a kid published within the interval was accepted")
	}
	clock.Advance(time.Minute)
	if err := auth(k.rsa2, "rsa2"); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
	if err := auth(k.rsa1, "rsa1"); err == nil {
		t.Error("the withdrawn key still verifies")
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	jwtLeakCheck(t)
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	srv.down.Store(true)
	j := jwtTestNew(t, jwtTestOptions(t, srv, clock))
	ctx := jwtTestContext(t)
	tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil))

	jwtTestEventually(t, "retries", func() bool { return srv.jwksHits.Load() >= 3 })
	_, err := j.Authenticate(ctx, jwtTestBearer(tok))
	want := jwtErr{Kind: Unavailable, Provider: "corp", Description: "signing keys unavailable", HasKey: true}
	if diff := cmp.Diff(want, jwtTestErr(err)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if j.Ready() {
		t.Fatal("Ready while the JWKS is down")
	}

	srv.down.Store(false)
	jwtTestEventually(t, "keys loaded", j.Ready)
	if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
		t.Fatalf("after the JWKS came up: %v", err)
	}
}

func TestJWKSDownLater(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	opts := jwtTestOptions(t, srv, clock)
	opts.RefreshInterval = 5 * time.Millisecond
	j := jwtTestStart(t, opts)
	ctx := jwtTestContext(t)

	srv.down.Store(true)
	hits := srv.jwksHits.Load()
	jwtTestEventually(t, "failed refreshes", func() bool { return srv.jwksHits.Load() >= hits+3 })
	for _, tok := range []string{
		jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil)),
		jwtTestMint(t, jwt.SigningMethodEdDSA, k.ed1, "ed1", clock.claims(nil)),
	} {
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
			t.Errorf("with the JWKS down: %v", err)
		}
	}
	if !j.Ready() {
		t.Error("not Ready after a failed refresh")
	}
}

func TestJWKSDiscovery(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	discoveryOptions := func(t *testing.T) *JWTOptions {
		opts := jwtTestOptions(t, srv, clock)
		opts.JWKSURL = ""
		opts.Discovery = true
		opts.Issuer = srv.URL
		return opts
	}
	tok := jwtTestMint(t, jwt.SigningMethodES256, k.ec1, "ec1", clock.claims(jwt.MapClaims{"iss": srv.URL}))

	t.Run("ok", func(t *testing.T) {
		srv.docIssuer.Store(nil)
		j := jwtTestStart(t, discoveryOptions(t))
		if _, err := j.Authenticate(jwtTestContext(t), jwtTestBearer(tok)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("issuer mismatch", func(t *testing.T) {
		evil := "https://evil.example"
		srv.docIssuer.Store(&evil)
		t.Cleanup(func() { srv.docIssuer.Store(nil) })
		j, err := NewJWT(discoveryOptions(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx := jwtTestContext(t)
		err = j.refresh(ctx)
		if err == nil || !strings.Contains(err.Error(), `the document's issuer "https://evil.example" is not the configured issuer`) {
			t.Fatalf("refresh: %v", err)
		}
		if j.Ready() {
			t.Error("Ready after a bad discovery")
		}
		_, err = j.Authenticate(ctx, jwtTestBearer(tok))
		if ie, ok := errors.AsType[*Error](err); !ok || ie.Kind != Unavailable {
			t.Errorf("Authenticate: %v, want Unavailable", err)
		}
	})
}

func TestJWKSFile(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	path := filepath.Join(t.TempDir(), "jwks.json")
	write := func(keys ...jwtTestJWK) {
		if err := os.WriteFile(path, jwtTestJWKS(t, keys...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(jwtTestJWK{kid: "rsa1", alg: "RS256", pub: &k.rsa1.PublicKey})
	j := jwtTestStart(t, &JWTOptions{
		Name: "file", Issuer: jwtTestIssuer, Audiences: []string{jwtTestAudience}, JWKSFile: path,
		RefreshInterval: time.Hour, Logger: jwtTestLogger(t), Now: clock.Now,
	})
	ctx := jwtTestContext(t)
	if _, err := j.Authenticate(ctx, jwtTestBearer(jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil)))); err != nil {
		t.Fatal(err)
	}
	write(jwtTestJWK{kid: "ed1", alg: "EdDSA", pub: k.ed1.Public()})
	if _, err := j.Authenticate(ctx, jwtTestBearer(jwtTestMint(t, jwt.SigningMethodEdDSA, k.ed1, "ed1", clock.claims(nil)))); err != nil {
		t.Fatalf("after the file changed: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := j.refresh(ctx); err == nil {
		t.Error("refresh of a missing file succeeded")
	}
	if !j.Ready() {
		t.Error("a failed reload dropped the keys")
	}
}

func TestJWKSParse(t *testing.T) {
	k := jwtTestKeys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		jwks     []byte
		wantKIDs []string
		skipped  int
		wantErr  string
	}{
		{
			name:     "default",
			jwks:     jwtTestJWKS(t, k.defaultJWKS()...),
			wantKIDs: []string{"rsa1", "rsa2", "ec1", "ed1"},
		},
		{
			name: "encryption, small and symmetric keys are skipped",
			jwks: []byte(`{"keys":[` +
				jwtTestJWKJSON(t, jwtTestJWK{kid: "enc", use: "enc", pub: &k.rsa1.PublicKey}) + `,` +
				jwtTestJWKJSON(t, jwtTestJWK{kid: "small", pub: &small.PublicKey}) + `,` +
				`{"kty":"oct","kid":"hmac","k":"c2VjcmV0"},` +
				`{"kty":"RSA","kid":"sign-only","key_ops":["sign"],"n":"AQAB","e":"AQAB"},` +
				jwtTestJWKJSON(t, jwtTestJWK{kid: "ok", use: "sig", pub: &k.rsa2.PublicKey}) + `]}`),
			wantKIDs: []string{"ok"},
			skipped:  4,
		},
		{
			name:    "no usable key",
			jwks:    []byte(`{"keys":[{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}]}`),
			skipped: 1,
			wantErr: "no usable signature key",
		},
		{
			name:    "empty",
			jwks:    []byte(`{"keys":[]}`),
			wantErr: "no usable signature key",
		},
		{
			name:    "not JSON",
			jwks:    []byte(`<html>`),
			wantErr: "decode JWKS",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, skipped, err := parseJWKS(tc.jwks, nil)
			if len(skipped) != tc.skipped {
				t.Errorf("skipped %d: %q, want %d", len(skipped), skipped, tc.skipped)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantKIDs, set.kids()); diff != "" {
				t.Errorf("kids (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("unchanged keys are kept", func(t *testing.T) {
		prev, _, err := parseJWKS(jwtTestJWKS(t, k.defaultJWKS()...), nil)
		if err != nil {
			t.Fatal(err)
		}
		next, _, err := parseJWKS(jwtTestJWKS(t, k.defaultJWKS()[1:]...), prev)
		if err != nil {
			t.Fatal(err)
		}
		if prev.contains(next.all[0]) != true || next.contains(prev.all[0]) {
			t.Error("a refresh did not keep the unchanged keys or kept a withdrawn one")
		}
	})
}
