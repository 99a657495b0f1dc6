package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mcp/portcullis/ratelimit/ratelimittest"
)

// The full chain, as `portcullis dev` runs it: a real MCP client (the Go
// SDK's streamable client) → the front door configured from the shipped
// envoy/envoy.yaml → ext_authz and the rate limit service over gRPC →
// the MCP server. Between the front door and the MCP server sits a
// recording proxy, to see what the MCP server was sent.

type tap struct {
	mu      sync.Mutex
	headers []http.Header
}

func (t *tap) seen() []http.Header {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]http.Header(nil), t.headers...)
}

type chain struct {
	env  devEnv
	url  string // the MCP endpoint through the front door
	tap  *tap
	key  string // the issuer's key file
	iss  string
	logs *bytes.Buffer
	logw *lockedWriter // writes logs
}

func startChain(t *testing.T, configYAML string) *chain {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &chain{tap: &tap{}, logs: &bytes.Buffer{}}
	c.logw = &lockedWriter{w: c.logs}
	o := devOptions{listen: "127.0.0.1:0", getenv: func(string) string { return "" }}
	if configYAML != "" {
		p := filepath.Join(t.TempDir(), "dev.yaml")
		if err := os.WriteFile(p, []byte(configYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		o.configPath = p
	}
	o.tapMCP = func(addr string) string {
		target := &url.URL{Scheme: "http", Host: addr}
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.FlushInterval = -1
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c.tap.mu.Lock()
			c.tap.headers = append(c.tap.headers, r.Header.Clone())
			c.tap.mu.Unlock()
			rp.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	ready := make(chan devEnv, 1)
	done := make(chan error, 1)
	var stdout bytes.Buffer
	go func() { done <- runDev(ctx, o, &stdout, c.logw, ready) }()
	t.Cleanup(func() {
		cancel()
		stop := time.NewTimer(10 * time.Second)
		defer stop.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev: %v", err)
			}
		case <-stop.C:
			t.Error("dev did not stop")
		}
	})
	start := time.NewTimer(30 * time.Second)
	defer start.Stop()
	select {
	case c.env = <-ready:
	case err := <-done:
		t.Fatalf("dev stopped: %v\n%s", err, c.logs)
	case <-start.C:
		t.Fatal("dev did not start")
	}
	c.url = "http://" + c.env.frontDoor + "/mcp"
	c.key = c.env.issuerKey
	for _, line := range strings.Split(stdout.String(), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "token" && f[1] == "issuer" {
			c.iss = f[2]
		}
	}
	if c.iss == "" || !strings.Contains(stdout.String(), "export ADMIN=") {
		t.Fatalf("the banner lacks the issuer or the tokens:\n%s", stdout.String())
	}
	return c
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// token mints a token for a fresh subject with one role, as the dev
// issuer does, so that counters from other runs (Redis) do not interfere.
func (c *chain) token(t *testing.T, role string) (subject, tok string) {
	t.Helper()
	key, err := loadPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	subject = role + "-" + hex.EncodeToString(b[:])
	tok, err = mintToken(key, devIssuerKeyID, jwt.MapClaims{"iss": c.iss, "aud": strings.TrimSuffix(c.url, "/mcp") + "/mcp",
		"sub": subject, "roles": []string{role}, "client_id": "test-" + subject}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return subject, tok
}

type bearer struct {
	token string
	extra http.Header
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	for k, vs := range b.extra {
		r.Header[k] = vs
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (c *chain) session(t *testing.T, tok string, extra http.Header) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "chain-test", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: c.url, HTTPClient: &http.Client{Transport: bearer{tok, extra}}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, c.logs)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// rawCall posts one tools/call and returns the response and its body.
func (c *chain) rawCall(t *testing.T, tok, tool string, header ...string) (*http.Response, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"` + tool + `","arguments":{"text":"hi"}}}`
	req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func whoami(t *testing.T, cs *mcp.ClientSession) map[string]any {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	m, ok := res.StructuredContent.(map[string]any)
	if !ok || res.IsError {
		t.Fatalf("whoami: %+v", res)
	}
	return m
}

func TestDevFullChainMemory(t *testing.T) {
	testFullChain(t, startChain(t, ""), nil)
}

func TestDevFullChainRedis(t *testing.T) {
	rdb := ratelimittest.Redis(t)
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = ratelimittest.DefaultRedisAddr
	}
	c := startChain(t, "ratelimit:\n  backend: redis\n  redis: { url: \"redis://"+addr+"/0\" }\n")
	testFullChain(t, c, func(subject string) {
		keys, err := rdb.Keys(context.Background(), "*"+subject+"*").Result()
		if err != nil || len(keys) == 0 {
			t.Errorf("no Redis key for %s (%v): the limits were not counted in Redis", subject, err)
		}
	})
}

// TestDevFullChainRedisCluster runs the chain on a Redis Cluster
// (ratelimit.redis.cluster_addrs, a private one of three masters): the
// same answers as on one node, and the caller's limits counted on the
// cluster's masters.
func TestDevFullChainRedisCluster(t *testing.T) {
	addrs := ratelimittest.Cluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { _ = rdb.Close() })
	c := startChain(t, "ratelimit:\n  backend: redis\n  redis: { cluster_addrs: [\""+strings.Join(addrs, "\", \"")+"\"] }\n")
	testFullChain(t, c, func(subject string) {
		ctx := context.Background()
		var n atomic.Int64
		err := rdb.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			keys, err := m.Keys(ctx, "*"+subject+"*").Result()
			n.Add(int64(len(keys)))
			return err
		})
		if err != nil || n.Load() == 0 {
			t.Errorf("no key for %s on the cluster's masters (%v): the limits were not counted in Redis", subject, err)
		}
	})
}

func testFullChain(t *testing.T, c *chain, countedIn func(subject string)) {
	t.Run("no token: 401 and discoverable metadata", func(t *testing.T) {
		resp, body := c.rawCall(t, "", "whoami")
		challenge := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Bearer resource_metadata=") {
			t.Fatalf("status %d, WWW-Authenticate %q, body %s", resp.StatusCode, challenge, body)
		}
		var rpc struct {
			ID    int `json:"id"`
			Error struct{ Code int }
		}
		if err := json.Unmarshal([]byte(body), &rpc); err != nil || rpc.ID != 41 || rpc.Error.Code == 0 {
			t.Errorf("body %s is not a JSON-RPC error for id 41", body)
		}
		prmURL, _ := strconv.Unquote(strings.TrimPrefix(challenge, "Bearer resource_metadata="))
		prm, err := http.Get(prmURL)
		if err != nil {
			t.Fatal(err)
		}
		defer prm.Body.Close()
		var doc struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		if err := json.NewDecoder(prm.Body).Decode(&doc); err != nil || prm.StatusCode != http.StatusOK ||
			doc.Resource != c.url || len(doc.AuthorizationServers) != 1 || doc.AuthorizationServers[0] != c.iss {
			t.Errorf("metadata at %s: status %d, %+v, %v", prmURL, prm.StatusCode, doc, err)
		}
	})

	t.Run("allowed: the server sees the identity, not the token", func(t *testing.T) {
		subject, tok := c.token(t, "admin")
		before := len(c.tap.seen())
		cs := c.session(t, tok, nil)
		me := whoami(t, cs)
		if me["subject"] != subject || me["kind"] != "jwt" || me["signed_mcp_name"] != "whoami" {
			t.Errorf("whoami: %v", me)
		}
		seen := c.tap.seen()[before:]
		if len(seen) == 0 {
			t.Fatal("the MCP server got nothing")
		}
		for _, h := range seen {
			if h.Get("Authorization") != "" || strings.Contains(strings.Join(flatten(h), " "), tok) {
				t.Errorf("the MCP server was sent the bearer token: %v", h)
			}
			if h.Get("X-Portcullis-Identity") == "" || h.Get("X-Portcullis-Subject") != subject {
				t.Errorf("the MCP server lacks the identity headers: %v", h)
			}
		}
	})

	t.Run("read-only user calling an admin tool: 403", func(t *testing.T) {
		_, tok := c.token(t, "user")
		resp, body := c.rawCall(t, tok, "hash")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"id":41`) || !strings.Contains(body, `"error"`) ||
			!strings.Contains(body, "hash") {
			t.Errorf("status %d, body %s", resp.StatusCode, body)
		}
		cs := c.session(t, tok, nil)
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "hash", Arguments: map[string]any{"text": "x"}}); err == nil {
			t.Error("the SDK client's call of hash succeeded")
		}
	})

	t.Run("spoofed x-portcullis headers have no effect", func(t *testing.T) {
		subject, tok := c.token(t, "user")
		spoof := http.Header{"X-Portcullis-Subject": {"root"}, "X-Portcullis-Roles": {"admin"}, "X-Portcullis-Provider": {"forged"}}
		cs := c.session(t, tok, spoof)
		me := whoami(t, cs)
		if me["subject"] != subject || me["provider"] != "dev" || len(me["roles"].([]any)) != 1 || me["roles"].([]any)[0] != "user" {
			t.Errorf("whoami with spoofed headers: %v", me)
		}
		resp, _ := c.rawCall(t, tok, "hash", "X-Portcullis-Roles", "admin", "X-Portcullis-Subject", "root")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("spoofed roles: hash answered %d, want 403", resp.StatusCode)
		}
	})

	t.Run("per-caller, per-tool limit: 429 after N calls", func(t *testing.T) {
		subject, tok := c.token(t, "user")
		for i := range devPerToolLimit {
			resp, body := c.rawCall(t, tok, "echo")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("call %d: status %d, body %s", i+1, resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Ratelimit-Remaining"); got != strconv.Itoa(devPerToolLimit-1-i) {
				t.Errorf("call %d: x-ratelimit-remaining %q, want %d", i+1, got, devPerToolLimit-1-i)
			}
		}
		resp, _ := c.rawCall(t, tok, "echo")
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Envoy-Ratelimited") != "true" ||
			resp.Header.Get("X-Ratelimit-Remaining") != "0" || !strings.HasPrefix(resp.Header.Get("X-Ratelimit-Limit"), "5, ") ||
			resp.Header.Get("X-Ratelimit-Reset") == "" {
			t.Errorf("call %d: status %d, headers %v", devPerToolLimit+1, resp.StatusCode, resp.Header)
		}
		// Another tool is counted apart.
		if resp, _ := c.rawCall(t, tok, "whoami"); resp.StatusCode != http.StatusOK {
			t.Errorf("whoami after the echo limit: status %d", resp.StatusCode)
		}
		if countedIn != nil {
			countedIn(subject)
		}
	})
}

func flatten(h http.Header) []string {
	var out []string
	for k, vs := range h {
		out = append(out, k)
		out = append(out, vs...)
	}
	return out
}
