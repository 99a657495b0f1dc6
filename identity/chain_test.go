package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

// fakeProvider answers with fixed results; it stands in for real providers
// in the chain's own tests.
type fakeProvider struct {
	name  string
	auth  func(*Request) (*Result, error)
	calls int
}

func (f *fakeProvider) Name() string { return f.name }
func (f *fakeProvider) Authenticate(_ context.Context, r *Request) (*Result, error) {
	f.calls++
	return f.auth(r)
}

func headerProvider(name, header, want string) *fakeProvider {
	return &fakeProvider{name: name, auth: func(r *Request) (*Result, error) {
		v, ok := r.Headers[header]
		switch {
		case !ok:
			return nil, ErrNoCredential
		case v == "other":
			return nil, ErrNotMine
		case v == "down":
			return nil, Unavailablef(name, errors.New("dial"), "the authorization server is unavailable")
		case v != want:
			return nil, &Error{Kind: Invalid, Provider: name, Description: "bad", CredentialKey: CredentialKey(name, v)}
		}
		return &Result{Identity: policy.Identity{Authenticated: true, Provider: name, Subject: v}, CredentialHeader: header}, nil
	}}
}

func TestAuthenticatorChain(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		anonymous bool
		headers   map[string]string
		subject   string
		err       error
		kind      ErrorKind
	}{
		{name: "first provider", headers: map[string]string{"a": "alice"}, subject: "alice"},
		{name: "second provider", headers: map[string]string{"b": "bob"}, subject: "bob"},
		{name: "first decides when both present", headers: map[string]string{"a": "alice", "b": "bob"}, subject: "alice"},
		{name: "invalid stops the chain", headers: map[string]string{"a": "mallory", "b": "bob"}, kind: Invalid},
		{name: "not mine falls through", headers: map[string]string{"a": "other", "b": "bob"}, subject: "bob"},
		{name: "not mine by all is invalid", headers: map[string]string{"a": "other"}, kind: Invalid},
		{name: "unavailable", headers: map[string]string{"a": "down"}, kind: Unavailable},
		{name: "no credential", headers: map[string]string{}, err: ErrNoCredential},
		{name: "anonymous allowed", anonymous: true, headers: map[string]string{}, subject: ""},
		{name: "anonymous allowed but bad credential", anonymous: true, headers: map[string]string{"a": "mallory"}, kind: Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAuthenticator(&Options{
				Providers:      []Provider{headerProvider("pa", "a", "alice"), headerProvider("pb", "b", "bob")},
				AllowAnonymous: tc.anonymous,
			})
			res, err := a.Authenticate(ctx, &Request{Headers: tc.headers})
			var ie *Error
			switch {
			case tc.kind != 0:
				if !errors.As(err, &ie) || ie.Kind != tc.kind {
					t.Fatalf("err = %v, want kind %d", err, tc.kind)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if res.Identity.Subject != tc.subject {
					t.Errorf("subject = %q, want %q", res.Identity.Subject, tc.subject)
				}
				if tc.subject == "" && res.Identity.Kind != policy.KindAnonymous {
					t.Errorf("anonymous identity = %+v", res.Identity)
				}
			}
		})
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLockout(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	p := headerProvider("pa", "a", "alice")
	a := NewAuthenticator(&Options{
		Providers: []Provider{p},
		Lockout: NewLockout(LockoutOptions{MaxFailures: 3, Window: time.Minute, Block: 5 * time.Minute,
			Store: NewMemoryLockoutStore(1000, clock.now)}),
	})
	try := func(addr, cred string) error {
		_, err := a.Authenticate(ctx, &Request{SourceAddress: addr, Headers: map[string]string{"a": cred}})
		return err
	}
	locked := func(err error) time.Duration {
		var le *LockedError
		if !errors.As(err, &le) {
			return 0
		}
		return le.RetryAfter
	}

	// Three failures from one address block it; the third still gets 401.
	for i := range 3 {
		if err := try("10.0.0.1", "wrong"+string(rune('a'+i))); locked(err) != 0 {
			t.Fatalf("failure %d already locked", i+1)
		}
	}
	if d := locked(try("10.0.0.1", "alice")); d != 5*time.Minute {
		t.Fatalf("a good credential from a blocked address: retry after %v, want 5m", d)
	}
	if err := try("10.0.0.2", "alice"); err != nil {
		t.Fatalf("another address is not blocked: %v", err)
	}
	// The same bad credential from many addresses is blocked as a credential.
	for i := range 3 {
		_ = try("10.1.0."+string(rune('1'+i)), "stolen")
	}
	if d := locked(try("10.2.0.1", "stolen")); d == 0 {
		t.Fatal("a credential that failed 3 times is not blocked")
	}
	// Blocks end.
	clock.advance(5*time.Minute + time.Second)
	if err := try("10.0.0.1", "alice"); err != nil {
		t.Fatalf("after the block: %v", err)
	}
	// Failures spread over more than the window do not add up.
	for range 4 {
		_ = try("10.9.9.9", "x")
		clock.advance(40 * time.Second)
	}
	if d := locked(try("10.9.9.9", "alice")); d != 0 {
		t.Fatal("failures outside the window blocked the address")
	}
	// No credential and unavailability never count.
	down := NewAuthenticator(&Options{Providers: []Provider{p}, Lockout: NewLockout(LockoutOptions{MaxFailures: 1, Store: NewMemoryLockoutStore(10, clock.now)})})
	for range 3 {
		_, _ = down.Authenticate(ctx, &Request{SourceAddress: "10.3.3.3", Headers: map[string]string{"a": "down"}})
		_, _ = down.Authenticate(ctx, &Request{SourceAddress: "10.3.3.3", Headers: map[string]string{}})
	}
	if _, err := down.Authenticate(ctx, &Request{SourceAddress: "10.3.3.3", Headers: map[string]string{"a": "alice"}}); err != nil {
		t.Fatalf("unavailability or missing credentials locked an address out: %v", err)
	}
}

func TestMemoryLockoutStoreIsBounded(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	s := NewMemoryLockoutStore(32, clock.now)
	for i := range 1000 {
		_, _ = s.Fail(ctx, strings.Repeat("k", i%50)+string(rune(i)), time.Minute)
	}
	n := 0
	for i := range s.shards {
		n += len(s.shards[i].entries)
	}
	if n > 32 {
		t.Fatalf("store holds %d keys, limit 32", n)
	}
	// Expired entries make room again (after the sweep interval).
	clock.advance(2 * time.Minute)
	if c, _ := s.Fail(ctx, "fresh", time.Minute); c != 1 {
		t.Fatalf("a new key after expiry counted %d", c)
	}
}

func TestSigner(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Unix(1_700_000_000, 0)
	s, err := NewSigner(SignerOptions{Key: key, Audience: "https://mcp.example.com/mcp", TTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	id := &policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice", ClientID: "cli", Roles: []string{"dev"}, Scopes: []string{"mcp:tools"}}
	tok, err := s.Sign(id, "tools/call", "fs.read", "d-1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := VerifyIdentityToken(tok, s.PublicKey(), "https://mcp.example.com/mcp", now.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{"sub": c.Subject, "provider": c.Provider, "kind": c.Kind, "client_id": c.ClientID, "roles": c.Roles,
		"scopes": c.Scopes, "method": c.MCPMethod, "name": c.MCPName, "jti": c.ID, "iss": c.Issuer}
	want := map[string]any{"sub": "alice", "provider": "corp", "kind": "jwt", "client_id": "cli", "roles": []string{"dev"},
		"scopes": []string{"mcp:tools"}, "method": "tools/call", "name": "fs.read", "jti": "d-1", "iss": "portcullis"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if _, err := VerifyIdentityToken(tok, s.PublicKey(), "", now.Add(61*time.Second)); err == nil {
		t.Error("an expired identity token verified")
	}
	if _, err := VerifyIdentityToken(tok, s.PublicKey(), "https://other/mcp", now); err == nil {
		t.Error("a token for another audience verified")
	}
	other, _ := NewSigner(SignerOptions{})
	if _, err := VerifyIdentityToken(tok, other.PublicKey(), "", now); err == nil {
		t.Error("a token verified with another key")
	}
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"portcullis","sub":"root","exp":9999999999}`)) + "." + parts[2]
	if _, err := VerifyIdentityToken(forged, s.PublicKey(), "", now); err == nil {
		t.Error("a forged payload verified")
	}

	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", s.JWKS(), err)
	}
	x, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[0]["x"])
	if !ed25519.PublicKey(x).Equal(s.PublicKey()) || jwks.Keys[0]["kty"] != "OKP" || jwks.Keys[0]["crv"] != "Ed25519" {
		t.Errorf("JWKS key %v", jwks.Keys[0])
	}
}

func TestResourceMetadata(t *testing.T) {
	m := ResourceMetadata{Resource: "https://mcp.example.com/mcp", AuthorizationServers: []string{"https://idp.example.com"}, ScopesSupported: []string{"mcp:tools"}}
	var got map[string]any
	if err := json.Unmarshal(m.JSON(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"resource": "https://mcp.example.com/mcp", "authorization_servers": []any{"https://idp.example.com"},
		"scopes_supported": []any{"mcp:tools"}, "bearer_methods_supported": []any{"header"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
}

func BenchmarkSign(b *testing.B) {
	s, _ := NewSigner(SignerOptions{Audience: "https://mcp.example.com/mcp"})
	id := &policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice", Roles: []string{"dev"}, Scopes: []string{"mcp:tools"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(id, "tools/call", "fs.read", "0b7c6a52-3c59-4a8e-9d7e-0a4f1b2c3d4e"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSignerTokenReuse(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Unix(1_700_000_000, 0)
	s, err := NewSigner(SignerOptions{Key: key, TTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	id := &policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice", Roles: []string{"dev"}}
	token := func(id *policy.Identity, method, name string) string {
		t.Helper()
		tok, err := s.Token(id, method, name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := VerifyIdentityToken(tok, s.PublicKey(), "", now)
		if err != nil || c.Subject != id.Subject || c.MCPMethod != method || c.MCPName != name || !slices.Equal(c.Roles, id.Roles) {
			t.Fatalf("token for %s %s %s: %+v, %v", id.Subject, method, name, c, err)
		}
		return tok
	}
	first := token(id, "tools/call", "echo")
	now = now.Add(29 * time.Second)
	if token(id, "tools/call", "echo") != first {
		t.Error("the same caller and call within half the TTL got a new token")
	}
	// Anything the token says makes another token.
	for _, other := range []struct {
		id           *policy.Identity
		method, name string
	}{
		{id, "tools/call", "hash"},
		{id, "prompts/get", "echo"},
		{&policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "bob", Roles: []string{"dev"}}, "tools/call", "echo"},
		{&policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice", Roles: []string{"dev", "ops"}}, "tools/call", "echo"},
		{&policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice", Roles: []string{"devops"}}, "tools/call", "echo"},
		{&policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice", Scopes: []string{"dev"}}, "tools/call", "echo"},
	} {
		if token(other.id, other.method, other.name) == first {
			t.Errorf("%+v %s %s got alice's echo token", other.id, other.method, other.name)
		}
	}
	// Past half the TTL a fresh token keeps receivers at least TTL/2.
	now = now.Add(2 * time.Second)
	fresh := token(id, "tools/call", "echo")
	if fresh == first {
		t.Error("a token past half its lifetime was reused")
	}
	if c, _ := VerifyIdentityToken(fresh, s.PublicKey(), "", now); c.ExpiresAt.Time.Sub(now) != time.Minute {
		t.Errorf("the fresh token expires in %v", c.ExpiresAt.Time.Sub(now))
	}
}
