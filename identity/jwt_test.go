package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

const (
	jwtTestIssuer   = "https://issuer.example"
	jwtTestAudience = "https://mcp.example.com/mcp"
	jwtTestTimeout  = 30 * time.Second
)

// jwtTestKeySet holds the signing keys of the tests, generated once.
type jwtTestKeySet struct {
	rsa1, rsa2, rsa3 *rsa.PrivateKey
	ec1              *ecdsa.PrivateKey
	ed1              ed25519.PrivateKey
}

var jwtTestKeys = sync.OnceValue(func() *jwtTestKeySet {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k jwtTestKeySet
	var err error
	for _, p := range []**rsa.PrivateKey{&k.rsa1, &k.rsa2, &k.rsa3} {
		*p, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
	}
	k.ec1, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed1, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return &k
})

// jwtTestJWK is a public key to publish.
type jwtTestJWK struct {
	kid, alg, use string
	pub           any
}

// defaultJWKS is what most tests publish: two RSA keys (one without alg),
// one P-256 key and one Ed25519 key.
func (k *jwtTestKeySet) defaultJWKS() []jwtTestJWK {
	return []jwtTestJWK{
		{kid: "rsa1", alg: "RS256", pub: &k.rsa1.PublicKey},
		{kid: "rsa2", pub: &k.rsa2.PublicKey},
		{kid: "ec1", alg: "ES256", pub: &k.ec1.PublicKey},
		{kid: "ed1", alg: "EdDSA", pub: k.ed1.Public()},
	}
}

func jwtTestJWKS(t testing.TB, keys ...jwtTestJWK) []byte {
	t.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: k.kid, ALG: jwkset.ALG(k.alg), USE: jwkset.USE(k.use),
		}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// jwtTestJWKJSON returns one JWK as JSON.
func jwtTestJWKJSON(t testing.TB, k jwtTestJWK) string {
	t.Helper()
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(jwtTestJWKS(t, k), &set); err != nil {
		t.Fatal(err)
	}
	return string(set.Keys[0])
}

// jwtTestServer serves a JWKS at /jwks and an OpenID configuration.
type jwtTestServer struct {
	*httptest.Server
	jwks      atomic.Pointer[[]byte]
	down      atomic.Bool
	jwksHits  atomic.Int64
	docIssuer atomic.Pointer[string] // nil: the server's URL
}

func newJWTTestServer(t testing.TB, jwks []byte) *jwtTestServer {
	t.Helper()
	s := &jwtTestServer{}
	s.jwks.Store(&jwks)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		s.jwksHits.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(*s.jwks.Load())
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss := s.URL
		if p := s.docIssuer.Load(); p != nil {
			iss = *p
		}
		json.NewEncoder(w).Encode(oidcConfiguration{Issuer: iss, JWKSURI: s.URL + "/jwks"})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *jwtTestServer) publish(t testing.TB, keys ...jwtTestJWK) {
	data := jwtTestJWKS(t, keys...)
	s.jwks.Store(&data)
}

// jwtTestClock is a settable clock.
type jwtTestClock struct {
	mu sync.Mutex
	t  time.Time
}

func newJWTTestClock() *jwtTestClock {
	return &jwtTestClock{t: time.Now().Truncate(time.Second)}
}

