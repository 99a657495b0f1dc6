package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

const testTimeout = 20 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// denyAll denies everything.
type denyAll struct{}

func (denyAll) Eval(context.Context, *policy.Input) (policy.Decision, error) {
	return policy.Decision{Reason: "deny all", Cost: 1}, nil
}

// fixedDecider answers with a fixed decision and records the input.
type fixedDecider struct {
	d   policy.Decision
	err error
	in  *policy.Input
}

func (f *fixedDecider) Eval(_ context.Context, in *policy.Input) (policy.Decision, error) {
	f.in = in
	return f.d, f.err
}

// mcpCheck is a CheckRequest for a POST to /mcp with body and headers.
func mcpCheck(body string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{"content-type": "application/json"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "POST", Path: "/mcp", Host: "mcp.example.com", Headers: h, Body: body,
		}},
	}}
}

const toolCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fs.read","arguments":{"path":"/docs/a.md"}}}`

// denial is the client-visible part of a denied CheckResponse.
type denial struct {
	status  int
	rpcCode int
	id      any
	message string
	headers map[string]string
}

func readDenial(t *testing.T, resp *authv3.CheckResponse) denial {
	t.Helper()
	dr := resp.GetDeniedResponse()
	if dr == nil || resp.GetStatus().GetCode() == int32(codes.OK) {
		t.Fatalf("not a denial: %v", resp)
	}
	d := denial{status: int(dr.GetStatus().GetCode()), headers: map[string]string{}}
	for _, h := range dr.GetHeaders() {
		d.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	var body struct {
		JSONRPC string `json:"jsonrpc"`
		ID      any    `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(dr.GetBody()), &body); err != nil {
		t.Fatalf("denial body %q is not JSON: %v", dr.GetBody(), err)
	}
	if body.JSONRPC != "2.0" {
		t.Errorf("body jsonrpc = %q", body.JSONRPC)
	}
	d.rpcCode, d.id, d.message = body.Error.Code, body.ID, body.Error.Message
	return d
}

func TestCheckAllowMapping(t *testing.T) {
	ctx := testContext(t)
	dec := &fixedDecider{d: policy.Decision{
		Allowed:                 true,
		Reason:                  "ok",
		Headers:                 []policy.Header{{Key: "x-tenant", Value: "acme"}, {Key: "x-tag", Value: "a"}, {Key: "x-tag", Value: "b", Append: true}},
		RequestHeadersToRemove:  []string{"cookie"},
		ResponseHeadersToAdd:    []policy.Header{{Key: "x-served-by", Value: "portcullis"}},
		QueryParametersToSet:    []policy.QueryParameter{{Key: "tenant", Value: "acme"}},
		QueryParametersToRemove: []string{"token"},
		DynamicMetadata:         map[string]any{"tier": "gold", "n": json.Number("3"), "cost": "policy cannot override"},
		Cost:                    4,
	}}
	s := New(dec, nil)
	resp, err := s.Check(ctx, mcpCheck(toolCall, map[string]string{"x-portcullis-subject": "spoofed", "x-portcullis-extra": "spoofed"}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("status = %v", resp.GetStatus())
	}
	ok := resp.GetOkResponse()
	overwrite, appendAction := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	want := &authv3.OkHttpResponse{
		Headers: []*corev3.HeaderValueOption{
			{Header: &corev3.HeaderValue{Key: "x-tenant", Value: "acme"}, AppendAction: overwrite},
			{Header: &corev3.HeaderValue{Key: "x-tag", Value: "a"}, AppendAction: overwrite},
			{Header: &corev3.HeaderValue{Key: "x-tag", Value: "b"}, AppendAction: appendAction},
		},
		// The anonymous caller has no subject: the spoofed headers are removed.
		HeadersToRemove:         []string{"cookie", "x-portcullis-extra", "x-portcullis-subject"},
		QueryParametersToSet:    []*corev3.QueryParameter{{Key: "tenant", Value: "acme"}},
		QueryParametersToRemove: []string{"token"},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{
			{Header: &corev3.HeaderValue{Key: "x-served-by", Value: "portcullis"}, AppendAction: overwrite},
		},
	}
	sortRemovals(ok)
	if diff := cmp.Diff(want, ok, protocmp.Transform()); diff != "" {
		t.Errorf("OkHttpResponse (-want +got):\n%s", diff)
	}
	md := wireMetadata(t, resp).AsMap()
	if id, _ := md[MetaDecisionID].(string); len(id) != 36 {
		t.Errorf("decision_id = %v", md[MetaDecisionID])
	}
	delete(md, MetaDecisionID)
	wantMD := map[string]any{"tier": "gold", "n": 3.0, "cost": 4.0, "mcp_method": "tools/call", "mcp_name": "fs.read"}
	if diff := cmp.Diff(wantMD, md); diff != "" {
		t.Errorf("dynamic metadata (-want +got):\n%s", diff)
	}
	if dec.in.MCP == nil || dec.in.MCP.Tool != "fs.read" || dec.in.Identity.Kind != policy.KindAnonymous {
		t.Errorf("policy input = %+v", dec.in)
	}
}

func sortRemovals(ok *authv3.OkHttpResponse) {
	r := ok.HeadersToRemove
	for i := range r {
		for j := i + 1; j < len(r); j++ {
			if r[j] < r[i] {
				r[i], r[j] = r[j], r[i]
			}
		}
	}
}

func TestCheckDenyMapping(t *testing.T) {
	ctx := testContext(t)
	tests := []struct {
		name     string
		decision policy.Decision
		err      error
		body     string
		want     denial
		grpcCode codes.Code
	}{
		{
			name:     "default 403 with reason and id",
			decision: policy.Decision{Reason: "tool not permitted", Cost: 1},
			body:     toolCall,
			want:     denial{status: 403, rpcCode: CodeForbidden, id: 7.0, message: "tool not permitted", headers: map[string]string{"content-type": "application/json"}},
			grpcCode: codes.PermissionDenied,
		},
		{
			name:     "string id is echoed",
			decision: policy.Decision{Reason: "no"},
			body:     `{"jsonrpc":"2.0","id":"req-1","method":"tools/list"}`,
			want:     denial{status: 403, rpcCode: CodeForbidden, id: "req-1", message: "no", headers: map[string]string{"content-type": "application/json"}},
			grpcCode: codes.PermissionDenied,
		},
		{
			name:     "policy status and headers",
			decision: policy.Decision{Reason: "log in", HTTPStatus: 401, Headers: []policy.Header{{Key: "x-why", Value: "login"}}},
			body:     toolCall,
			want: denial{status: 401, rpcCode: CodeUnauthorized, id: 7.0, message: "log in", headers: map[string]string{
				"content-type":     "application/json",
				"x-why":            "login",
				"www-authenticate": `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`,
			}},
			grpcCode: codes.Unauthenticated,
		},
		{
			name:     "insufficient scope",
			decision: policy.Decision{Reason: "needs admin", Scopes: []string{"mcp:admin", "mcp:tools"}},
			body:     toolCall,
			want: denial{status: 403, rpcCode: CodeForbidden, id: 7.0, message: "needs admin", headers: map[string]string{
				"content-type":     "application/json",
				"www-authenticate": `Bearer error="insufficient_scope", scope="mcp:admin mcp:tools", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource"`,
			}},
			grpcCode: codes.PermissionDenied,
		},
		{
			name:     "policy's own challenge wins",
			decision: policy.Decision{HTTPStatus: 401, Headers: []policy.Header{{Key: "www-authenticate", Value: `Basic realm="x"`}}},
			body:     toolCall,
			want: denial{status: 401, rpcCode: CodeUnauthorized, id: 7.0, message: "denied by policy", headers: map[string]string{
				"content-type": "application/json", "www-authenticate": `Basic realm="x"`,
			}},
			grpcCode: codes.Unauthenticated,
		},
		{
			name:     "empty reason",
			decision: policy.Decision{},
			body:     toolCall,
			want:     denial{status: 403, rpcCode: CodeForbidden, id: 7.0, message: "denied by policy", headers: map[string]string{"content-type": "application/json"}},
			grpcCode: codes.PermissionDenied,
		},
		{
			name:     "eval error is 503 without detail",
			err:      errors.New("secret internal detail"),
			body:     toolCall,
			want:     denial{status: 503, rpcCode: CodeInternalError, id: 7.0, message: "authorization is temporarily unavailable", headers: map[string]string{"content-type": "application/json"}},
			grpcCode: codes.Unavailable,
		},
		{
			name:     "not ready is 503",
			err:      policy.ErrNotReady,
			body:     toolCall,
			want:     denial{status: 503, rpcCode: CodeInternalError, id: 7.0, message: "authorization is temporarily unavailable", headers: map[string]string{"content-type": "application/json"}},
			grpcCode: codes.Unavailable,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(&fixedDecider{d: tc.decision, err: tc.err}, &Options{ResourceMetadataURL: "https://mcp.example.com/.well-known/oauth-protected-resource"})
			resp, err := s.Check(ctx, mcpCheck(tc.body, nil))
			if err != nil {
				t.Fatal(err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != tc.grpcCode {
				t.Errorf("grpc code = %v, want %v", got, tc.grpcCode)
			}
			got := readDenial(t, resp)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(denial{})); diff != "" {
				t.Errorf("denial (-want +got):\n%s", diff)
			}
			if strings.Contains(resp.String(), "secret") {
				t.Error("internal error detail leaked into the response")
			}
			if _, ok := wireMetadata(t, resp).AsMap()[MetaDecisionID]; !ok {
				t.Error("no decision_id in dynamic metadata")
			}
		})
	}
}

