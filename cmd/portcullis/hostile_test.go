package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/policy"
)

// The hostile-input catalogue: requests an attacker would send, each run
// through the whole chain as `portcullis dev` runs it (the front door
// applying the shipped envoy/envoy.yaml → ext_authz and the rate limit
// service → the MCP server) and, when it is about what ext_authz reads,
// straight to the Check service as Envoy would have sent it (path not
// normalized, so Check's own reading is tested too). Rate-limit tricks go
// straight to ShouldRateLimit, MCP-server tricks straight to the MCP
// server's port (as a request that went around Envoy would).
//
// Each case states its documented answer (README's Responses and Identity
// tables, envoy/doc.go for what the front door answers itself): the HTTP
// status, the JSON-RPC error code of the body (0: the body is not a
// JSON-RPC error), and whether the MCP server was reached. Afterwards
// everything Portcullis emitted — its log at debug level, the audit
// stream, /metrics, every answer's headers and body — is searched for the
// tokens, API keys and argument values the catalogue used, and for the
// identity tokens the MCP server was sent.
//
// Callers: JWTs from an identity provider of the test's own (provider
// "corp", ES256 and RS256), API keys (provider "keys", header x-api-key),
// roles "admin" and "user" of the embedded default policy (a user may call
// whoami, echo and time but not hash). Every case gets its own loopback
// source address (lockout counts per address) and every token its own
// subject (rate limits count per subject).

// via says where a case's request goes.
type via int

const (
	viaDoor  via = iota // the front door; and straight to Check when check is set
	viaCheck            // straight to Check only (what only Envoy could send)
	viaMCP              // straight to the MCP server, around the gateway
	viaRLS              // straight to ShouldRateLimit
)

// answer is a documented answer.
type answer struct {
	status  int  // HTTP status
	code    int  // JSON-RPC error code in the body; 0: none
	reached bool // the MCP server got the request (front door only)
	// challenge, when set, must be in WWW-Authenticate.
	challenge string
}

// rlsAnswer is the documented answer of ShouldRateLimit.
type rlsAnswer struct {
	code    codes.Code // gRPC status code
	overall rlsv3.RateLimitResponse_Code
}

type hostileCase struct {
	category string
	name     string
	via      via
	// setup runs first, with the case's source address.
	setup func(t *testing.T, h *hostileEnv, src net.IP)
	req   func(t *testing.T, h *hostileEnv) rawRequest
	want  answer
	// check is the answer of the same request straight to Check, built as
	// Envoy builds it from what the client sent; checkEdit changes that
	// CheckRequest first.
	check     *answer
	checkEdit func(cr *authv3.CheckRequest)
	// checkErr, for a CheckRequest the gRPC server refuses before Check
	// sees it, is the gRPC code of the refusal.
	checkErr codes.Code
	rls      func(t *testing.T, h *hostileEnv) *rlsv3.RateLimitRequest
	rlsWant  rlsAnswer
	// also makes more assertions on the front door's (or MCP server's)
	// answer.
	also func(t *testing.T, h *hostileEnv, got rawResponse)
}

// hostileEnv is the chain under attack and what the catalogue used and saw.
type hostileEnv struct {
	c         *chain
	idp       *issuer
	auditFile string
	src       sources
	authz     authv3.AuthorizationClient
	rls       rlsv3.RateLimitServiceClient
	identKey  ed25519.PrivateKey // the chain's identity-token key
	adminKey  string             // an API key of role admin
	userKey   string             // an API key of role user
	carry     string             // from a case's setup to its request

	mu      sync.Mutex
	secrets []string // credentials and argument values used
	emitted []string // everything the chain answered
}

func (h *hostileEnv) secret(s string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets = append(h.secrets, s)
	return s
}