func (c *jwtTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *jwtTestClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// claims returns valid claims for the test issuer and audience, with
// extra merged in; an extra nil value removes the claim.
func (c *jwtTestClock) claims(extra jwt.MapClaims) jwt.MapClaims {
	now := c.Now()
	m := jwt.MapClaims{
		"iss": jwtTestIssuer,
		"aud": jwtTestAudience,
		"sub": "alice",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func jwtTestMint(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtTestBearer(tok string) *Request {
	return &Request{Headers: map[string]string{"authorization": "Bearer " + tok}}
}

func jwtTestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func jwtTestOptions(t testing.TB, srv *jwtTestServer, clock *jwtTestClock) *JWTOptions {
	return &JWTOptions{
		Name:            "corp",
		Issuer:          jwtTestIssuer,
		Audiences:       []string{"https://other.example", jwtTestAudience},
		JWKSURL:         srv.URL + "/jwks",
		HTTPClient:      srv.Client(),
		RefreshInterval: time.Hour,
		CacheSize:       1000,
		Logger:          jwtTestLogger(t),
		Now:             clock.Now,
	}
}

func jwtTestContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), jwtTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// jwtTestNew builds a provider with small retry intervals and runs it
// until the test ends. It does not wait for the keys.
func jwtTestNew(t testing.TB, opts *JWTOptions) *JWT {
	t.Helper()
	j, err := NewJWT(opts)
	if err != nil {
		t.Fatal(err)
	}
	j.retryBase, j.retryMax = 5*time.Millisecond, 20*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), jwtTestTimeout)
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return j
}

// jwtTestStart is jwtTestNew, then waits until the keys are loaded.
func jwtTestStart(t testing.TB, opts *JWTOptions) *JWT {
	t.Helper()
	j := jwtTestNew(t, opts)
	jwtTestEventually(t, "keys loaded", j.Ready)
	return j
}

func jwtTestEventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// jwtLeakCheck fails the test if goroutines started during it are still
// running once its cleanups are done. Call it first.
func jwtLeakCheck(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutine leak: %d before, %d after\n%s", base, runtime.NumGoroutine(), buf)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// jwtErr is the comparable part of an *Error.
type jwtErr struct {
	Kind        ErrorKind
	Provider    string
	Description string
	HasKey      bool
}

func jwtTestErr(err error) any {
	var ie *Error
	if errors.As(err, &ie) {
		return jwtErr{Kind: ie.Kind, Provider: ie.Provider, Description: ie.Description, HasKey: ie.CredentialKey != ""}
	}
	return err
}

func jwtB64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestJWTAuthenticate(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	now := clock.Now()

	pemPub := func() []byte {
		der, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}()
	rs := func(extra jwt.MapClaims) string {
		return jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(extra))
	}
	goodRS := rs(nil)
	parts := strings.Split(goodRS, ".")
	tamperedSig := func() string {
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[10] ^= 0x01
		return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	}()
	tamperedPayload := func() string {
		m := clock.claims(jwt.MapClaims{"sub": "mallory"})
		data, _ := json.Marshal(m)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(data) + "." + parts[2]
	}()
	withHeader := func(h map[string]any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, clock.claims(nil))
		maps.Copy(tok.Header, h)
		s, err := tok.SignedString(k.rsa1)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	id := func(sub, client string, roles, scopes []string) *policy.Identity {
		return &policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT,
			Subject: sub, ClientID: client, Roles: roles, Scopes: scopes}
	}
	invalid := func(desc string) jwtErr {
		return jwtErr{Kind: Invalid, Provider: "corp", Description: desc, HasKey: true}
	}

	tests := []struct {
		name    string
		opts    func(*JWTOptions)
		token   string            // sent as a bearer token
		headers map[string]string // instead of token
		want    *policy.Identity  // Claims are filled from the token's payload
		wantErr any               // a sentinel or a jwtErr
	}{
		{
			name: "RS256 default claims",
			token: rs(jwt.MapClaims{"client_id": "cli", "roles": []string{"admin", "dev"},
				"scope": "tools:read tools:call"}),
			want: id("alice", "cli", []string{"admin", "dev"}, []string{"tools:read", "tools:call"}),
		},
		{
			name: "ES256 scp array and azp",
			token: jwtTestMint(t, jwt.SigningMethodES256, k.ec1, "ec1",
				clock.claims(jwt.MapClaims{"azp": "web", "scp": []string{"a", "b"}})),
			want: id("alice", "web", []string{}, []string{"a", "b"}),
		},
		{
			name: "EdDSA Keycloak realm roles",
			opts: func(o *JWTOptions) { o.Claims.Roles = "realm_access.roles" },
			token: jwtTestMint(t, jwt.SigningMethodEdDSA, k.ed1, "ed1", clock.claims(jwt.MapClaims{
				"realm_access": map[string]any{"roles": []string{"r1", "r2"}},
				"azp":          "kc-client", "scope": "openid profile",
			})),
			want: id("alice", "kc-client", []string{"r1", "r2"}, []string{"openid", "profile"}),
		},
		{
			name: "namespaced claim with dots, custom subject and client",
			opts: func(o *JWTOptions) {
				o.Claims = ClaimNames{Subject: "email", Roles: "https://example.com/roles", Scopes: "perms", ClientID: "cid"}
			},
			token: rs(jwt.MapClaims{"email": "a@example.com", "https://example.com/roles": "x y", "perms": []any{"p", 1},
				"cid": "c1", "azp": "ignored"}),
			want: id("a@example.com", "c1", []string{"x", "y"}, []string{"p"}),
		},
		{
			name:  "client_id when azp is absent, scope wins over scp",
			token: rs(jwt.MapClaims{"client_id": "c", "scope": "s1", "scp": []string{"s2"}}),
			want:  id("alice", "c", []string{}, []string{"s1"}),
		},
		{
			name:  "aud array holding one accepted audience",
			token: rs(jwt.MapClaims{"aud": []string{"https://elsewhere.example", jwtTestAudience}}),
			want:  id("alice", "", []string{}, []string{}),
		},
		{
			name:  "no kid, one key fits the alg",
			token: jwtTestMint(t, jwt.SigningMethodES256, k.ec1, "", clock.claims(nil)),
			want:  id("alice", "", []string{}, []string{}),
		},
		{
			name:  "JWK without alg",
			token: jwtTestMint(t, jwt.SigningMethodRS256, k.rsa2, "rsa2", clock.claims(nil)),
			want:  id("alice", "", []string{}, []string{}),
		},
		{
			name:  "PS256 when allowed",
			opts:  func(o *JWTOptions) { o.Algorithms = []string{"PS256"} },
			token: jwtTestMint(t, jwt.SigningMethodPS256, k.rsa2, "rsa2", clock.claims(nil)),
			want:  id("alice", "", []string{}, []string{}),
		},
		{
			name:  "skew honoured: expired 10s ago",
			token: rs(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix(), "iat": now.Add(-time.Hour).Unix()}),
			want:  id("alice", "", []string{}, []string{}),
		},
		{
			name:  "skew honoured: issued 10s in the future",
			token: rs(jwt.MapClaims{"iat": now.Add(10 * time.Second).Unix(), "nbf": now.Add(10 * time.Second).Unix()}),
			want:  id("alice", "", []string{}, []string{}),
		},

		{
			name:    "alg none",
			token:   jwtTestMint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa1", clock.claims(nil)),
			wantErr: invalid("algorithm not allowed"),
		},
		{
			name:    "HS256 with the RSA public key as secret",
			token:   jwtTestMint(t, jwt.SigningMethodHS256, pemPub, "rsa1", clock.claims(nil)),
			wantErr: invalid("algorithm not allowed"),
		},
		{
			name:    "RS384 not in the allow-list",
			token:   jwtTestMint(t, jwt.SigningMethodRS384, k.rsa1, "rsa1", clock.claims(nil)),
			wantErr: invalid("algorithm not allowed"),
		},
		{
			name:    "expired",
			token:   rs(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix()}),
			wantErr: invalid("token expired"),
		},
		{
			name:    "nbf in the future",
			token:   rs(jwt.MapClaims{"nbf": now.Add(5 * time.Minute).Unix()}),
			wantErr: invalid("token not yet valid"),
		},
		{
			name:    "iat in the future beyond the skew",
			token:   rs(jwt.MapClaims{"iat": now.Add(time.Minute).Unix()}),
			wantErr: invalid("token issued in the future"),
		},
		{
			name:    "no exp",
			token:   rs(jwt.MapClaims{"exp": nil}),
			wantErr: invalid("token has no expiration"),
		},
		{
			name:    "exp not a number",
			token:   rs(jwt.MapClaims{"exp": "tomorrow"}),
			wantErr: invalid("invalid claims"),
		},
		{
			name:    "another issuer",
			token:   rs(jwt.MapClaims{"iss": "https://other-issuer.example"}),
			wantErr: ErrNotMine,
		},
		{
			name:    "no issuer",
			token:   rs(jwt.MapClaims{"iss": nil}),
			wantErr: ErrNotMine,
		},
		{
			name:    "wrong audience",
			token:   rs(jwt.MapClaims{"aud": "https://elsewhere.example"}),
			wantErr: invalid("invalid audience"),
		},
		{
			name:    "no audience",
			token:   rs(jwt.MapClaims{"aud": nil}),
			wantErr: invalid("invalid audience"),
		},
		{
			name:    "no kid and several RSA keys",
			token:   jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "", clock.claims(nil)),
			wantErr: invalid("token has no kid and the key set has several keys"),
		},
		{
			name:    "unknown kid",
			token:   jwtTestMint(t, jwt.SigningMethodRS256, k.rsa3, "nobody", clock.claims(nil)),
			wantErr: invalid("unknown signing key"),
		},
		{
			name:    "kid of a key of another type",
			token:   jwtTestMint(t, jwt.SigningMethodES256, k.ec1, "rsa1", clock.claims(nil)),
			wantErr: invalid("signing key does not match the algorithm"),
		},
		{
			name:    "JWK alg differs from the token's",
			opts:    func(o *JWTOptions) { o.Algorithms = []string{"RS256", "PS256"} },
			token:   jwtTestMint(t, jwt.SigningMethodPS256, k.rsa1, "rsa1", clock.claims(nil)),
			wantErr: invalid("signing key does not match the algorithm"),
		},
		{
			name:    "kid not a string",
			token:   withHeader(map[string]any{"kid": 7}),
			wantErr: invalid("malformed token"),
		},
		{
			name:    "signed by another key under a known kid",
			token:   jwtTestMint(t, jwt.SigningMethodRS256, k.rsa3, "rsa1", clock.claims(nil)),
			wantErr: invalid("signature invalid"),
		},
		{
			name:    "tampered signature",
			token:   tamperedSig,
			wantErr: invalid("signature invalid"),
		},
		{
			name:    "tampered payload",
			token:   tamperedPayload,
			wantErr: invalid("signature invalid"),
		},
		{
			name:    "payload not base64",
			token:   parts[0] + ".abcde." + parts[2],
			wantErr: invalid("malformed token"),
		},
		{
			name:    "payload not JSON",
			token:   parts[0] + "." + jwtB64(`{"iss":`) + "." + parts[2],
			wantErr: invalid("malformed token"),
		},
		{
			name:    "header not JSON",
			token:   jwtB64("not json") + "." + parts[1] + "." + parts[2],
			wantErr: ErrNotMine,
		},
		{
			name:    "crit header",
			token:   withHeader(map[string]any{"kid": "rsa1", "crit": []string{"exp"}}),
			wantErr: invalid("unsupported critical header"),
		},
		{
			name:    "64 KiB token",
			token:   parts[0] + "." + strings.Repeat("A", 64<<10) + "." + parts[2],
			wantErr: invalid("the token is too large"),
		},
		{
			name:    "opaque token",
			token:   "2YotnFZFEjr1zCsicMWpAA",
			wantErr: ErrNotMine,
		},
		{
			name:    "two dots but an empty payload",
			token:   parts[0] + ".." + parts[2],
			wantErr: ErrNotMine,
		},
		{
			name:    "Bearer without a token",
			headers: map[string]string{"authorization": "Bearer "},
			wantErr: jwtErr{Kind: Malformed, Provider: "corp", Description: "the Authorization header has no credential"},
		},
		{
			name:    "two Authorization headers",
			headers: map[string]string{"authorization": "Bearer " + goodRS + ", Bearer " + goodRS},
			wantErr: jwtErr{Kind: Malformed, Provider: "corp", Description: "more than one Authorization header"},
		},
		{
			name:    "no Authorization header",
			headers: map[string]string{},
			wantErr: ErrNoCredential,
		},
		{
			name:    "Basic scheme",
			headers: map[string]string{"authorization": "Basic YWxpY2U6c2VjcmV0"},
			wantErr: ErrNoCredential,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := jwtTestOptions(t, srv, clock)
			if tc.opts != nil {
				tc.opts(opts)
			}
			j := jwtTestStart(t, opts)
			req := jwtTestBearer(tc.token)
			if tc.headers != nil {
				req = &Request{Headers: tc.headers}
			}
			res, err := j.Authenticate(jwtTestContext(t), req)
			if tc.want != nil {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				want := *tc.want
				payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tc.token, ".")[1])
				if err := json.Unmarshal(payload, &want.Claims); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, res.Identity); diff != "" {
					t.Errorf("identity (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(Result{Identity: res.Identity, CredentialHeader: "authorization",
					CredentialKey: CredentialKey("corp", tc.token)}, *res); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
				return
			}
			if res != nil {
				t.Errorf("Authenticate returned a result: %+v", res.Identity)
			}
			if s, ok := tc.wantErr.(error); ok {
				if !errors.Is(err, s) {
					t.Fatalf("err = %v, want %v", err, s)
				}
				return
			}
			if diff := cmp.Diff(tc.wantErr, jwtTestErr(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s\nerr: %v", diff, err)
			}
			var ie *Error
			if errors.As(err, &ie) && ie.CredentialKey != "" && ie.CredentialKey != CredentialKey("corp", tc.token) {
				t.Errorf("CredentialKey is not the token's")
			}
			if msg := err.Error(); tc.token != "" && (strings.Contains(msg, tc.token) || strings.Contains(msg, "alice")) {
				t.Errorf("the error message reveals the token or its claims: %s", msg)
			}
		})
	}
}

