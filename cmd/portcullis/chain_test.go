package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Helpers for the tests that attack or break the full chain (hostile_test.go,
// fault*_test.go): an identity provider of our own (so the JWKS can go down
// and tokens can be forged with known keys), an API-key file, a raw HTTP
// client that sends exactly the bytes a test names from a chosen loopback
// source address, and a gRPC connection to ext_authz and the rate limit
// service.

// issuer is a token issuer with an RSA (kid rsa-1) and a P-256 key (kid ec-1),
// serving its JWKS at /jwks.json. Its availability can be switched.
type issuer struct {
	srv    *httptest.Server
	iss    string
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	down   atomic.Bool  // answer 503
	asked  atomic.Int64 // requests for the JWKS
	served atomic.Int64 // JWKS documents served
}

const (
	idpRSAKeyID = "rsa-1"
	idpECKeyID  = "ec-1"
)

// issuerRSAKey is generated once per test binary: RSA key generation is
// slow, and the issuers' keys need not differ.
var issuerRSAKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	rk, err := issuerRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &issuer{iss: "https://idp.hostile.test", rsa: rk, ec: ek}
	pub, _ := ek.PublicKey.ECDH()
	raw := pub.Bytes()
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": idpRSAKeyID, "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": idpECKeyID, "x": b64(raw[1:33]), "y": b64(raw[33:])},
	}})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.asked.Add(1)
		if p.down.Load() || r.URL.Path != "/jwks.json" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		p.served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// mint signs claims with the EC key (kid ec-1) unless key and kid say
// otherwise. iat, nbf and exp are set from now and ttl unless claims has
// them.
func (p *issuer) mint(t testing.TB, claims jwt.MapClaims, ttl time.Duration) string {
	t.Helper()
	return mintWith(t, p.ec, idpECKeyID, claims, ttl)
}

func mintWith(t testing.TB, key crypto.Signer, kid string, claims jwt.MapClaims, ttl time.Duration) string {
	t.Helper()
	c := jwt.MapClaims{}
	now := time.Now()
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), now.Add(ttl).Unix()
	for k, v := range claims {
		c[k] = v
	}
	var method jwt.SigningMethod = jwt.SigningMethodES256
	if _, ok := key.(*rsa.PrivateKey); ok {
		method = jwt.SigningMethodRS256
	}
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// apiKey is one entry of the chain's API-key file.
type apiKey struct {
	key, subject, role string
}

// hostileChainConfig is the configuration of a chain whose callers are
// authenticated by p (provider "corp") and by the API keys (provider "keys",
// header x-api-key); it logs at logLevel and the audit stream goes to
// auditFile. extra is appended (top-level keys other than authn and
// telemetry).
func hostileChainConfig(t testing.TB, p *issuer, keys []apiKey, logLevel, auditFile, extra string) string {
	t.Helper()
	dir := t.TempDir()
	var kf strings.Builder
	kf.WriteString("keys:\n")
	for _, k := range keys {
		sum := sha256.Sum256([]byte(k.key))
		fmt.Fprintf(&kf, "  - { sha256: %q, subject: %q, client_id: %q, roles: [%s] }\n", hex.EncodeToString(sum[:]), k.subject, "keys-"+k.subject, k.role)
	}
	keysFile := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keysFile, []byte(kf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`authn:
  providers:
    - name: keys
      api_key: { header: x-api-key, keys_file: %q }
    - name: corp
      jwt: { issuer: %q, jwks_url: %q, algorithms: [RS256, ES256], clock_skew: "5s" }
telemetry:
  log_level: %s
  audit: { output: %q, format: json }
%s`, keysFile, p.iss, p.srv.URL+"/jwks.json", logLevel, auditFile, extra)
}

// waitReady waits until the admin server's /readyz answers 200: the policy
// is loaded and the JWKS fetched.
func waitReady(t testing.TB, admin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s/readyz never answered 200 (last: %v)", admin, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// rawRequest is one HTTP/1.1 request, sent byte for byte as written.
type rawRequest struct {
	method string
	target string      // the request-target, as on the wire ("/mcp", "//mcp", "/mcp?x=1")
	host   string      // Host header; "mcp.test" when empty
	header [][2]string // in order; names as written, repeats allowed
	body   []byte
	// declared, when not -1 and not 0, is the Content-Length sent instead of
	// len(body) (a truncated body); the client then closes its side.
	declared int
	// wire, when set, is sent instead of all of the above.
	wire string
}

func (r rawRequest) bytes() []byte {
	if r.wire != "" {
		return []byte(r.wire)
	}
	var b bytes.Buffer
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	host := r.host
	if host == "" {
		host = "mcp.test"
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, r.target, host)
	for _, h := range r.header {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	n := len(r.body)
	if r.declared > 0 {
		n = r.declared
	}
	if r.body != nil || r.declared > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", n)
	}
	b.WriteString("\r\n")
	b.Write(r.body)
	return b.Bytes()
}

// rawResponse is what came back.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// sendRaw sends r to addr from the loopback address src and reads the
// answer. The connection is closed by the request (Connection: close).
func sendRaw(t testing.TB, addr string, src net.IP, r rawRequest) rawResponse {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// Write concurrently with reading: a server may answer (413, 431)
	// before it has read a large request.
	wrote := make(chan error, 1)
	go func() {
		_, err := conn.Write(r.bytes())
		if err == nil && r.declared > 0 {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		wrote <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", r.method, r.target, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", r.method, r.target, err)
	}
	conn.Close()
	<-wrote // a write error after the answer is the server closing early: fine
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

// sources hands out loopback source addresses (127.0.0.2, 127.0.0.3, ...),
// so that what one request does to its address (lockout) cannot touch
// another's.
type sources struct {
	mu   sync.Mutex
	next int
}

func (s *sources) take() net.IP {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	n := s.next + 1
	return net.IPv4(127, byte(n>>16), byte(n>>8), byte(n))
}

// grpcConn connects to a gRPC address on loopback.
func grpcConn(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rpcError reads the JSON-RPC error code of a response body, plain JSON or
// the first data line of an SSE stream; 0 when there is none.
func rpcError(body []byte) (code int, ok bool) {
	b := bytes.TrimSpace(body)
	if bytes.HasPrefix(b, []byte("event:")) || bytes.HasPrefix(b, []byte("data:")) || bytes.HasPrefix(b, []byte("id:")) {
		for _, line := range strings.Split(string(b), "\n") {
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				b = []byte(strings.TrimSpace(d))
				break
			}
		}
	}
	var msg struct {
		Error *struct {
			Code json.Number `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &msg) != nil || msg.Error == nil {
		return 0, false
	}
	n, err := strconv.Atoi(msg.Error.Code.String())
	return n, err == nil
}

// logText is what the chain has logged so far.
func (c *chain) logText() string {
	c.logw.mu.Lock()
	defer c.logw.mu.Unlock()
	return c.logs.String()
}

// newToolsUpstream serves a streamable HTTP MCP server (for the bridge)
// with one tool per name, each answering its own name, and returns its URL.
// Names need not be valid: the SDK only logs those it deems invalid, as a
// hostile upstream would advertise them anyway.
func newToolsUpstream(t testing.TB, names ...string) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1"}, &mcp.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	for _, name := range names {
		mcp.AddTool(s, &mcp.Tool{Name: name, Description: "answers its name"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, struct{}, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name}}}, struct{}{}, nil
		})
	}
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	return srv.URL
}