func (h *hostileEnv) emit(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.emitted = append(h.emitted, what)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// token is a valid token for a fresh subject of role.
func (h *hostileEnv) token(t *testing.T, role string) string {
	return h.tokenWith(t, jwt.MapClaims{"roles": []string{role}}, time.Hour)
}

// tokenWith is a token of the chain's issuer for its audience and a fresh
// subject, with claims changing or adding to those.
func (h *hostileEnv) tokenWith(t *testing.T, claims jwt.MapClaims, ttl time.Duration) string {
	c := jwt.MapClaims{"iss": h.idp.iss, "aud": h.c.url, "sub": "sub-" + randHex(6), "roles": []string{"user"}, "client_id": "hostile"}
	for k, v := range claims {
		c[k] = v
	}
	return h.secret(h.idp.mint(t, c, ttl))
}

// arg is a distinctive argument value, never to be seen in what Portcullis
// emits.
func (h *hostileEnv) arg() string { return h.secret("argval-" + randHex(8)) }

// identity signs an identity token as the gateway would, with the chain's
// key, for role and one MCP call; now moves its clock.
func (h *hostileEnv) identity(t *testing.T, key ed25519.PrivateKey, aud, role, method, name string, now time.Time) string {
	t.Helper()
	s, err := identity.NewSigner(identity.SignerOptions{Key: key, Audience: aud, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	id := policy.Identity{Authenticated: true, Provider: "corp", Kind: policy.KindJWT, Subject: "sub-" + randHex(6), Roles: []string{role}, Scopes: []string{}}
	tok, err := s.Sign(&id, method, name, "hostile-"+randHex(4))
	if err != nil {
		t.Fatal(err)
	}
	return h.secret(tok)
}

func (h *hostileEnv) validIdentity(t *testing.T, role, method, name string) string {
	return h.identity(t, h.identKey, h.c.url, role, method, name, time.Now())
}

// JSON-RPC bodies.
func toolCall(tool, args string) []byte {
	return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`)
}

func textArg(v string) string { return `{"text":"` + v + `"}` }

// mcpPost is a POST /mcp as an MCP client sends it, with the bearer token
// (none when empty) and more headers.
func mcpPost(tok string, body []byte, more ...[2]string) rawRequest {
	hs := [][2]string{{"Content-Type", "application/json"}, {"Accept", "application/json, text/event-stream"}}
	if tok != "" {
		hs = append(hs, [2]string{"Authorization", "Bearer " + tok})
	}
	return rawRequest{target: "/mcp", header: append(hs, more...), body: body}
}

func hdr(k, v string) [2]string { return [2]string{k, v} }

// wireAccept is the content negotiation of an MCP client, for requests
// written out by hand.
const wireAccept = "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"

// checkRequestFor is the CheckRequest Envoy's ext_authz filter sends for r
// under the shipped configuration, without the normalization the
// connection manager does first: headers lower-cased and repeats joined
// with ",", pseudo-headers, the body as raw_body up to 1 MiB with
// x-envoy-auth-partial-body.
func checkRequestFor(src net.IP, r rawRequest) *authv3.CheckRequest {
	headers := map[string]string{}
	for _, kv := range r.header {
		k := strings.ToLower(kv[0])
		if prev, ok := headers[k]; ok {
			headers[k] = prev + "," + kv[1]
		} else {
			headers[k] = kv[1]
		}
	}
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	host := r.host
	if host == "" {
		host = "mcp.test"
	}
	body := r.body
	partial := false
	if len(body) > 1<<20 {
		body, partial = body[:1<<20], true
	}
	headers[":authority"], headers[":method"], headers[":path"], headers[":scheme"] = host, method, r.target, "http"
	headers["x-envoy-auth-partial-body"] = strconv.FormatBool(partial)
	headers["x-forwarded-proto"] = "http"
	headers["x-request-id"] = "hostile-" + randHex(4)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: sockAddr(src.String(), 40000)},
		Destination: &authv3.AttributeContext_Peer{Address: sockAddr("127.0.0.1", 10000)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: method, Headers: headers, Path: r.target, Host: host, Scheme: "http",
			Protocol: "HTTP/1.1", Size: int64(len(r.body)), RawBody: body,
		}},
	}}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// hs256 signs claims with HMAC-SHA256 keyed by secret, the classic attack
// on verifiers that take the algorithm from the token.
func hs256(t *testing.T, claims jwt.MapClaims, kid string, secret []byte) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// nested is a JSON value n levels deep.
func nested(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }

// randomToken is a b64token of n bytes, distinctive.
func randomToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func startHostile(t *testing.T) *hostileEnv {
	t.Helper()
	p := newIssuer(t)
	h := &hostileEnv{idp: p, auditFile: filepath.Join(t.TempDir(), "audit.jsonl"),
		adminKey: "pk_admin_" + randHex(16), userKey: "pk_user_" + randHex(16)}
	h.secret(h.adminKey)
	h.secret(h.userKey)
	// A bridged upstream advertising tool names with path separators.
	up := newToolsUpstream(t, "ok", "a/b", "../escape", `..\escape`)
	cfg := hostileChainConfig(t, p, []apiKey{{h.adminKey, "key-admin", "admin"}, {h.userKey, "key-user", "user"}},
		"debug", h.auditFile, fmt.Sprintf("mcp: { upstreams: [{ name: up, url: %q }] }\n", up))
	h.c = startChain(t, cfg)
	waitReady(t, h.c.env.admin)
	list := mcpPost("", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), hdr("X-Api-Key", h.adminKey))
	until(t, "the bridged tools are listed", func() bool {
		return bytes.Contains(sendRaw(t, h.c.env.frontDoor, h.src.take(), list).body, []byte(`"up.ok"`))
	})
	k, err := identity.LoadSigningKey(filepath.Join(h.c.env.dir, "identity-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	h.identKey = k
	conn := grpcConn(t, h.c.env.grpc)
	h.authz = authv3.NewAuthorizationClient(conn)
	h.rls = rlsv3.NewRateLimitServiceClient(conn)
	return h
}

func TestHostileCatalogue(t *testing.T) {
	h := startHostile(t)
	cases := hostileCases()
	count := map[string]int{}
	for i, tc := range cases {
		count[tc.category]++
		t.Run(fmt.Sprintf("%02d %s: %s", i, tc.category, tc.name), func(t *testing.T) { h.run(t, tc) })
	}
	t.Run("secrets", func(t *testing.T) { h.scanSecrets(t) })
	t.Logf("%d cases: %v", len(cases), count)
	if len(cases) < 60 {
		t.Errorf("the catalogue has %d cases, want at least 60", len(cases))
	}
}

func (h *hostileEnv) run(t *testing.T, tc hostileCase) {
	src := h.src.take()
	if tc.setup != nil {
		tc.setup(t, h, src)
	}
	switch tc.via {
	case viaRLS:
		h.runRLS(t, tc)
		return
	case viaCheck:
		r := tc.req(t, h)
		if tc.checkErr != codes.OK {
			h.runCheckErr(t, src, r, tc.checkEdit, tc.checkErr)
			return
		}
		h.runCheck(t, src, r, tc.checkEdit, tc.want)
		return
	case viaMCP:
		r := tc.req(t, h)
		got := sendRaw(t, h.c.env.mcp, src, r)
		h.emitResponse(got)
		expect(t, "MCP server", got, tc.want)
		if tc.also != nil {
			tc.also(t, h, got)
		}
		return
	}
	r := tc.req(t, h)
	before := len(h.c.tap.seen())
	got := sendRaw(t, h.c.env.frontDoor, src, r)
	h.emitResponse(got)
	expect(t, "front door", got, tc.want)
	if reached := len(h.c.tap.seen()) > before; reached != tc.want.reached {
		t.Errorf("front door: the MCP server was reached: %v, want %v; body %.300q", reached, tc.want.reached, got.body)
	}
	if tc.also != nil {
		tc.also(t, h, got)
	}
	if tc.check != nil {
		h.runCheck(t, src, r, tc.checkEdit, *tc.check)
	}
}

func (h *hostileEnv) emitResponse(got rawResponse) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", got.status)
	_ = got.header.Write(&b)
	b.Write(got.body)
	h.emit(b.String())
}

func expect(t *testing.T, leg string, got rawResponse, want answer) {
	t.Helper()
	if got.status != want.status {
		t.Errorf("%s: status %d, want %d; body %.300q", leg, got.status, want.status, got.body)
	}
	code, _ := rpcError(got.body)
	if code != want.code {
		t.Errorf("%s: JSON-RPC error %d, want %d; body %.300q", leg, code, want.code, got.body)
	}
	if want.challenge != "" && !strings.Contains(got.header.Get("WWW-Authenticate"), want.challenge) {
		t.Errorf("%s: WWW-Authenticate %q lacks %q", leg, got.header.Get("WWW-Authenticate"), want.challenge)
	}
}

// runCheck sends the CheckRequest for r straight to Check.
func (h *hostileEnv) runCheck(t *testing.T, src net.IP, r rawRequest, edit func(*authv3.CheckRequest), want answer) {
	t.Helper()
	cr := checkRequestFor(src, r)
	if edit != nil {
		edit(cr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.authz.Check(ctx, cr)
	if err != nil {
		t.Fatalf("Check: %v (Check answers every request it can read with a CheckResponse)", err)
	}
	// What reaches the client (a denial, response headers) or the access
	// log (dynamic metadata); not the headers for the upstream, which carry
	// the identity token by design.
	for _, m := range []proto.Message{resp.GetDeniedResponse(), resp.GetDynamicMetadata(), resp.GetStatus(),
		&authv3.OkHttpResponse{ResponseHeadersToAdd: resp.GetOkResponse().GetResponseHeadersToAdd()}} {
		b, _ := protojson.Marshal(m)
		h.emit(string(b))
	}
	got := rawResponse{status: http.StatusOK, header: http.Header{}}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		d := resp.GetDeniedResponse()
		if d == nil {
			t.Fatalf("Check denied without a DeniedHttpResponse: %v", resp)
		}
		got.status = int(d.GetStatus().GetCode())
		got.body = []byte(d.GetBody())
		for _, o := range d.GetHeaders() {
			got.header.Add(o.GetHeader().GetKey(), o.GetHeader().GetValue())
		}
	} else if resp.GetOkResponse() == nil {
		t.Errorf("Check allowed without an OkHttpResponse: %v", resp)
	}
	want.reached = false
	expect(t, "Check", got, want)
}

// runCheckErr sends the CheckRequest for r straight to Check and expects
// the gRPC server to refuse it with code.
func (h *hostileEnv) runCheckErr(t *testing.T, src net.IP, r rawRequest, edit func(*authv3.CheckRequest), code codes.Code) {
	t.Helper()
	cr := checkRequestFor(src, r)
	if edit != nil {
		edit(cr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.authz.Check(ctx, cr)
	if status.Code(err) != code {
		t.Fatalf("Check: %v, %v; want the gRPC error %v", resp, err, code)
	}
	h.emit(err.Error())
}

func (h *hostileEnv) runRLS(t *testing.T, tc hostileCase) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.rls.ShouldRateLimit(ctx, tc.rls(t, h))
	if got := status.Code(err); got != tc.rlsWant.code {
		t.Fatalf("ShouldRateLimit: %v, want code %v", err, tc.rlsWant.code)
	}
	if err != nil {
		h.emit(err.Error())
		return
	}
	b, _ := protojson.Marshal(resp)
	h.emit(string(b))
	if resp.GetOverallCode() != tc.rlsWant.overall {
		t.Errorf("overall code %v, want %v", resp.GetOverallCode(), tc.rlsWant.overall)
	}
}

// scanSecrets looks for every credential and argument value the catalogue
// used, and for every identity token the MCP server was sent, in what the
// chain emitted: its log (stderr), the audit stream, the answers.
func (h *hostileEnv) scanSecrets(t *testing.T) {
	h.mu.Lock()
	ran := len(h.emitted) > 0
	h.mu.Unlock()
	if !ran {
		t.Skip("no case ran")
	}
	for _, hd := range h.c.tap.seen() {
		if v := hd.Get("X-Portcullis-Identity"); v != "" {
			h.secret(v)
		}
	}
	audit, err := os.ReadFile(h.auditFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(audit, []byte(`"msg":"decision"`)) || !bytes.Contains(audit, []byte(`"msg":"tool call"`)) {
		t.Errorf("the audit stream lacks decision or tool call records:\n%.2000s", audit)
	}
	logs := h.c.logText()
	if logs == "" {
		t.Error("the chain logged nothing")
	}
	metrics := h.metrics(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	places := map[string]string{"log": logs, "audit": string(audit), "metrics": metrics}
	for i, e := range h.emitted {
		places[fmt.Sprintf("answer %d", i)] = e
	}
	needles := map[string]string{}
	for _, s := range h.secrets {
		needles[s] = s
		// A JWT's signature alone is as good as the token for matching it.
		if parts := strings.Split(s, "."); len(parts) == 3 && len(parts[2]) >= 16 {
			needles[parts[2]] = s
		}
	}
	for needle, secret := range needles {
		for where, text := range places {
			if strings.Contains(text, needle) {
				i := strings.Index(text, needle)
				t.Errorf("%s holds a secret (%.24s...): ...%s...", where, secret, text[max(0, i-200):min(len(text), i+len(needle)+40)])
			}
		}
	}
	t.Logf("searched %d bytes of log, %d of audit, %d of metrics and %d answers for %d secrets", len(logs), len(audit), len(metrics), len(h.emitted), len(h.secrets))
}

// metrics is the admin server's /metrics page.
func (h *hostileEnv) metrics(t *testing.T) string {
	resp, err := http.Get("http://" + h.c.env.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

// hostileCases is the catalogue.
func hostileCases() []hostileCase {
	const (
		catToken  = "token"
		catHeader = "header"
		catPath   = "path"
		catBody   = "body"
		catRL     = "ratelimit"
		catMCP    = "mcp-server"
	)
	ok := answer{status: 200, reached: true}
	okCheck := &answer{status: 200}
	noCredential := answer{status: 401, code: -32001, challenge: `Bearer resource_metadata=`}
	invalidToken := answer{status: 401, code: -32001, challenge: `error="invalid_token"`}
	invalidRequest := answer{status: 400, code: -32600, challenge: `error="invalid_request"`}
	forbidden := answer{status: 403, code: -32003}
	parseError := answer{status: 400, code: -32700}
	badRPC := answer{status: 400, code: -32600}
	mismatch := answer{status: 400, code: -32020}
	envoyLocal := func(status int) answer { return answer{status: status} } // Envoy's own reply: empty body
	ptr := func(a answer) *answer { return &a }

	whoami := toolCall("whoami", "{}")
	// tokenReq is a whoami call with an Authorization header value.
	authReq := func(value string) func(*testing.T, *hostileEnv) rawRequest {
		return func(_ *testing.T, _ *hostileEnv) rawRequest {
			r := mcpPost("", whoami)
			r.header = append(r.header, hdr("Authorization", value))
			return r
		}
	}
	userCall := func(tool string) func(*testing.T, *hostileEnv) rawRequest {
		return func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), toolCall(tool, textArg(h.arg())))
		}
	}
	withBody := func(role string, body func(h *hostileEnv) []byte, more ...[2]string) func(*testing.T, *hostileEnv) rawRequest {
		return func(t *testing.T, h *hostileEnv) rawRequest { return mcpPost(h.token(t, role), body(h), more...) }
	}
	atPath := func(target string) func(*testing.T, *hostileEnv) rawRequest {
		return func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), whoami)
			r.target = target
			return r
		}
	}
	// direct is a request to the MCP server with an identity token.
	direct := func(ident func(t *testing.T, h *hostileEnv) string, body []byte, more ...[2]string) func(*testing.T, *hostileEnv) rawRequest {
		return func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost("", body, more...)
			if ident != nil {
				r.header = append(r.header, hdr("X-Portcullis-Identity", ident(t, h)))
			}
			return r
		}
	}
	signedFor := func(role, tool string) func(t *testing.T, h *hostileEnv) string {
		return func(t *testing.T, h *hostileEnv) string { return h.validIdentity(t, role, "tools/call", tool) }
	}
	descriptor := func(kv ...string) *ratelimitcommonv3.RateLimitDescriptor {
		d := &ratelimitcommonv3.RateLimitDescriptor{}
		for i := 0; i+1 < len(kv); i += 2 {
			d.Entries = append(d.Entries, &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
		}
		return d
	}
	// failFrom sends n requests with a bad token from src.
	failFrom := func(t *testing.T, h *hostileEnv, src net.IP, tok string, i int) {
		r := mcpPost(tok, whoami, hdr("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i+1)))
		got := sendRaw(t, h.c.env.frontDoor, src, r)
		h.emitResponse(got)
		if got.status != http.StatusUnauthorized {
			t.Fatalf("bad token %d: status %d, want 401", i+1, got.status)
		}
	}

	return []hostileCase{
		// Token attacks.
		{category: catToken, name: "no credential", req: func(*testing.T, *hostileEnv) rawRequest { return mcpPost("", whoami) },
			want: noCredential, check: ptr(noCredential),
			also: func(t *testing.T, _ *hostileEnv, got rawResponse) {
				if c := got.header.Get("WWW-Authenticate"); strings.Contains(c, "error=") {
					t.Errorf("no credential: the challenge %q names an error", c)
				}
			}},
		{category: catToken, name: "valid token (control)", req: userCall("whoami"), want: ok, check: okCheck},
		{category: catToken, name: "alg none", req: func(t *testing.T, h *hostileEnv) rawRequest {
			tok := h.secret(b64json(map[string]string{"alg": "none", "typ": "JWT"}) + "." +
				b64json(jwt.MapClaims{"iss": h.idp.iss, "aud": h.c.url, "sub": "mallory", "roles": []string{"admin"}, "exp": time.Now().Add(time.Hour).Unix()}) + ".")
			return mcpPost(tok, toolCall("hash", textArg(h.arg())))
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "HS256 keyed with the RSA public key", req: func(t *testing.T, h *hostileEnv) rawRequest {
			der, _ := x509.MarshalPKIXPublicKey(&h.idp.rsa.PublicKey)
			pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			tok := h.secret(hs256(t, jwt.MapClaims{"iss": h.idp.iss, "aud": h.c.url, "sub": "mallory", "roles": []string{"admin"},
				"exp": time.Now().Add(time.Hour).Unix()}, idpRSAKeyID, pemKey))
			return mcpPost(tok, toolCall("hash", textArg(h.arg())))
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "expired", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.tokenWith(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}, time.Hour), whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "not yet valid (nbf in an hour)", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.tokenWith(t, jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}, 2*time.Hour), whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "issued in the future (iat in an hour)", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.tokenWith(t, jwt.MapClaims{"iat": time.Now().Add(time.Hour).Unix()}, 2*time.Hour), whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "wrong audience", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.tokenWith(t, jwt.MapClaims{"aud": "https://other.example/mcp"}, time.Hour), whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "wrong issuer", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.tokenWith(t, jwt.MapClaims{"iss": "https://evil.example"}, time.Hour), whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "unknown kid", req: func(t *testing.T, h *hostileEnv) rawRequest {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tok := h.secret(mintWith(t, k, "ec-9", jwt.MapClaims{"iss": h.idp.iss, "aud": h.c.url, "sub": "mallory", "roles": []string{"admin"}}, time.Hour))
			return mcpPost(tok, whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "known kid, another key", req: func(t *testing.T, h *hostileEnv) rawRequest {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tok := h.secret(mintWith(t, k, idpECKeyID, jwt.MapClaims{"iss": h.idp.iss, "aud": h.c.url, "sub": "mallory", "roles": []string{"admin"}}, time.Hour))
			return mcpPost(tok, whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "claims edited after signing (role user → admin)", req: func(t *testing.T, h *hostileEnv) rawRequest {
			parts := strings.Split(h.token(t, "user"), ".")
			var c map[string]any
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			_ = json.Unmarshal(raw, &c)
			c["roles"] = []string{"admin"}
			return mcpPost(h.secret(parts[0]+"."+b64json(c)+"."+parts[2]), toolCall("hash", textArg(h.arg())))
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "garbage within the token syntax", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.secret("garbage"+randomToken(24)+".x.y"), whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "garbage outside the token syntax", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.secret("{garbage<"+randHex(8)+">}"), whoami)
		}, want: invalidRequest, check: ptr(invalidRequest)},
		{category: catToken, name: "token over 16 KiB", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.secret(randomToken(17<<10)), whoami)
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "token of 64 KiB (headers over the limit)", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.secret(randomToken(64<<10)), whoami)
		}, want: answer{status: 431, code: -32600}, check: ptr(answer{status: 431, code: -32600})},
		{category: catToken, name: "two Authorization headers", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), whoami, hdr("Authorization", "Bearer "+h.token(t, "admin")))
		}, want: invalidRequest, check: ptr(invalidRequest)},
		{category: catToken, name: "Bearer with no token", req: authReq("Bearer "), want: invalidRequest, check: ptr(invalidRequest)},
		{category: catToken, name: "lower-case bearer scheme", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return authReq("bearer "+h.token(t, "user"))(t, h)
		}, want: ok, check: okCheck},
		{category: catToken, name: "token in the query string only", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost("", whoami)
			r.target = "/mcp?access_token=" + h.token(t, "admin")
			return r
		}, want: noCredential, check: ptr(noCredential)},
		{category: catToken, name: "Basic credentials (no basic provider)", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return authReq("Basic "+h.secret(base64.StdEncoding.EncodeToString([]byte("admin:pw-"+randHex(6)))))(nil, h)
		}, want: noCredential, check: ptr(noCredential)},
		{category: catToken, name: "unknown API key", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost("", whoami, hdr("X-Api-Key", h.secret("pk_admin_"+randHex(16))))
		}, want: invalidToken, check: ptr(invalidToken)},
		{category: catToken, name: "API key of a user calling an admin tool", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost("", toolCall("hash", textArg(h.arg())), hdr("X-Api-Key", h.userKey))
		}, want: forbidden, check: ptr(forbidden)},
		{category: catToken, name: "API key of an admin (control)", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost("", toolCall("hash", textArg(h.arg())), hdr("X-Api-Key", h.adminKey))
		}, want: ok, check: okCheck},
		{category: catToken, name: "locked out: 5 bad tokens from one address (X-Forwarded-For rotated), then a good one",
			setup: func(t *testing.T, h *hostileEnv, src net.IP) {
				for i := range 5 {
					failFrom(t, h, src, h.secret("bad"+randomToken(20)), i)
				}
			},
			req:  func(t *testing.T, h *hostileEnv) rawRequest { return mcpPost(h.token(t, "user"), whoami) },
			want: answer{status: 429, code: -32029}, check: ptr(answer{status: 429, code: -32029}),
			also: func(t *testing.T, _ *hostileEnv, got rawResponse) {
				if got.header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
			}},
		{category: catToken, name: "locked out: one bad token from 5 addresses, then from a sixth",
			setup: func(t *testing.T, h *hostileEnv, _ net.IP) {
				tok := h.tokenWith(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}, time.Hour)
				for i := range 5 {
					failFrom(t, h, h.src.take(), tok, i)
				}
				h.carry = tok
			},
			req:  func(_ *testing.T, h *hostileEnv) rawRequest { return mcpPost(h.carry, whoami) },
			want: answer{status: 429, code: -32029}, check: ptr(answer{status: 429, code: -32029})},

		// Header tricks.
		{category: catHeader, name: "mixed-case Authorization", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost("", whoami)
			r.header = append(r.header, hdr("AuThOrIzAtIoN", "Bearer "+h.token(t, "user")))
			return r
		}, want: ok, check: okCheck},
		{category: catHeader, name: "Authorization twice, differently cased", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), whoami, hdr("AUTHORIZATION", "Bearer "+h.token(t, "admin")))
		}, want: invalidRequest, check: ptr(invalidRequest)},
		{category: catHeader, name: "x-portcullis-subject and -roles spoofed by a user calling hash", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), toolCall("hash", textArg(h.arg())),
				hdr("X-Portcullis-Subject", "root"), hdr("X-Portcullis-Roles", "admin"), hdr("x-portcullis-provider", "keys"))
		}, want: forbidden, check: ptr(forbidden)},
		{category: catHeader, name: "x-portcullis-identity forged on an allowed call", req: func(t *testing.T, h *hostileEnv) rawRequest {
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			forged := h.identity(t, k, h.c.url, "admin", "tools/call", "whoami", time.Now())
			return mcpPost(h.token(t, "user"), whoami, hdr("X-Portcullis-Identity", forged), hdr("X-Portcullis-Subject", "root"))
		}, want: ok, check: okCheck,
			also: func(t *testing.T, h *hostileEnv, got rawResponse) {
				seen := h.c.tap.seen()
				last := seen[len(seen)-1]
				if ids := last.Values("X-Portcullis-Identity"); len(ids) != 1 {
					t.Fatalf("the MCP server got %d identity tokens", len(ids))
				}
				claims, err := identity.VerifyIdentityToken(last.Get("X-Portcullis-Identity"), h.identKey.Public().(ed25519.PublicKey), h.c.url, time.Now())
				if err != nil || slices.Contains(claims.Roles, "admin") || last.Get("X-Portcullis-Subject") == "root" {
					t.Errorf("the MCP server got a spoofed identity: %v, %+v, subject %q", err, claims, last.Get("X-Portcullis-Subject"))
				}
				if bytes.Contains(got.body, []byte(`"admin"`)) {
					t.Errorf("whoami answered an admin: %s", got.body)
				}
			}},
		{category: catHeader, name: "header name with an underscore (x_portcullis_roles)", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), toolCall("hash", textArg(h.arg())), hdr("x_portcullis_roles", "admin"))
		}, want: envoyLocal(400), check: ptr(forbidden)},
		{category: catHeader, name: "one header of 70 KiB", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), whoami, hdr("X-Pad", strings.Repeat("p", 70<<10)))
		}, want: answer{status: 431, code: -32600}, check: ptr(answer{status: 431, code: -32600})},
		{category: catHeader, name: "1200 headers adding up to over 64 KiB", req: func(t *testing.T, h *hostileEnv) rawRequest {
			var more [][2]string
			for i := range 1200 {
				more = append(more, hdr(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("q", 48)))
			}
			return mcpPost(h.token(t, "user"), whoami, more...)
		}, want: answer{status: 431, code: -32600}, check: ptr(answer{status: 431, code: -32600})},
		{category: catHeader, name: "header value not UTF-8", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), whoami, hdr("X-Note", "caf\xe9"))
		},
			// The shipped ext_authz sends headers as proto strings, which
			// cannot hold it: Envoy fails the check and answers
			// status_on_error (503), never an allow. With
			// encode_raw_headers, Check reads it and answers 400.
			want: envoyLocal(503), check: ptr(badRPC),
			checkEdit: func(cr *authv3.CheckRequest) {
				hr := cr.GetAttributes().GetRequest().GetHttp()
				hm := &corev3.HeaderMap{}
				for k, v := range hr.GetHeaders() {
					hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
				}
				hr.Headers, hr.HeaderMap = nil, hm
			}},
		{category: catHeader, name: "x-envoy-auth-partial-body: true from the client", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), toolCall("hash", textArg(h.arg())), hdr("X-Envoy-Auth-Partial-Body", "true"))
		}, want: forbidden, check: ptr(forbidden)},
		{category: catHeader, name: "Mcp-Method says tools/list, the body calls hash", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), toolCall("hash", textArg(h.arg())), hdr("Mcp-Method", "tools/list"))
		}, want: mismatch, check: ptr(mismatch)},
		{category: catHeader, name: "Mcp-Name says whoami, the body calls hash", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), toolCall("hash", textArg(h.arg())), hdr("Mcp-Method", "tools/call"), hdr("Mcp-Name", "whoami"))
		}, want: mismatch, check: ptr(mismatch)},
		{category: catHeader, name: "Mcp-Name repeated (whoami, hash)", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), toolCall("whoami", "{}"), hdr("Mcp-Name", "whoami"), hdr("Mcp-Name", "hash"))
		}, want: mismatch, check: ptr(mismatch)},
		{category: catHeader, name: "Host with a trailing dot", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), whoami)
			r.host = "mcp.test."
			return r
		}, want: ok, check: okCheck},
		{category: catHeader, name: "obs-fold continuation line", req: func(t *testing.T, h *hostileEnv) rawRequest {
			body := string(whoami)
			return rawRequest{wire: "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nConnection: close\r\n" + wireAccept + "Authorization: Bearer\r\n " +
				h.token(t, "user") + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body}
		},
			// The front door's HTTP server replaces the fold with a space
			// (RFC 9112 section 5.2 allows that or a 400): ext_authz checks
			// the value the upstream gets.
			want: ok},
		{category: catHeader, name: "Content-Length with Transfer-Encoding (smuggling)", req: func(t *testing.T, h *hostileEnv) rawRequest {
			body := string(whoami)
			smuggled := string(toolCall("hash", textArg(h.arg())))
			return rawRequest{wire: "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nConnection: close\r\n" + wireAccept + "Authorization: Bearer " +
				h.token(t, "user") + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" +
				fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) + smuggled}
		},
			// Transfer-Encoding wins (RFC 9112 section 6.3): the chunked body
			// is checked and forwarded; the bytes after it are not a body.
			want: ok, also: func(t *testing.T, _ *hostileEnv, got rawResponse) {
				if !bytes.Contains(got.body, []byte(`signed_mcp_name\":\"whoami`)) {
					t.Errorf("not the whoami answer: %s", got.body)
				}
			}},

		// Path tricks: the policy sees the normalized path.
		{category: catPath, name: "//mcp", req: atPath("//mcp"), want: ok, check: okCheck},
		{category: catPath, name: "/mcp/../admin", req: atPath("/mcp/../admin"), want: envoyLocal(404), check: ptr(forbidden)},
		{category: catPath, name: "/admin/../mcp", req: atPath("/admin/../mcp"), want: ok, check: okCheck},
		{category: catPath, name: "/%2e%2e/mcp", req: atPath("/%2e%2e/mcp"), want: ok, check: okCheck},
		{category: catPath, name: "/%6Dcp (escaped unreserved characters)", req: atPath("/%6Dcp"), want: ok, check: okCheck},
		{category: catPath, name: "/mcp%2F", req: atPath("/mcp%2F"), want: envoyLocal(400), check: okCheck},
		{category: catPath, name: "/x%2F..%2Fmcp", req: atPath("/x%2F..%2Fmcp"), want: envoyLocal(400), check: ptr(forbidden)},
		{category: catPath, name: "/mcp;x=1", req: atPath("/mcp;x=1"), want: envoyLocal(404), check: ptr(forbidden)},
		{category: catPath, name: "/mcp%00", req: atPath("/mcp%00"), want: envoyLocal(404), check: ptr(badRPC)},
		{category: catPath, name: `/x\..\mcp (backslashes)`, req: atPath(`/x\..\mcp`), want: ok, check: ptr(forbidden)},
		{category: catPath, name: "/MCP", req: atPath("/MCP"), want: envoyLocal(404), check: ptr(forbidden)},
		{category: catPath, name: "/mcp/", req: atPath("/mcp/"), want: envoyLocal(404), check: okCheck},
		{category: catPath, name: "/mcp?x=1&x=2", req: atPath("/mcp?x=1&x=2"), want: ok, check: okCheck},
		{category: catPath, name: "/mcp?%zz (bad query escape)", req: atPath("/mcp?%zz"), want: badRPC, check: ptr(badRPC)},
		{category: catPath, name: "public metadata route/../../mcp without a token", req: func(*testing.T, *hostileEnv) rawRequest {
			r := mcpPost("", whoami)
			r.target = "/.well-known/oauth-protected-resource/../../mcp"
			return r
		}, want: noCredential, check: ptr(noCredential)},
		{category: catPath, name: "public metadata route, POST tools/call without a token", req: func(*testing.T, *hostileEnv) rawRequest {
			r := mcpPost("", toolCall("whoami", "{}"))
			r.target = "/.well-known/oauth-protected-resource/mcp"
			return r
		}, want: answer{status: 405, reached: true}},
		{category: catPath, name: "public metadata route prefix extended (-x/mcp) without a token", req: func(*testing.T, *hostileEnv) rawRequest {
			r := mcpPost("", toolCall("whoami", "{}"))
			r.target = "/.well-known/oauth-protected-resource-x/mcp"
			return r
		}, want: answer{status: 404, reached: true}},
		{category: catPath, name: "absolute-form request target", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), toolCall("hash", textArg(h.arg())))
			r.target = "http://evil.test/mcp"
			return r
		}, want: forbidden},

		// Body tricks.
		{category: catBody, name: "batch array of one hash call", req: withBody("user", func(h *hostileEnv) []byte {
			return []byte("[" + string(toolCall("hash", textArg(h.arg()))) + "]")
		}), want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: "batch array of allowed calls", req: withBody("user", func(*hostileEnv) []byte {
			return []byte("[" + string(whoami) + "," + string(whoami) + "]")
		}), want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: "duplicate params.name (whoami, then hash)", req: withBody("user", func(h *hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","name":"hash","arguments":` + textArg(h.arg()) + `}}`)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "duplicate params.name (hash, then whoami)", req: withBody("user", func(h *hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"hash","name":"whoami","arguments":` + textArg(h.arg()) + `}}`)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: `duplicate name hidden by an escape ("n\u0061me")`, req: withBody("user", func(h *hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","n\u0061me":"hash","arguments":` + textArg(h.arg()) + `}}`)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "duplicate method (tools/list, then tools/call)", req: withBody("user", func(h *hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/list","method":"tools/call","params":{"name":"hash","arguments":` + textArg(h.arg()) + `}}`)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "duplicate params objects", req: withBody("user", func(h *hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami"},"params":{"name":"hash","arguments":` + textArg(h.arg()) + `}}`)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "two messages back to back", req: withBody("user", func(h *hostileEnv) []byte {
			return append(append([]byte{}, whoami...), toolCall("hash", textArg(h.arg()))...)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "arguments nested 100 deep", req: withBody("user", func(*hostileEnv) []byte {
			return toolCall("echo", `{"text":"x","deep":`+nested(100)+`}`)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "arguments nested 20000 deep", req: withBody("user", func(*hostileEnv) []byte {
			return toolCall("echo", `{"text":"x","deep":`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`}`)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "invalid UTF-8 in an argument", req: withBody("user", func(*hostileEnv) []byte {
			return toolCall("echo", textArg("caf\xe9"))
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: `unpaired surrogate in the tool name ("hash\ud800")`, req: withBody("admin", func(*hostileEnv) []byte {
			return toolCall(`hash\ud800`, textArg("x"))
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "UTF-8 byte order mark", req: withBody("user", func(*hostileEnv) []byte {
			return append([]byte("\xef\xbb\xbf"), whoami...)
		}), want: parseError, check: ptr(parseError)},
		{category: catBody, name: "10 MB body (a hash call)", req: withBody("user", func(h *hostileEnv) []byte {
			return toolCall("hash", `{"text":"`+h.arg()+`","pad":"`+strings.Repeat("z", 10<<20)+`"}`)
		}), want: answer{status: 413, code: -32003}, check: ptr(answer{status: 413, code: -32003})},
		{category: catBody, name: "10 MB body (a whoami call by an admin)", req: withBody("admin", func(*hostileEnv) []byte {
			return toolCall("whoami", `{"pad":"`+strings.Repeat("z", 10<<20)+`"}`)
		}), want: answer{status: 413, code: -32003}, check: ptr(answer{status: 413, code: -32003})},
		{category: catBody, name: "2 MiB body sent whole to Check", via: viaCheck, req: withBody("admin", func(*hostileEnv) []byte {
			return toolCall("whoami", `{"pad":"`+strings.Repeat("z", 2<<20)+`"}`)
		}), checkEdit: func(cr *authv3.CheckRequest) {
			hr := cr.GetAttributes().GetRequest().GetHttp()
			hr.RawBody = toolCall("whoami", `{"pad":"`+strings.Repeat("z", 2<<20)+`"}`)
			hr.Headers["x-envoy-auth-partial-body"] = "false"
		}, want: answer{status: 413, code: -32600}},
		// Over the gRPC server's 4 MiB receive limit: refused before Check
		// (Envoy answers status_on_error, 503 in the shipped bootstrap;
		// with_request_body.max_request_bytes must stay below it).
		{category: catBody, name: "10 MB body sent whole to Check", via: viaCheck, req: withBody("admin", func(*hostileEnv) []byte {
			return toolCall("whoami", "{}")
		}), checkEdit: func(cr *authv3.CheckRequest) {
			hr := cr.GetAttributes().GetRequest().GetHttp()
			hr.RawBody = toolCall("whoami", `{"pad":"`+strings.Repeat("z", 10<<20)+`"}`)
		}, checkErr: codes.ResourceExhausted},
		{category: catBody, name: "truncated body (Content-Length larger than sent)", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), whoami)
			r.declared = len(whoami) + 100
			return r
		}, want: envoyLocal(400)},
		{category: catBody, name: "partial body without metadata or headers", via: viaCheck, req: withBody("user", func(h *hostileEnv) []byte {
			return toolCall("hash", textArg(h.arg()))
		}), checkEdit: func(cr *authv3.CheckRequest) {
			hr := cr.GetAttributes().GetRequest().GetHttp()
			hr.RawBody = hr.RawBody[:40]
			hr.Headers["x-envoy-auth-partial-body"] = "true"
		}, want: answer{status: 413, code: -32003}},
		{category: catBody, name: "partial body, Mcp-Method/Mcp-Name naming whoami", via: viaCheck, req: withBody("user", func(h *hostileEnv) []byte {
			return toolCall("hash", textArg(h.arg()))
		}, hdr("Mcp-Method", "tools/call"), hdr("Mcp-Name", "whoami")), checkEdit: func(cr *authv3.CheckRequest) {
			hr := cr.GetAttributes().GetRequest().GetHttp()
			hr.RawBody = hr.RawBody[:40]
			hr.Headers["x-envoy-auth-partial-body"] = "true"
		}, want: answer{status: 413, code: -32003}},
		{category: catBody, name: "content type text/plain", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), whoami)
			r.header[0] = hdr("Content-Type", "text/plain")
			return r
		}, want: answer{status: 415, code: -32600}, check: ptr(answer{status: 415, code: -32600})},
		{category: catBody, name: "content type form", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), whoami)
			r.header[0] = hdr("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, want: answer{status: 415, code: -32600}, check: ptr(answer{status: 415, code: -32600})},
		{category: catBody, name: "no content type", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), whoami)
			r.header = r.header[1:]
			return r
		}, want: answer{status: 415, code: -32600}, check: ptr(answer{status: 415, code: -32600})},
		{category: catBody, name: "empty POST", req: withBody("user", func(*hostileEnv) []byte { return []byte{} }),
			want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: "empty POST with Mcp-Method/Mcp-Name naming whoami", req: withBody("user", func(*hostileEnv) []byte { return []byte{} },
			hdr("Mcp-Method", "tools/call"), hdr("Mcp-Name", "whoami")), want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: "JSON null", req: withBody("user", func(*hostileEnv) []byte { return []byte("null") }),
			want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: `jsonrpc "1.0"`, req: withBody("user", func(*hostileEnv) []byte {
			return bytes.Replace(whoami, []byte(`"2.0"`), []byte(`"1.0"`), 1)
		}), want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: "id is an object", req: withBody("user", func(*hostileEnv) []byte {
			return bytes.Replace(whoami, []byte(`"id":7`), []byte(`"id":{"a":1}`), 1)
		}), want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: "id of 2^63", req: withBody("user", func(*hostileEnv) []byte {
			return bytes.Replace(whoami, []byte(`"id":7`), []byte(`"id":9223372036854775808`), 1)
		}), want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: "tool name is a number", req: withBody("user", func(*hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":42}}`)
		}), want: badRPC, check: ptr(badRPC)},
		{category: catBody, name: `NUL in the tool name ("whoami\u0000")`, req: withBody("user", func(*hostileEnv) []byte {
			return toolCall(`whoami\u0000`, "{}")
		}), want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: "tool name with a Cyrillic a (hаsh)", req: withBody("user", func(h *hostileEnv) []byte {
			return toolCall("h\u0430sh", textArg(h.arg()))
		}), want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: "tool name in upper case (HASH)", req: withBody("user", func(h *hostileEnv) []byte {
			return toolCall("HASH", textArg(h.arg()))
		}), want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: "path traversal in the arguments (admin)", req: withBody("admin", func(*hostileEnv) []byte {
			return toolCall("hash", textArg("../../etc/passwd"))
		}), want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: "path traversal in the tool name (admin)", req: withBody("admin", func(*hostileEnv) []byte {
			return toolCall("../../etc/passwd", "{}")
		}), want: forbidden, check: ptr(forbidden)},

		{category: catBody, name: "a notification (no id) calling hash", req: withBody("user", func(h *hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"hash","arguments":` + textArg(h.arg()) + `}}`)
		}), want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: `method "tools/call " (trailing space)`, req: withBody("user", func(h *hostileEnv) []byte {
			return bytes.Replace(toolCall("hash", textArg(h.arg())), []byte(`"tools/call"`), []byte(`"tools/call "`), 1)
		}), want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: "a JSON-RPC response posted by the client", req: withBody("user", func(*hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"result":{}}`)
		}), want: answer{status: 202, reached: true}, check: okCheck},
		{category: catBody, name: "GET /mcp with Mcp-Method/Mcp-Name naming hash", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), nil, hdr("Mcp-Method", "tools/call"), hdr("Mcp-Name", "hash"))
			r.method = http.MethodGet
			return r
		}, want: mismatch, check: ptr(mismatch)},
		{category: catBody, name: "GET /mcp with Mcp-Method/Mcp-Name naming whoami", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), nil, hdr("Mcp-Method", "tools/call"), hdr("Mcp-Name", "whoami"))
			r.method = http.MethodGet
			return r
		}, want: mismatch, check: ptr(mismatch)},
		{category: catBody, name: "PUT /mcp with a hash call in the body", req: func(t *testing.T, h *hostileEnv) rawRequest {
			r := mcpPost(h.token(t, "user"), toolCall("hash", textArg(h.arg())))
			r.method = http.MethodPut
			return r
		}, want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: "resources/read with a path traversal (admin)", req: withBody("admin", func(*hostileEnv) []byte {
			return []byte(`{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"file:///srv/../../etc/passwd"}}`)
		}), want: forbidden, check: ptr(forbidden)},
		{category: catBody, name: "GET /mcp (the SSE stream) without a token", req: func(*testing.T, *hostileEnv) rawRequest {
			r := mcpPost("", nil)
			r.method = http.MethodGet
			return r
		}, want: noCredential, check: ptr(noCredential)},

		// Rate-limit tricks, straight to ShouldRateLimit (domain mcp).
		{category: catRL, name: "descriptor hits_addend of 2^64-1", via: viaRLS, rls: func(_ *testing.T, h *hostileEnv) *rlsv3.RateLimitRequest {
			d := descriptor("subject", "rl-"+randHex(6))
			d.HitsAddend = wrapperspb.UInt64(math.MaxUint64)
			return &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{d}}
		}, rlsWant: rlsAnswer{codes.OK, rlsv3.RateLimitResponse_OVER_LIMIT}},
		{category: catRL, name: "an overflowing request uses up no quota", via: viaRLS, rls: func(t *testing.T, h *hostileEnv) *rlsv3.RateLimitRequest {
			subject := "rl-" + randHex(6)
			d := descriptor("subject", subject, "tool", "echo")
			d.HitsAddend = wrapperspb.UInt64(math.MaxUint64)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := h.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{d}})
			if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Fatalf("overflowing request: %v, %v", resp, err)
			}
			return &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{descriptor("subject", subject, "tool", "echo")}}
		}, rlsWant: rlsAnswer{codes.OK, rlsv3.RateLimitResponse_OK}},
		{category: catRL, name: "request hits_addend of 2^32-1", via: viaRLS, rls: func(*testing.T, *hostileEnv) *rlsv3.RateLimitRequest {
			return &rlsv3.RateLimitRequest{Domain: "mcp", HitsAddend: math.MaxUint32,
				Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{descriptor("client_id", "rl-"+randHex(6))}}
		}, rlsWant: rlsAnswer{codes.OK, rlsv3.RateLimitResponse_OVER_LIMIT}},
		{category: catRL, name: "a descriptor of 1000 entries", via: viaRLS, rls: func(*testing.T, *hostileEnv) *rlsv3.RateLimitRequest {
			var kv []string
			for i := range 1000 {
				kv = append(kv, "subject", fmt.Sprint(i))
			}
			return &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{descriptor(kv...)}}
		}, rlsWant: rlsAnswer{code: codes.InvalidArgument}},
		{category: catRL, name: "1000 descriptors", via: viaRLS, rls: func(*testing.T, *hostileEnv) *rlsv3.RateLimitRequest {
			r := &rlsv3.RateLimitRequest{Domain: "mcp"}
			for i := range 1000 {
				r.Descriptors = append(r.Descriptors, descriptor("subject", fmt.Sprint("rl-", i)))
			}
			return r
		}, rlsWant: rlsAnswer{code: codes.InvalidArgument}},
		{category: catRL, name: "unknown domain", via: viaRLS, rls: func(*testing.T, *hostileEnv) *rlsv3.RateLimitRequest {
			return &rlsv3.RateLimitRequest{Domain: "nope-" + randHex(4), Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{descriptor("subject", "x")}}
		}, rlsWant: rlsAnswer{codes.OK, rlsv3.RateLimitResponse_OK}},
		{category: catRL, name: "empty domain", via: viaRLS, rls: func(*testing.T, *hostileEnv) *rlsv3.RateLimitRequest {
			return &rlsv3.RateLimitRequest{Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{descriptor("subject", "x")}}
		}, rlsWant: rlsAnswer{code: codes.InvalidArgument}},
		{category: catRL, name: "no descriptors", via: viaRLS, rls: func(*testing.T, *hostileEnv) *rlsv3.RateLimitRequest {
			return &rlsv3.RateLimitRequest{Domain: "mcp"}
		}, rlsWant: rlsAnswer{code: codes.InvalidArgument}},
		{category: catRL, name: "empty entry key and value", via: viaRLS, rls: func(*testing.T, *hostileEnv) *rlsv3.RateLimitRequest {
			return &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{descriptor("", "")}}
		}, rlsWant: rlsAnswer{codes.OK, rlsv3.RateLimitResponse_OK}},
		{category: catRL, name: "key separators in a value cannot reach another counter", via: viaRLS, rls: func(t *testing.T, h *hostileEnv) *rlsv3.RateLimitRequest {
			// Use up (subject=s, tool=echo), then ask for a one-entry
			// descriptor whose value spells the same key.
			subject := "rl-" + randHex(6)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range devPerToolLimit + 1 {
				if _, err := h.rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "mcp",
					Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{descriptor("subject", subject, "tool", "echo")}}); err != nil {
					t.Fatal(err)
				}
			}
			return &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{
				descriptor("subject", subject+"|tool=echo"), descriptor("subject", subject+`\|tool\=echo`)}}
		}, rlsWant: rlsAnswer{codes.OK, rlsv3.RateLimitResponse_OK}},

		// MCP-server tricks: straight to its port, around the gateway.
		{category: catMCP, name: "no identity token", via: viaMCP, req: direct(nil, whoami),
			want: answer{status: 401, code: -32001}},
		{category: catMCP, name: "identity token signed by another key", via: viaMCP, req: direct(func(t *testing.T, h *hostileEnv) string {
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			return h.identity(t, k, h.c.url, "admin", "tools/call", "whoami", time.Now())
		}, whoami), want: answer{status: 401, code: -32001, challenge: `error="invalid_token"`}},
		{category: catMCP, name: "identity token expired", via: viaMCP, req: direct(func(t *testing.T, h *hostileEnv) string {
			return h.identity(t, h.identKey, h.c.url, "admin", "tools/call", "whoami", time.Now().Add(-time.Hour))
		}, whoami), want: answer{status: 401, code: -32001, challenge: `error="invalid_token"`}},
		{category: catMCP, name: "identity token for another audience", via: viaMCP, req: direct(func(t *testing.T, h *hostileEnv) string {
			return h.identity(t, h.identKey, "https://other.example/mcp", "admin", "tools/call", "whoami", time.Now())
		}, whoami), want: answer{status: 401, code: -32001, challenge: `error="invalid_token"`}},
		{category: catMCP, name: "identity token with alg none", via: viaMCP, req: direct(func(t *testing.T, h *hostileEnv) string {
			return h.secret(b64json(map[string]string{"alg": "none"}) + "." + b64json(jwt.MapClaims{"iss": identity.IdentityIssuer, "aud": h.c.url,
				"sub": "mallory", "roles": []string{"admin"}, "exp": time.Now().Add(time.Hour).Unix(), "mcp_method": "tools/call", "mcp_name": "whoami"}) + ".")
		}, whoami), want: answer{status: 401, code: -32001, challenge: `error="invalid_token"`}},
		{category: catMCP, name: "valid identity token (control)", via: viaMCP, req: direct(signedFor("user", "whoami"), whoami),
			want: answer{status: 200}},
		{category: catMCP, name: "identity token signed for whoami, the body calls hash", via: viaMCP, req: func(t *testing.T, h *hostileEnv) rawRequest {
			return direct(signedFor("admin", "whoami"), toolCall("hash", textArg(h.arg())))(t, h)
		}, want: answer{status: 200, code: -32010}},
		{category: catMCP, name: "a user's identity token signed for hash (the in-process policy)", via: viaMCP, req: func(t *testing.T, h *hostileEnv) rawRequest {
			return direct(signedFor("user", "hash"), toolCall("hash", textArg(h.arg())))(t, h)
		}, want: answer{status: 200, code: -32010}},
		{category: catMCP, name: "forbidden Origin", via: viaMCP, req: direct(signedFor("user", "whoami"), whoami, hdr("Origin", "http://evil.example")),
			want: answer{status: 403, code: -32003}},
		{category: catMCP, name: "Origin null", via: viaMCP, req: direct(signedFor("user", "whoami"), whoami, hdr("Origin", "null")),
			want: answer{status: 403, code: -32003}},
		{category: catMCP, name: "Origin of a loopback page (control)", via: viaMCP, req: direct(signedFor("user", "whoami"), whoami, hdr("Origin", "http://127.0.0.1:3000")),
			want: answer{status: 200}},
		{category: catMCP, name: "forbidden Origin through the front door", req: func(t *testing.T, h *hostileEnv) rawRequest {
			return mcpPost(h.token(t, "user"), whoami, hdr("Origin", "http://evil.example"))
		}, want: answer{status: 403, code: -32003, reached: true}, check: okCheck},
		{category: catMCP, name: "bridge tool name with a path traversal (../../etc/passwd)", via: viaMCP,
			req: direct(signedFor("admin", "../../etc/passwd"), toolCall("../../etc/passwd", "{}")), want: answer{status: 200, code: -32010}},
		{category: catMCP, name: "bridge tool name with separators (everything/../whoami)", via: viaMCP,
			req: direct(signedFor("admin", "everything/../whoami"), toolCall("everything/../whoami", "{}")), want: answer{status: 200, code: -32010}},
		{category: catMCP, name: "bridge tool name with a slash (everything/echo)", via: viaMCP,
			req: direct(signedFor("admin", "everything/echo"), toolCall("everything/echo", "{}")), want: answer{status: 200, code: -32602}},
		{category: catMCP, name: "bridge tool name with a backslash (everything\\echo)", via: viaMCP,
			req: direct(signedFor("admin", `everything\echo`), toolCall(`everything\\echo`, "{}")), want: answer{status: 200, code: -32602}},
		{category: catMCP, name: "bridged upstream advertising tool names with separators: not re-exposed", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost("", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), hdr("X-Api-Key", h.adminKey))
		}, want: ok, check: okCheck, also: func(t *testing.T, _ *hostileEnv, got rawResponse) {
			if !bytes.Contains(got.body, []byte(`"up.ok"`)) || bytes.Contains(got.body, []byte(`a/b`)) || bytes.Contains(got.body, []byte(`/escape`)) {
				t.Errorf("tools/list: %s", got.body)
			}
		}},
		{category: catMCP, name: "bridged tool with a separator called through the front door (up.a/b)", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost("", toolCall("up.a/b", "{}"), hdr("X-Api-Key", h.adminKey))
		}, want: answer{status: 200, code: -32602, reached: true}, check: okCheck},
		{category: catMCP, name: "bridged tool with a traversal called through the front door (up.../escape)", req: func(_ *testing.T, h *hostileEnv) rawRequest {
			return mcpPost("", toolCall("up.../escape", "{}"), hdr("X-Api-Key", h.adminKey))
		}, want: forbidden, check: ptr(forbidden)},
		{category: catMCP, name: "body over mcp.max_body_bytes", via: viaMCP, req: direct(signedFor("admin", "whoami"),
			toolCall("whoami", `{"pad":"`+strings.Repeat("z", 2<<20)+`"}`)), want: answer{status: 413, code: -32600}},
	}
}