func TestJWTCache(t *testing.T) {
	k := jwtTestKeys()
	setup := func(t *testing.T) (*JWT, *jwtTestServer, *jwtTestClock) {
		clock := newJWTTestClock()
		srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
		return jwtTestStart(t, jwtTestOptions(t, srv, clock)), srv, clock
	}

	t.Run("a repeated token is verified once", func(t *testing.T) {
		j, _, clock := setup(t)
		ctx := jwtTestContext(t)
		tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(jwt.MapClaims{"roles": []string{"a"}}))
		first, err := j.Authenticate(ctx, jwtTestBearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		if n := j.lookups.Load(); n != 1 {
			t.Fatalf("key lookups after the first call = %d, want 1", n)
		}
		first.Identity.Subject = "mallory" // a caller's change must not reach the cache
		for range 3 {
			again, err := j.Authenticate(ctx, jwtTestBearer(tok))
			if err != nil {
				t.Fatal(err)
			}
			if again.Identity.Subject != "alice" {
				t.Errorf("cached subject = %q", again.Identity.Subject)
			}
		}
		if n := j.lookups.Load(); n != 1 {
			t.Errorf("key lookups after repeats = %d, want 1", n)
		}
	})

	t.Run("a repeated bad signature is verified once", func(t *testing.T) {
		j, _, clock := setup(t)
		ctx := jwtTestContext(t)
		tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa3, "rsa1", clock.claims(nil))
		for range 3 {
			_, err := j.Authenticate(ctx, jwtTestBearer(tok))
			want := jwtErr{Kind: Invalid, Provider: "corp", Description: "signature invalid", HasKey: true}
			if diff := cmp.Diff(want, jwtTestErr(err)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		}
		if n := j.lookups.Load(); n != 1 {
			t.Errorf("key lookups = %d, want 1", n)
		}
	})

	t.Run("an expired cached token is refused", func(t *testing.T) {
		j, _, clock := setup(t)
		ctx := jwtTestContext(t)
		tok := jwtTestMint(t, jwt.SigningMethodES256, k.ec1, "ec1",
			clock.claims(jwt.MapClaims{"exp": clock.Now().Add(time.Minute).Unix()}))
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute + 29*time.Second) // within the skew
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
			t.Fatalf("within the skew: %v", err)
		}
		clock.Advance(time.Second)
		_, err := j.Authenticate(ctx, jwtTestBearer(tok))
		want := jwtErr{Kind: Invalid, Provider: "corp", Description: "token expired", HasKey: true}
		if diff := cmp.Diff(want, jwtTestErr(err)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if n := j.lookups.Load(); n != 1 {
			t.Errorf("key lookups = %d, want 1", n)
		}
	})

	t.Run("a token not yet valid is not remembered", func(t *testing.T) {
		j, _, clock := setup(t)
		ctx := jwtTestContext(t)
		tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1",
			clock.claims(jwt.MapClaims{"nbf": clock.Now().Add(time.Minute).Unix()}))
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err == nil {
			t.Fatal("accepted before nbf")
		}
		clock.Advance(time.Minute)
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
			t.Fatalf("after nbf: %v", err)
		}
	})

	t.Run("a cached token whose key is withdrawn is verified again", func(t *testing.T) {
		j, srv, clock := setup(t)
		ctx := jwtTestContext(t)
		tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil))
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
			t.Fatal(err)
		}
		// A refresh that finds the same keys keeps the cache valid.
		if err := j.refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil || j.lookups.Load() != 1 {
			t.Fatalf("after an unchanged refresh: err %v, lookups %d", err, j.lookups.Load())
		}
		srv.publish(t, jwtTestJWK{kid: "ec1", alg: "ES256", pub: &k.ec1.PublicKey})
		if err := j.refresh(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := j.Authenticate(ctx, jwtTestBearer(tok))
		want := jwtErr{Kind: Invalid, Provider: "corp", Description: "unknown signing key", HasKey: true}
		if diff := cmp.Diff(want, jwtTestErr(err)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("without Run nothing is cached", func(t *testing.T) {
		clock := newJWTTestClock()
		srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
		j, err := NewJWT(jwtTestOptions(t, srv, clock))
		if err != nil {
			t.Fatal(err)
		}
		ctx := jwtTestContext(t)
		if err := j.refresh(ctx); err != nil {
			t.Fatal(err)
		}
		tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil))
		for range 2 {
			if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
				t.Fatal(err)
			}
		}
		if n := j.lookups.Load(); n != 2 {
			t.Errorf("key lookups = %d, want 2", n)
		}
	})
}