func TestCheckPolicyBody(t *testing.T) {
	s := New(&fixedDecider{d: policy.Decision{Body: "custom denial", HTTPStatus: 418}}, nil)
	resp, _ := s.Check(testContext(t), mcpCheck(toolCall, nil))
	dr := resp.GetDeniedResponse()
	if dr.GetBody() != "custom denial" || dr.GetStatus().GetCode() != 418 {
		t.Errorf("denial = %v", dr)
	}
}

// TestCheckRefusals covers requests refused before the policy runs: the
// decider must not be asked, and each refusal has its documented status.
func TestCheckRefusals(t *testing.T) {
	ctx := testContext(t)
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":"` + strings.Repeat("a", 2048) + `"}}}`
	deep := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}}`
	tests := []struct {
		name    string
		req     *authv3.CheckRequest
		status  int
		rpcCode int
		id      any
	}{
		{"no attributes", &authv3.CheckRequest{}, 400, CodeInvalidRequest, nil},
		{"no http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, 400, CodeInvalidRequest, nil},
		{"not JSON", mcpCheck(`{"jsonrpc":`, nil), 400, CodeParseError, nil},
		{"batch", mcpCheck(`[`+toolCall+`]`, nil), 400, CodeInvalidRequest, nil},
		{"header mismatch", mcpCheck(toolCall, map[string]string{"mcp-method": "tools/list"}), 400, CodeHeaderMismatch, 7.0},
		{"name mismatch", mcpCheck(toolCall, map[string]string{"mcp-method": "tools/call", "mcp-name": "echo"}), 400, CodeHeaderMismatch, 7.0},
		{"too large", mcpCheck(big, nil), 413, CodeInvalidRequest, nil},
		{"too deep", mcpCheck(deep, nil), 400, CodeParseError, nil},
		{"wrong content type", mcpCheck(toolCall, map[string]string{"content-type": "text/plain"}), 415, CodeInvalidRequest, nil},
		{"bad path escape", func() *authv3.CheckRequest {
			r := mcpCheck(toolCall, nil)
			r.Attributes.Request.Http.Path = "/mcp%zz"
			return r
		}(), 400, CodeInvalidRequest, nil},
		{"bad query", func() *authv3.CheckRequest {
			r := mcpCheck(toolCall, nil)
			r.Attributes.Request.Http.Path = "/mcp?a=%zz"
			return r
		}(), 400, CodeInvalidRequest, nil},
		{"headers too large", mcpCheck(toolCall, map[string]string{"x-big": strings.Repeat("b", 70<<10)}), 431, CodeInvalidRequest, nil},
		{"raw header not UTF-8", func() *authv3.CheckRequest {
			r := mcpCheck(toolCall, nil)
			r.Attributes.Request.Http.Headers = nil
			r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "content-type", RawValue: []byte("application/json")},
				{Key: "x-name", RawValue: []byte{0xff, 0xfe}},
			}}
			return r
		}(), 400, CodeInvalidRequest, nil},
		{"non-MCP bad JSON", func() *authv3.CheckRequest {
			r := mcpCheck(`{"a":`, nil)
			r.Attributes.Request.Http.Path = "/api"
			return r
		}(), 400, CodeParseError, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec := &fixedDecider{d: policy.Decision{Allowed: true}}
			s := New(dec, &Options{MaxBodyBytes: 1024})
			if tc.status == 431 {
				s = New(dec, nil) // the default limit
			}
			resp, err := s.Check(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if dec.in != nil {
				t.Error("the policy was asked about a refused request")
			}
			got := readDenial(t, resp)
			if got.status != tc.status || got.rpcCode != tc.rpcCode || got.id != tc.id {
				t.Errorf("got status %d code %d id %v (%s), want %d %d %v", got.status, got.rpcCode, got.id, got.message, tc.status, tc.rpcCode, tc.id)
			}
		})
	}
}

// TestHeaderMap reads headers sent as header_map (encode_raw_headers): the
// MCP headers are seen, and the policy finds them under
// attributes.request.http.headers as with a plain headers map.
func TestHeaderMap(t *testing.T) {
	dec := &fixedDecider{d: policy.Decision{Allowed: true}}
	r := mcpCheck(toolCall, nil)
	r.Attributes.Request.Http.Headers = nil
	r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "Content-Type", RawValue: []byte("application/json")},
		{Key: "mcp-method", RawValue: []byte("tools/call")},
		{Key: "x-multi", Value: "a"},
		{Key: "x-multi", Value: "b"},
	}}
	resp, err := New(dec, nil).Check(testContext(t), r)
	if err != nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("Check: %v, %v", resp, err)
	}
	hs := dec.in.Attributes["request"].(map[string]any)["http"].(map[string]any)["headers"].(map[string]any)
	want := map[string]any{"content-type": "application/json", "mcp-method": "tools/call", "x-multi": "a,b"}
	if diff := cmp.Diff(want, hs); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	// The method header was read: a disagreeing one is refused.
	r.Attributes.Request.Http.HeaderMap.Headers[1].RawValue = []byte("tools/list")
	resp, _ = New(dec, nil).Check(testContext(t), r)
	if got := readDenial(t, resp); got.rpcCode != CodeHeaderMismatch {
		t.Errorf("mismatch through header_map: %+v", got)
	}
}

// panicDecider panics: Check must deny, not crash.
type panicDecider struct{}

func (panicDecider) Eval(context.Context, *policy.Input) (policy.Decision, error) { panic("boom") }

func TestCheckRecoversPanic(t *testing.T) {
	resp, err := New(panicDecider{}, nil).Check(testContext(t), mcpCheck(toolCall, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := readDenial(t, resp); got.status != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", got.status)
	}
}

// startServer serves s over gRPC on a loopback listener and returns a
// client connection.
func startServer(t testing.TB, s *Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func testEngine(t testing.TB, paths []string, decision string) *policy.Engine {
	t.Helper()
	e, err := policy.New(context.Background(), &policy.Options{Paths: paths, Decision: decision})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestGRPCEndToEnd runs Check over a real gRPC connection against the real
// policy engine.
func TestGRPCEndToEnd(t *testing.T) {
	ctx := testContext(t)
	conn := startServer(t, New(testEngine(t, []string{"testdata/policy"}, ""), nil))
	client := authv3.NewAuthorizationClient(conn)
	call := func(body string, headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := client.Check(ctx, mcpCheck(body, headers))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tool := func(name string, args string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":` + args + `}}`
	}

	resp := call(tool("fs.read", `{"path":"/docs"}`), nil)
	if resp.GetStatus().GetCode() != 0 {
		t.Fatalf("listed tool denied: %v", resp)
	}
	if h := resp.GetOkResponse().GetHeaders(); len(h) != 1 || h[0].GetHeader().GetValue() != "fs.read" {
		t.Errorf("headers = %v", h)
	}
	if c := wireMetadata(t, resp).GetFields()[MetaCost].GetNumberValue(); c != 2 {
		t.Errorf("cost = %v, want 2", c)
	}
	if got := readDenial(t, call(tool("fs.read", `{"path":"/etc/passwd"}`), nil)); got.status != 403 || got.message != "not permitted" {
		t.Errorf("argument rule: %+v", got)
	}
	if got := readDenial(t, call(tool("shell", `{}`), nil)); got.status != 403 {
		t.Errorf("unlisted tool: %+v", got)
	}
	got := readDenial(t, call(tool("admin.reset", `{}`), nil))
	if !strings.Contains(got.headers["www-authenticate"], `scope="mcp:admin"`) {
		t.Errorf("admin tool: %+v", got)
	}
	if resp := call(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, map[string]string{"mcp-method": "tools/list"}); resp.GetStatus().GetCode() != 0 {
		t.Errorf("tools/list denied: %v", resp)
	}
	if got := readDenial(t, call(`{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, map[string]string{"mcp-method": "tools/call", "mcp-name": "fs.read"})); got.status != 400 || got.rpcCode != CodeHeaderMismatch || got.id != 3.0 {
		t.Errorf("header mismatch: %+v", got)
	}
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v", hc, err)
	}
}

// TestOPAEnvoyPluginPolicy runs a policy written for opa-envoy-plugin
// (package envoy.authz, boolean allow over input.attributes.request.http and
// input.parsed_path) and checks it gives the answers it gives there.
func TestOPAEnvoyPluginPolicy(t *testing.T) {
	ctx := testContext(t)
	s := New(testEngine(t, []string{"testdata/opa-envoy"}, "envoy/authz/allow"), nil)
	req := func(method, path string, headers map[string]string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: path, Host: "shop.example.com", Headers: headers,
			}},
		}}
	}
	for _, tc := range []struct {
		name    string
		req     *authv3.CheckRequest
		allowed bool
	}{
		{"public GET", req("GET", "/api/v1/public/items?limit=5", nil), true},
		{"public POST", req("POST", "/api/v1/public/items", nil), false},
		{"private GET without team", req("GET", "/api/v1/products/p1", nil), false},
		{"private GET with team", req("GET", "/api/v1/products/p1", map[string]string{"x-api-team": "shop"}), true},
		{"dot segments normalized", req("GET", "/api/v1/public/../products/p1", nil), false},
		{"query does not reach parsed_path", req("GET", "/api/v1/products?x=/public", nil), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.Check(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetStatus().GetCode() == 0; got != tc.allowed {
				t.Errorf("allowed = %v, want %v (%v)", got, tc.allowed, resp)
			}
			if !tc.allowed && resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
				t.Errorf("denial status = %v, want 403", resp.GetDeniedResponse().GetStatus())
			}
		})
	}
}

func TestDecisionIDs(t *testing.T) {
	a, b := newDecisionID(), newDecisionID()
	if a == b || len(a) != 36 || a[14] != '4' || !strings.ContainsRune("89ab", rune(a[19])) {
		t.Errorf("ids %q %q", a, b)
	}
}

// asCaller stands in for the identity stage, which is not wired in yet: it
// gives the policy an authenticated caller.
type asCaller struct {
	d  Decider
	id policy.Identity
}

func (a asCaller) Eval(ctx context.Context, in *policy.Input) (policy.Decision, error) {
	in.Identity = a.id
	return a.d.Eval(ctx, in)
}

// BenchmarkCheck measures one Check of an MCP tools/call body, without the
// network: input building, MCP extraction, the Rego decision and the
// CheckResponse. "rbac" is the shipped RBAC example on its allow path (a
// "dev" caller with scope mcp:tools calling fs.read).
func BenchmarkCheck(b *testing.B) {
	ctx := context.Background()
	dev := policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "alice",
		Roles: []string{"dev"}, Scopes: []string{"mcp:tools"}}
	for _, bc := range []struct {
		name     string
		decider  Decider
		allowed  bool
		headers  map[string]string
		toolBody string
	}{
		{"rbac", asCaller{testEngine(b, []string{"../rego/examples/rbac"}, ""), dev}, true, nil, toolCall},
		{"small-policy", testEngine(b, []string{"testdata/policy"}, ""), true, nil, toolCall},
		{"rbac-with-mcp-headers", asCaller{testEngine(b, []string{"../rego/examples/rbac"}, ""), dev}, true,
			map[string]string{"mcp-method": "tools/call", "mcp-name": "fs.read", "mcp-protocol-version": "2025-11-25"}, toolCall},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(bc.decider, nil)
			req := mcpCheck(bc.toolBody, bc.headers)
			resp, _ := s.Check(ctx, req)
			if allowed := resp.GetStatus().GetCode() == 0; allowed != bc.allowed {
				b.Fatalf("allowed = %v: %v", allowed, resp)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
