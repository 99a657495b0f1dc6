package extauthz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/policy"
)

// tokenProvider accepts "Bearer good" and answers other tokens with the
// identity errors named by the token.
type tokenProvider struct{}

func (tokenProvider) Name() string { return "test" }

func (tokenProvider) Authenticate(_ context.Context, r *identity.Request) (*identity.Result, error) {
	tok, err := identity.BearerToken("test", r.Headers)
	if err != nil {
		return nil, err
	}
	switch tok {
	case "good":
		return &identity.Result{
			Identity:         policy.Identity{Authenticated: true, Provider: "test", Kind: policy.KindJWT, Subject: "alice", ClientID: "cli", Roles: []string{"dev", "ops"}, Scopes: []string{"mcp:tools"}},
			CredentialHeader: "authorization",
		}, nil
	case "down":
		return nil, identity.Unavailablef("test", errors.New("dial tcp: refused"), "the authorization server is unavailable")
	default:
		return nil, &identity.Error{Kind: identity.Invalid, Provider: "test", Description: "token expired", CredentialKey: identity.CredentialKey("test", tok)}
	}
}

func TestCheckAuthentication(t *testing.T) {
	ctx := testContext(t)
	const rm = `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`
	for _, tc := range []struct {
		name       string
		auth       string
		status     int
		challenge  string
		retryAfter string
		message    string
	}{
		{name: "no credential", status: 401, challenge: `Bearer ` + rm, message: "authentication required"},
		{name: "invalid token", auth: "Bearer bad", status: 401, challenge: `Bearer error="invalid_token", error_description="token expired", ` + rm, message: "token expired"},
		{name: "no token after Bearer", auth: "Bearer", status: 400, challenge: `Bearer error="invalid_request", error_description="the Authorization header has no credential", ` + rm},
		{name: "two Authorization headers", auth: "Bearer good,Bearer bad", status: 400, challenge: `Bearer error="invalid_request", error_description="more than one Authorization header", ` + rm},
		{name: "provider down", auth: "Bearer down", status: 503, message: "authentication is temporarily unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := &fixedDecider{d: policy.Decision{Allowed: true}}
			s := New(dec, &Options{
				Authenticator:       identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{tokenProvider{}}}),
				ResourceMetadataURL: "https://mcp.example.com/.well-known/oauth-protected-resource",
			})
			h := map[string]string{}
			if tc.auth != "" {
				h["authorization"] = tc.auth
			}
			resp, err := s.Check(ctx, mcpCheck(toolCall, h))
			if err != nil {
				t.Fatal(err)
			}
			if dec.in != nil {
				t.Error("the policy was asked about an unauthenticated request")
			}
			got := readDenial(t, resp)
			if got.status != tc.status || got.headers["www-authenticate"] != tc.challenge || got.id != 7.0 {
				t.Errorf("got %d %q id %v, want %d %q", got.status, got.headers["www-authenticate"], got.id, tc.status, tc.challenge)
			}
			if tc.message != "" && got.message != tc.message {
				t.Errorf("message %q, want %q", got.message, tc.message)
			}
			if s := resp.String(); containsAny(s, "refused", "dial tcp") {
				t.Errorf("internal detail leaked: %s", s)
			}
		})
	}
}

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

func TestCheckLockout(t *testing.T) {
	ctx := testContext(t)
	s := New(&fixedDecider{d: policy.Decision{Allowed: true}}, &Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{
			Providers: []identity.Provider{tokenProvider{}},
			Lockout:   identity.NewLockout(identity.LockoutOptions{MaxFailures: 2, Window: time.Minute, Block: 90 * time.Second}),
		}),
	})
	req := func(tok string) *authv3.CheckRequest {
		r := mcpCheck(toolCall, map[string]string{"authorization": "Bearer " + tok})
		r.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7"}}}}
		return r
	}
	for range 2 {
		if got := readDenial(t, must(s.Check(ctx, req("bad")))); got.status != 401 {
			t.Fatalf("failure: %d", got.status)
		}
	}
	got := readDenial(t, must(s.Check(ctx, req("good"))))
	if got.status != 429 || got.headers["retry-after"] != "90" || got.rpcCode != CodeRateLimited {
		t.Errorf("locked out: %+v", got)
	}
}

func must(r *authv3.CheckResponse, err error) *authv3.CheckResponse {
	if err != nil {
		panic(err)
	}
	return r
}

// TestCheckAnonymousIdentityToken: an anonymous caller the policy allows
// still gets a gateway-signed identity token, for the MCP server's
// require_identity.
func TestCheckAnonymousIdentityToken(t *testing.T) {
	signer, err := identity.NewSigner(identity.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := New(&fixedDecider{d: policy.Decision{Allowed: true, Cost: 1}}, &Options{
		Authenticator: identity.NewAuthenticator(&identity.Options{AllowAnonymous: true}),
		Signer:        signer,
	})
	resp := must(s.Check(testContext(t), mcpCheck(toolCall, nil)))
	var tok string
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == HeaderIdentity {
			tok = h.GetHeader().GetValue()
		}
	}
	c, err := identity.VerifyIdentityToken(tok, signer.PublicKey(), "", time.Now())
	if err != nil || c.Kind != policy.KindAnonymous || c.Subject != "" || c.MCPName != "fs.read" {
		t.Fatalf("anonymous identity token: %+v, %v", c, err)
	}
}