func TestJWTCachedAllocs(t *testing.T) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	j := jwtTestStart(t, jwtTestOptions(t, srv, clock))
	ctx := jwtTestContext(t)
	req := jwtTestBearer(jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil)))
	if _, err := j.Authenticate(ctx, req); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := j.Authenticate(ctx, req); err != nil {
			t.Fatal(err)
		}
	})
	// The copy of the Result. Under the race detector, sync.Pool drops
	// buffers at random.
	if limit := 1.0; allocs > limit && !jwtTestRace() {
		t.Errorf("a cached Authenticate makes %v allocations, want at most %v", allocs, limit)
	}
}

// jwtTestRace reports whether the test binary was built with -race.
func jwtTestRace() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

func TestJWTCompact(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want bool
	}{
		{"eyJh.eyJp.c2ln", true},
		{"a-_9.Zz0.", true}, // an empty signature is still a JWS: alg none
		{"a.b.c.d", false},
		{"a.b", false},
		{".b.c", false},
		{"a..c", false},
		{"a.b+.c", false},
		{"a.b/.c", false},
		{"a.b=.c", false},
		{"a.b~.c", false},
		{"a.\xc3\xa9.c", false},
		{"a.b\x00.c", false},
		{"", false},
	} {
		if got := jwtCompact(tc.tok); got != tc.want {
			t.Errorf("jwtCompact(%q) = %v, want %v", tc.tok, got, tc.want)
		}
	}
}

