package mcpserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/policy"
)

const (
	testTimeout  = 20 * time.Second
	testAudience = "https://mcp.example.com/mcp"
)

// testPolicy: admin may call anything; dev may call echo and whoami.
const testPolicy = `package mcp.authz

default allow := false

allow if "admin" in input.identity.roles

allow if {
	"dev" in input.identity.roles
	input.mcp.tool in {"echo", "whoami"}
}

decision := {"allowed": allow, "reason": reason}

default reason := "role may not call this"

reason := "allowed" if allow
`

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newEngine(t testing.TB) *policy.Engine {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(testContext(t), &policy.Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newServer(t testing.TB, o *Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// connectInMemory connects an SDK client to s over in-memory transports.
func connectInMemory(t testing.TB, s *Server) *mcp.ClientSession {
	t.Helper()
	ctx := testContext(t)
	ct, st := mcp.NewInMemoryTransports()
	ss, err := s.MCPServer().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// gatewayHeaders adds headers to every request, as Envoy does. With sign
// set, it also signs an identity token for each request's own MCP call, as
// ext_authz does.
type gatewayHeaders struct {
	header http.Header
	base   http.RoundTripper
	sign   func(method, name string) (string, error)
}

func (h gatewayHeaders) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.header {
		r.Header[k] = v
	}
	if h.sign != nil && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct {
			Method string
			Params struct{ Name, URI string }
		}
		_ = json.Unmarshal(body, &msg)
		name := msg.Params.Name
		if msg.Params.URI != "" {
			name = msg.Params.URI
		}
		tok, err := h.sign(msg.Method, name)
		if err != nil {
			return nil, err
		}
		r.Header.Set(HeaderIdentity, tok)
	}
	return h.base.RoundTrip(r)
}

// connectHTTP connects an SDK client to url with the given identity token.
func connectHTTP(t testing.TB, url, token string) (*mcp.ClientSession, error) {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set(HeaderIdentity, token)
	}
	tr := &mcp.StreamableClientTransport{Endpoint: url + PathMCP, HTTPClient: &http.Client{Transport: gatewayHeaders{header: h, base: http.DefaultTransport}}, MaxRetries: -1}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(testContext(t), tr, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

func toolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(testContext(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestBuiltinTools(t *testing.T) {
	fixed := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := newServer(t, &Options{Now: func() time.Time { return fixed }, StdioIdentity: policy.Identity{Subject: "local", Kind: "local"}})
	cs := connectInMemory(t, s)
	if diff := cmp.Diff([]string{"echo", "hash", "time", "whoami"}, toolNames(t, cs)); diff != "" {
		t.Fatalf("tools (-want +got):\n%s", diff)
	}
	sum := sha256.Sum256([]byte("abc"))
	tests := []struct {
		name    string
		tool    string
		args    map[string]any
		isError bool
		want    map[string]any // structured content, when checked
		text    string         // error text contains
	}{
		{name: "echo", tool: "echo", args: map[string]any{"text": "hi"}, want: map[string]any{"text": "hi"}},
		{name: "echo without text", tool: "echo", args: map[string]any{}, isError: true, text: "text"},
		{name: "echo wrong type", tool: "echo", args: map[string]any{"text": 3}, isError: true},
		{name: "time utc", tool: "time", args: map[string]any{}, want: map[string]any{"time": "2026-03-01T12:00:00Z", "zone": "UTC", "unix": float64(fixed.Unix())}},
		{name: "time zone", tool: "time", args: map[string]any{"zone": "Europe/Paris"}, want: map[string]any{"time": "2026-03-01T13:00:00+01:00", "zone": "Europe/Paris", "unix": float64(fixed.Unix())}},
		{name: "time unknown zone", tool: "time", args: map[string]any{"zone": "Mars/Olympus"}, isError: true, text: "unknown time zone"},
		{name: "hash", tool: "hash", args: map[string]any{"text": "abc"}, want: map[string]any{"sha256": hex.EncodeToString(sum[:])}},
		{name: "whoami stdio", tool: "whoami", want: map[string]any{"authenticated": false, "subject": "local", "kind": "local", "provider": "", "client_id": "", "roles": []any{}, "scopes": []any{}, "transport": "stdio"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError != tc.isError {
				t.Fatalf("isError = %v, want %v (%s)", res.IsError, tc.isError, resultText(res))
			}
			if tc.text != "" && !strings.Contains(resultText(res), tc.text) {
				t.Errorf("text %q does not contain %q", resultText(res), tc.text)
			}
			if tc.want != nil {
				var got map[string]any
				b, _ := json.Marshal(res.StructuredContent)
				json.Unmarshal(b, &got)
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("structured content (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// identityFixture is a server behind a fake gateway: a signer whose key the
// server trusts.
type identityFixture struct {
	signer *identity.Signer
	srv    *httptest.Server
	s      *Server
}

func newIdentityFixture(t testing.TB, o Options) *identityFixture {
	t.Helper()
	signer, err := identity.NewSigner(identity.SignerOptions{Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	o.IdentityKey = signer.PublicKey()
	o.Audience = testAudience
	o.RequireIdentity = true
	s := newServer(t, &o)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &identityFixture{signer: signer, srv: srv, s: s}
}

// connect connects an SDK client through a stand-in for the gateway that
// signs a fresh identity token for every request's own call.
func (f *identityFixture) connect(t testing.TB, sub string, roles ...string) (*mcp.ClientSession, error) {
	t.Helper()
	id := &policy.Identity{Authenticated: true, Kind: policy.KindJWT, Provider: "corp", Subject: sub, ClientID: "cli", Roles: roles, Scopes: []string{"mcp:tools"}}
	sign := func(method, name string) (string, error) { return f.signer.Sign(id, method, name, "dec-1") }
	tr := &mcp.StreamableClientTransport{Endpoint: f.srv.URL + PathMCP, MaxRetries: -1,
		HTTPClient: &http.Client{Transport: gatewayHeaders{base: http.DefaultTransport, sign: sign}}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(testContext(t), tr, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

func (f *identityFixture) token(t testing.TB, sub string, roles ...string) string {
	t.Helper()
	tok, err := f.signer.Sign(&policy.Identity{Authenticated: true, Kind: policy.KindJWT, Provider: "corp", Subject: sub, ClientID: "cli", Roles: roles, Scopes: []string{"mcp:tools"}}, "tools/call", "whoami", "dec-1")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const initializeBody = `{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

func post(t testing.TB, url string, header http.Header, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestIdentityRequired(t *testing.T) {
	f := newIdentityFixture(t, Options{ResourceMetadata: identity.ResourceMetadata{Resource: testAudience}.JSON(), ResourceMetadataURL: "https://mcp.example.com/.well-known/oauth-protected-resource"})
	sign := func(o identity.SignerOptions, sub string) string {
		s, err := identity.NewSigner(o)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Sign(&policy.Identity{Subject: sub, Kind: policy.KindJWT}, "", "", "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name      string
		token     string
		challenge string
	}{
		{"no header", "", `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`},
		{"garbage", "not-a-jwt", `Bearer error="invalid_token"`},
		{"forged", sign(identity.SignerOptions{Key: otherKey, Audience: testAudience}, "mallory"), `Bearer error="invalid_token"`},
		{"expired", sign(identity.SignerOptions{Audience: testAudience, Now: func() time.Time { return time.Now().Add(-time.Hour) }}, "alice"), `Bearer error="invalid_token"`},
		{"wrong audience", sign(identity.SignerOptions{Audience: "https://other.example.com/mcp"}, "alice"), `Bearer error="invalid_token"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.token != "" {
				h.Set(HeaderIdentity, tc.token)
			}
			resp := post(t, f.srv.URL+PathMCP, h, initializeBody)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401", resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tc.challenge) || !strings.Contains(got, "resource_metadata=") {
				t.Errorf("WWW-Authenticate = %q, want prefix %q and resource_metadata", got, tc.challenge)
			}
			var body struct {
				ID    int `json:"id"`
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.ID != 7 || body.Error.Code != CodeUnauthorized {
				t.Errorf("body = %+v, want id 7, code %d", body, CodeUnauthorized)
			}
		})
	}
	t.Run("good token", func(t *testing.T) {
		cs, err := f.connect(t, "alice", "dev")
		if err != nil {
			t.Fatal(err)
		}
		res, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: "whoami"})
		if err != nil {
			t.Fatal(err)
		}
		var got WhoamiOutput
		b, _ := json.Marshal(res.StructuredContent)
		json.Unmarshal(b, &got)
		got.Expires = ""
		want := WhoamiOutput{Authenticated: true, Subject: "alice", Kind: policy.KindJWT, Provider: "corp", ClientID: "cli", Roles: []string{"dev"}, Scopes: []string{"mcp:tools"}, Transport: "http", SignedMethod: "tools/call", SignedName: "whoami"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("whoami (-want +got):\n%s", diff)
		}
	})
	t.Run("token for another call", func(t *testing.T) {
		// A token the gateway signed for tools/call whoami, replayed for
		// tools/call echo: refused, whatever the policy would say.
		cs, err := connectHTTP(t, f.srv.URL, f.token(t, "alice", "dev"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: "whoami"}); err != nil {
			t.Fatalf("the signed call: %v", err)
		}
		_, err = cs.CallTool(testContext(t), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
		if err == nil || !strings.Contains(err.Error(), "issued for another MCP call") {
			t.Fatalf("replayed token: %v", err)
		}
	})
	t.Run("resource metadata", func(t *testing.T) {
		for _, p := range []string{PathResourceMetadata, PathResourceMetadata + PathMCP} {
			resp, err := http.Get(f.srv.URL + p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), testAudience) {
				t.Errorf("%s: %d %s", p, resp.StatusCode, b)
			}
		}
	})
}

func TestPolicyHTTP(t *testing.T) {
	f := newIdentityFixture(t, Options{Decider: newEngine(t)})
	tests := []struct {
		name   string
		roles  []string
		want   []string
		callOK []string
		denied []string
	}{
		{name: "dev", roles: []string{"dev"}, want: []string{"echo", "whoami"}, callOK: []string{"echo", "whoami"}, denied: []string{"time", "hash"}},
		{name: "admin", roles: []string{"admin"}, want: []string{"echo", "hash", "time", "whoami"}, callOK: []string{"echo", "time", "hash", "whoami"}},
		{name: "nobody", want: nil, denied: []string{"echo"}},
	}
	args := map[string]any{"echo": map[string]any{"text": "x"}, "hash": map[string]any{"text": "x"}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := f.connect(t, "u-"+tc.name, tc.roles...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, toolNames(t, cs)); diff != "" {
				t.Errorf("tools (-want +got):\n%s", diff)
			}
			for _, name := range tc.callOK {
				res, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: name, Arguments: args[name]})
				if err != nil || res.IsError {
					t.Errorf("call %s: %v %v", name, err, res)
				}
			}
			for _, name := range tc.denied {
				_, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: name, Arguments: args[name]})
				var werr *jsonrpc.Error
				if !errors.As(err, &werr) || werr.Code != CodeDenied || !strings.Contains(werr.Message, "role may not call this") {
					t.Errorf("call %s: err = %v, want forbidden with reason", name, err)
				}
			}
		})
	}
}

func TestStdioPolicy(t *testing.T) {
	tests := []struct {
		name  string
		roles []string
		allow bool
	}{
		{name: "local without roles", allow: false},
		{name: "local dev", roles: []string{"dev"}, allow: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, &Options{Decider: newEngine(t), StdioIdentity: policy.Identity{Subject: "local", Roles: tc.roles}})
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			cr, sw := io.Pipe() // server → client
			sr, cw := io.Pipe() // client → server
			done := make(chan error, 1)
			go func() { done <- s.RunStdio(ctx, sr, sw); sw.Close() }()
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "test"}, nil).Connect(ctx, &mcp.IOTransport{Reader: cr, Writer: cw}, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
			if tc.allow {
				if err != nil || resultText(res) != "hi" {
					t.Errorf("echo: %v %v", err, res)
				}
			} else {
				var werr *jsonrpc.Error
				if !errors.As(err, &werr) || werr.Code != CodeDenied {
					t.Errorf("echo: err = %v, want forbidden", err)
				}
			}
			cs.Close()
			cw.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("RunStdio: %v", err)
				}
			case <-ctx.Done():
				t.Fatal("RunStdio did not return")
			}
		})
	}
}