func TestCheckAllowedIdentity(t *testing.T) {
	ctx := testContext(t)
	signer, err := identity.NewSigner(identity.SignerOptions{Audience: "https://mcp.example.com/mcp"})
	if err != nil {
		t.Fatal(err)
	}
	for _, forward := range []bool{false, true} {
		dec := &fixedDecider{d: policy.Decision{Allowed: true, Cost: 1}}
		s := New(dec, &Options{
			Authenticator:      identity.NewAuthenticator(&identity.Options{Providers: []identity.Provider{tokenProvider{}}}),
			Signer:             signer,
			ForwardCredentials: forward,
		})
		resp := must(s.Check(ctx, mcpCheck(toolCall, map[string]string{"authorization": "Bearer good", "x-portcullis-subject": "root", "x-portcullis-identity": "forged"})))
		ok := resp.GetOkResponse()
		if ok == nil {
			t.Fatalf("denied: %v", resp)
		}
		set := map[string]string{}
		for _, h := range ok.GetHeaders() {
			set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("%s is not overwritten", h.GetHeader().GetKey())
			}
		}
		want := map[string]string{HeaderSubject: "alice", HeaderClientID: "cli", HeaderRoles: "dev,ops", HeaderScopes: "mcp:tools", HeaderProvider: "test"}
		for k, v := range want {
			if set[k] != v {
				t.Errorf("%s = %q, want %q", k, set[k], v)
			}
		}
		c, err := identity.VerifyIdentityToken(set[HeaderIdentity], signer.PublicKey(), "https://mcp.example.com/mcp", time.Now())
		if err != nil || c.Subject != "alice" || c.MCPMethod != "tools/call" || c.MCPName != "fs.read" {
			t.Errorf("identity token: %+v, %v", c, err)
		}
		if set[HeaderDecisionID] == "" || set[HeaderDecisionID] != wireMetadata(t, resp).AsMap()[MetaDecisionID] {
			t.Errorf("%s = %q, want the decision id %v", HeaderDecisionID, set[HeaderDecisionID], wireMetadata(t, resp).AsMap()[MetaDecisionID])
		}
		removed := slices.Contains(ok.GetHeadersToRemove(), "authorization")
		if removed == forward {
			t.Errorf("forward_credentials=%v: authorization removed=%v", forward, removed)
		}
		if slices.Contains(ok.GetHeadersToRemove(), HeaderSubject) || slices.Contains(ok.GetHeadersToRemove(), HeaderIdentity) {
			t.Error("a header Portcullis sets is also removed")
		}
		if dec.in.Identity.Subject != "alice" || !dec.in.Identity.Authenticated {
			t.Errorf("policy saw %+v", dec.in.Identity)
		}
		md := wireMetadata(t, resp).AsMap()
		if md[MetaSubject] != "alice" || md[MetaProvider] != "test" || md[MetaClientID] != "cli" {
			t.Errorf("dynamic metadata %v", md)
		}
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                    `""`,
		"mcp:tools mcp:admin": `"mcp:tools mcp:admin"`,
		`say "hi"`:            `"say \"hi\""`,
		`C:\path\`:            `"C:\\path\\"`,
		`\"`:                  `"\\\""`,
		"ünïcödé":             `"ünïcödé"`,
		"a\r\nSet-Cookie: x":  `"a  Set-Cookie: x"`,
		"tab\there\x00\x7f":   "\"tab\there  \"",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestChallenge(t *testing.T) {
	with := New(echoOnly{}, &Options{ResourceMetadataURL: `https://mcp.example.com/.well-known/oauth-protected-resource`})
	without := New(echoOnly{}, nil)
	rm := `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`
	for _, tc := range []struct {
		s      *Server
		params string
		want   string
	}{
		{without, "", "Bearer"},
		{without, `error="invalid_token"`, `Bearer error="invalid_token"`},
		{with, "", "Bearer " + rm},
		{with, `error="invalid_token"`, `Bearer error="invalid_token", ` + rm},
	} {
		if got := tc.s.challenge(tc.params); got != tc.want {
			t.Errorf("challenge(%q) = %s, want %s", tc.params, got, tc.want)
		}
	}
}

// Options handed out by a headerBlock keep their values when the block is
// full and the next option comes from a new one.
func TestHeaderBlock(t *testing.T) {
	block := make(headerBlock, 0, 2)
	var opts []*corev3.HeaderValueOption
	for i := range 7 {
		opts = append(opts, block.option(fmt.Sprint("k", i), fmt.Sprint("v", i), i%2 == 1))
	}
	for i, o := range opts {
		want := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if i%2 == 1 {
			want = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
		if o.GetHeader().GetKey() != fmt.Sprint("k", i) || o.GetHeader().GetValue() != fmt.Sprint("v", i) || o.GetAppendAction() != want {
			t.Errorf("option %d = %v", i, o)
		}
	}
}