func TestNewJWT(t *testing.T) {
	valid := func() *JWTOptions {
		return &JWTOptions{Name: "corp", Issuer: jwtTestIssuer, Audiences: []string{jwtTestAudience},
			JWKSURL: "https://issuer.example/jwks"}
	}
	tests := []struct {
		name string
		edit func(*JWTOptions)
		want []string // substrings of the error
	}{
		{"no name", func(o *JWTOptions) { o.Name = "" }, []string{"name: required"}},
		{"no issuer", func(o *JWTOptions) { o.Issuer = "" }, []string{"issuer: required"}},
		{"no audience", func(o *JWTOptions) { o.Audiences = nil }, []string{"audiences: at least one"}},
		{"empty audience", func(o *JWTOptions) { o.Audiences = []string{""} }, []string{"audiences[0]: empty"}},
		{"no key source", func(o *JWTOptions) { o.JWKSURL = "" }, []string{"exactly one of jwks_url"}},
		{"two key sources", func(o *JWTOptions) { o.JWKSFile = "jwks.json" }, []string{"exactly one of jwks_url"}},
		{"relative JWKS URL", func(o *JWTOptions) { o.JWKSURL = "/jwks" }, []string{"jwks_url:"}},
		{"discovery of a non-URL issuer", func(o *JWTOptions) { o.JWKSURL, o.Discovery, o.Issuer = "", true, "corp" },
			[]string{"issuer: discovery needs an http(s) URL"}},
		{"HS256", func(o *JWTOptions) { o.Algorithms = []string{"RS256", "HS256"} }, []string{`algorithms[1]: "HS256" is not allowed`}},
		{"none", func(o *JWTOptions) { o.Algorithms = []string{"none"} }, []string{`algorithms[0]: "none" is not allowed`}},
		{"negative skew", func(o *JWTOptions) { o.ClockSkew = -time.Second }, []string{"clock_skew: negative"}},
		{"every problem", func(o *JWTOptions) { *o = JWTOptions{Name: "x", RefreshInterval: -1} },
			[]string{"issuer: required", "audiences: at least one", "exactly one of", "refresh_interval: negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.edit(o)
			_, err := NewJWT(o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := NewJWT(nil); err == nil {
		t.Error("NewJWT(nil): no error")
	}

	t.Run("defaults", func(t *testing.T) {
		o := valid()
		j, err := NewJWT(o)
		if err != nil {
			t.Fatal(err)
		}
		o.Audiences[0] = "changed" // NewJWT copies its options
		got := j.opts
		got.HTTPClient, got.Now, got.Logger = nil, nil, nil
		want := JWTOptions{Name: "corp", Issuer: jwtTestIssuer, Audiences: []string{jwtTestAudience},
			JWKSURL: "https://issuer.example/jwks", Algorithms: []string{"RS256", "ES256", "EdDSA"},
			ClockSkew: 30 * time.Second, Claims: ClaimNames{Subject: "sub", Roles: "roles", Scopes: "scope", ClientID: "client_id"},
			RefreshInterval: 5 * time.Minute, UnknownKIDRefreshInterval: time.Minute, CacheSize: 100_000}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("options (-want +got):\n%s", diff)
		}
		if j.client.Timeout != 10*time.Second || j.Name() != "corp" || j.Ready() {
			t.Errorf("client timeout %v, name %q, ready %v", j.client.Timeout, j.Name(), j.Ready())
		}
	})
}

func TestJWTRun(t *testing.T) {
	jwtLeakCheck(t)
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(t, jwtTestJWKS(t, k.defaultJWKS()...))
	j, err := NewJWT(jwtTestOptions(t, srv, clock))
	if err != nil {
		t.Fatal(err)
	}
	tok := jwtTestMint(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil))
	ctx := jwtTestContext(t)
	if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); jwtTestErr(err) != (jwtErr{Unavailable, "corp", "signing keys unavailable", true}) {
		t.Fatalf("before Run: %v", err)
	}

	runCtx, cancel := context.WithTimeout(ctx, jwtTestTimeout)
	done := make(chan error, 1)
	go func() { done <- j.Run(runCtx) }()
	jwtTestEventually(t, "keys loaded", j.Ready)
	if err := j.Run(runCtx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a second Run: %v", err)
	}
	if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
	// The keys stay; the cache is gone.
	before := j.lookups.Load()
	if _, err := j.Authenticate(ctx, jwtTestBearer(tok)); err != nil {
		t.Fatalf("after Run: %v", err)
	}
	if j.lookups.Load() != before+1 {
		t.Error("a token was answered from a closed cache")
	}
}

func FuzzJWTAuthenticate(f *testing.F) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(f, jwtTestJWKS(f, k.defaultJWKS()...))
	opts := jwtTestOptions(f, srv, clock)
	opts.Logger = nil
	j := jwtTestStart(f, opts)
	good := jwtTestMint(f, jwt.SigningMethodRS256, k.rsa1, "rsa1", clock.claims(nil))
	f.Add(good)
	f.Add(jwtTestMint(f, jwt.SigningMethodEdDSA, k.ed1, "", clock.claims(nil)))
	f.Add(jwtTestMint(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", clock.claims(nil)))
	f.Add("e30.e30.")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := j.Authenticate(ctx, &Request{Headers: map[string]string{"authorization": "Bearer " + tok}})
		if err == nil && res.Identity.Subject != "alice" {
			t.Fatalf("accepted a forged token: %+v", res.Identity)
		}
		if err != nil && res != nil {
			t.Fatal("a result with an error")
		}
	})
}

func BenchmarkJWT(b *testing.B) {
	k := jwtTestKeys()
	clock := newJWTTestClock()
	srv := newJWTTestServer(b, jwtTestJWKS(b, k.defaultJWKS()...))
	for _, bc := range []struct {
		name   string
		cached bool
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{"rs256-cached", true, jwt.SigningMethodRS256, k.rsa1, "rsa1"},
		{"rs256-uncached", false, jwt.SigningMethodRS256, k.rsa1, "rsa1"},
		{"es256-uncached", false, jwt.SigningMethodES256, k.ec1, "ec1"},
		{"eddsa-uncached", false, jwt.SigningMethodEdDSA, k.ed1, "ed1"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := jwtTestOptions(b, srv, clock)
			opts.Logger = nil
			if !bc.cached {
				opts.CacheSize = -1
			}
			j := jwtTestStart(b, opts)
			ctx := jwtTestContext(b)
			req := jwtTestBearer(jwtTestMint(b, bc.method, bc.key, bc.kid, clock.claims(jwt.MapClaims{
				"client_id": "bench", "roles": []string{"a", "b"}, "scope": "tools:read tools:call",
			})))
			if _, err := j.Authenticate(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := j.Authenticate(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