func TestAudit(t *testing.T) {
	var buf bytes.Buffer
	f := newIdentityFixture(t, Options{Decider: newEngine(t), Audit: slog.New(slog.NewJSONHandler(&buf, nil))})
	cs, err := f.connect(t, "alice", "dev")
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]any{"text": "s3cret-value"}
	if _, err := cs.CallTool(testContext(t), &mcp.CallToolParams{Name: "echo", Arguments: args}); err != nil {
		t.Fatal(err)
	}
	cs.CallTool(testContext(t), &mcp.CallToolParams{Name: "time", Arguments: map[string]any{"zone": "s3cret-zone"}})
	cs.CallTool(testContext(t), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{}})
	if strings.Contains(buf.String(), "s3cret") {
		t.Fatalf("audit log holds an argument value:\n%s", buf.String())
	}
	hash := func(v any) string {
		b, _ := json.Marshal(v)
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	// decision_id is the gateway's: the identity token's jti.
	call := func(tool string, args any, outcome, reason string) map[string]any {
		m := map[string]any{"subject": "alice", "client_id": "cli", "provider": "corp", "transport": "http", "decision_id": "dec-1",
			"mcp_method": "tools/call", "mcp_name": tool, "tool": tool, "args_sha256": hash(args), "outcome": outcome, "trace_id": ""}
		if reason != "" {
			m["reason"] = reason
		}
		return m
	}
	want := []map[string]any{
		call("echo", args, "ok", ""),
		call("time", map[string]any{"zone": "s3cret-zone"}, "denied", "role may not call this"),
		call("echo", map[string]any{}, "error", "tool_error"),
	}
	var got []map[string]any
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil {
			t.Fatal(err)
		}
		if _, ok := rec["latency_us"].(float64); !ok {
			t.Errorf("record without latency_us: %v", rec)
		}
		if _, ok := rec["time"].(string); !ok {
			t.Errorf("record without time: %v", rec)
		}
		for _, k := range []string{"latency_us", "time", "level", "msg"} {
			delete(rec, k)
		}
		got = append(got, rec)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}
}

func TestTraceID(t *testing.T) {
	req := &mcp.CallToolRequest{Extra: &mcp.RequestExtra{Header: http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}}
	if got := traceID(context.Background(), req); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("traceID = %q", got)
	}
}

// A verified identity token is remembered until it expires, and only it.
func TestVerifiedIdentityCache(t *testing.T) {
	signer, err := identity.NewSigner(identity.SignerOptions{Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s := newServer(t, &Options{IdentityKey: signer.PublicKey(), Audience: testAudience, RequireIdentity: true, Now: func() time.Time { return now }})
	tok, err := signer.Token(&policy.Identity{Authenticated: true, Kind: policy.KindJWT, Subject: "alice"}, "tools/call", "echo")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if c, err := s.verifyIdentity(tok); err != nil || c.Subject != "alice" {
			t.Fatalf("verification %d: %v %v", i+1, c, err)
		}
	}
	if n := s.verified.Len(); n != 1 {
		t.Errorf("%d cached tokens, want 1", n)
	}
	// A token differing in one byte of its signature is verified, and fails.
	forged := tok[:len(tok)-2] + map[bool]string{true: "A", false: "B"}[tok[len(tok)-2] != 'A'] + tok[len(tok)-1:]
	if _, err := s.verifyIdentity(forged); err == nil {
		t.Error("a forged token passed")
	}
	// Past its expiry the cached token is refused.
	now = now.Add(2 * time.Minute)
	if _, err := s.verifyIdentity(tok); err == nil {
		t.Error("an expired token passed from the cache")
	}
}
