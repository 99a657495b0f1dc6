package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Faults survived under load. Each test puts the chain under load, breaks
// one of its dependencies, repairs it, and accounts for every request: an
// answer that is not the documented one for the fault (a wrong allow or
// deny, a 5xx where fail-open was configured, no answer at all) counts as
// lost. Nothing may be lost. The faults that need Redis or take seconds
// are in fault_redis_test.go behind the faults build tag (make faults).

// generousLimits is a chain configuration snippet whose limits load does
// not reach: domain mcp, 100000 calls a day per subject and tool.
func generousLimits(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "limits.yaml")
	limits := "domain: mcp\ndescriptors:\n  - key: subject\n    descriptors:\n      - key: tool\n        rate_limit: { unit: day, requests_per_unit: 100000 }\n"
	if err := os.WriteFile(p, []byte(limits), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("ratelimit: { config_paths: [%q] }\n", p)
}

// outcome is one request's answer under load.
type outcome struct {
	phase  string
	status int // 0: no answer
	header http.Header
	err    error  // transport error
	body   []byte // the answer
	took   time.Duration
}

// loadRun keeps workers sending requests until stopped, labelling each
// answer with the phase current when the request was sent.
type loadRun struct {
	mu      sync.Mutex
	phase   string
	results []outcome
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(workers int, phase string, send func(worker int) outcome) *loadRun {
	l := &loadRun{phase: phase, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.mu.Lock()
				ph := l.phase
				l.mu.Unlock()
				start := time.Now()
				o := send(w)
				o.phase, o.took = ph, time.Since(start)
				l.mu.Lock()
				l.results = append(l.results, o)
				l.mu.Unlock()
			}
		})
	}
	return l
}

// setPhase starts a new phase and waits until n requests have been sent
// and answered wholly within it.
func (l *loadRun) setPhase(t *testing.T, phase string, n int) {
	t.Helper()
	l.mu.Lock()
	l.phase = phase
	l.mu.Unlock()
	l.waitFor(t, phase, n)
}

func (l *loadRun) waitFor(t *testing.T, phase string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		l.mu.Lock()
		got := 0
		for _, o := range l.results {
			if o.phase == phase {
				got++
			}
		}
		l.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("phase %s: %d answers in a minute, want %d", phase, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// finish stops the load and returns every answer.
func (l *loadRun) finish() []outcome {
	close(l.stop)
	l.wg.Wait()
	return l.results
}

// account checks every answer with ok (per phase) and reports how many
// were sent and lost; nothing may be lost.
func account(t *testing.T, name string, results []outcome, ok func(o outcome) error) {
	t.Helper()
	perPhase := map[string]int{}
	lost := 0
	for _, o := range results {
		perPhase[o.phase]++
		if err := ok(o); err != nil {
			lost++
			if lost <= 5 {
				t.Errorf("%s, phase %s: %v (status %d, error %v, %s): %.200q", name, o.phase, err, o.status, o.err, o.took, o.body)
			}
		}
	}
	t.Logf("%s: %d requests %v, lost %d", name, len(results), perPhase, lost)
	if lost > 0 {
		t.Errorf("%s: %d requests lost", name, lost)
	}
}

// post sends a JSON-RPC body to the front door with a bearer token.
func post(ctx context.Context, client *http.Client, url, tok string, body []byte) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return outcome{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// toolResult reports whether an answer is a successful tool result, not a
// JSON-RPC error or an isError result.
func toolResult(o outcome) error {
	if o.err != nil || o.status != http.StatusOK {
		return fmt.Errorf("not answered 200")
	}
	if code, isErr := rpcError(o.body); isErr {
		return fmt.Errorf("JSON-RPC error %d", code)
	}
	if bytes.Contains(o.body, []byte(`"isError":true`)) {
		return errors.New("tool error")
	}
	return nil
}

// policyStatus is the policy component of /readyz.
type policyStatus struct {
	Reloads   int64  `json:"reloads"`
	Failures  int64  `json:"failures"`
	LastError string `json:"last_error"`
}

func readPolicyStatus(t *testing.T, admin string) policyStatus {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Components map[string]struct {
			Details json.RawMessage `json:"details"`
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	var st policyStatus
	if err := json.Unmarshal(doc.Components["policy"].Details, &st); err != nil {
		t.Fatalf("/readyz policy details: %v", err)
	}
	return st
}

// until polls cond every few milliseconds for up to a minute.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replaceFile writes data to path atomically (a rename, as editors and
// ConfigMap updates do).
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(filepath.Dir(path)), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestFaultPolicyReplacedByBrokenOne replaces the policy with one that does
// not compile while users call an allowed tool (whoami) and a denied one
// (hash): the old policy keeps answering, every answer stays right. Then a
// fixed policy that lets users hash is written: once it is in, every hash
// call succeeds.
func TestFaultPolicyReplacedByBrokenOne(t *testing.T) {
	c := startChain(t, generousLimits(t))
	waitReady(t, c.env.admin)
	policyFile := filepath.Join(c.env.dir, "policy", "policy.rego")
	dataFile := filepath.Join(c.env.dir, "policy", "data.rego")
	original, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dataFile)
	if err != nil {
		t.Fatal(err)
	}
	_, tok := c.token(t, "user")
	client := &http.Client{Timeout: 30 * time.Second}
	ctx := testContext(t)
	var n atomic.Int64
	l := startLoad(4, "before", func(int) outcome {
		tool := "whoami"
		if n.Add(1)%2 == 0 {
			tool = "hash"
		}
		args := "{}"
		if tool == "hash" {
			args = `{"text":"x"}`
		}
		o := post(ctx, client, c.url, tok, toolCall(tool, args))
		o.body = append([]byte(tool+" "), o.body...)
		return o
	})
	l.waitFor(t, "before", 40)

	before := readPolicyStatus(t, c.env.admin)
	replaceFile(t, policyFile, "package portcullis.builtin\n\ndecision := {\n")
	until(t, "the failed reload shows in /readyz", func() bool {
		st := readPolicyStatus(t, c.env.admin)
		return st.Failures > before.Failures && st.LastError != ""
	})
	l.setPhase(t, "broken", 100)

	// The fix grants hash to users; data first (the policy is still
	// broken, so nothing loads), then the policy.
	replaceFile(t, dataFile, strings.Replace(string(data), `"tools:execute:echo",`, `"tools:execute:echo", "tools:execute:hash",`, 1))
	replaceFile(t, policyFile, string(original))
	l.setPhase(t, "fixing", 0)
	until(t, "the fixed policy answers", func() bool {
		return toolResult(post(ctx, client, c.url, tok, toolCall("hash", `{"text":"x"}`))) == nil
	})
	if st := readPolicyStatus(t, c.env.admin); st.LastError != "" || st.Reloads <= before.Reloads {
		t.Errorf("after the fix: %+v", st)
	}
	l.setPhase(t, "fixed", 100)
	results := l.finish()

	account(t, "policy broken and fixed", results, func(o outcome) error {
		hash := bytes.HasPrefix(o.body, []byte("hash "))
		o.body = o.body[bytes.IndexByte(o.body, ' ')+1:]
		switch {
		case o.phase == "fixing":
			// Either policy may answer, the gateway's and the MCP
			// server's reloading apart: a 403, or a 200 with or without
			// the MCP server's own denial. Never an error.
			if o.err != nil || (o.status != http.StatusOK && !(hash && o.status == http.StatusForbidden)) {
				return errors.New("neither policy's answer")
			}
			return nil
		case !hash || o.phase == "fixed":
			return toolResult(o)
		default: // hash before the fix: 403 from the gateway
			if o.status != http.StatusForbidden {
				return errors.New("hash not refused with 403")
			}
			return nil
		}
	})
	if !strings.Contains(c.logText(), "policy.rego:") {
		t.Error("the failed reload was not logged with its file and line")
	}
}

// TestFaultJWKSDownAndBack takes the identity provider's JWKS endpoint
// away while callers present fresh tokens: the keys already fetched keep
// working. A chain started while the JWKS is down answers 503 (never 401,
// never an allow) until it comes back, and needs no restart.
func TestFaultJWKSDownAndBack(t *testing.T) {
	ctx := testContext(t)
	client := &http.Client{Timeout: 30 * time.Second}
	fresh := func(p *issuer, aud string) string {
		return p.mint(t, jwt.MapClaims{"iss": p.iss, "aud": aud, "sub": "sub-" + randHex(6), "roles": []string{"user"}}, time.Hour)
	}
	whoamiCall := toolCall("whoami", "{}")

	t.Run("down after the keys were fetched", func(t *testing.T) {
		p := newIssuer(t)
		c := startChain(t, hostileChainConfig(t, p, nil, "info", filepath.Join(t.TempDir(), "audit"), generousLimits(t)))
		waitReady(t, c.env.admin)
		// Tokens are made ahead, so the load does not need t.
		toks := make(chan string, 2000)
		for range cap(toks) {
			toks <- fresh(p, c.url)
		}
		l := startLoad(4, "up", func(int) outcome {
			select {
			case tok := <-toks:
				return post(ctx, client, c.url, tok, whoamiCall)
			default:
				return outcome{err: errors.New("out of tokens")}
			}
		})
		l.waitFor(t, "up", 30)
		p.down.Store(true)
		// A token with a kid the provider never published makes Portcullis
		// ask the JWKS again, which fails: the token is refused, and the keys
		// already fetched must survive the failed refresh.
		asked := p.asked.Load()
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		o := post(ctx, client, c.url, mintWith(t, k, "ec-new", jwt.MapClaims{"iss": p.iss, "aud": c.url, "sub": "rotated"}, time.Hour), whoamiCall)
		if o.status != http.StatusUnauthorized || !strings.Contains(o.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("unknown kid while the JWKS is down: %d %q %s", o.status, o.header.Get("WWW-Authenticate"), o.body)
		}
		if p.asked.Load() == asked {
			t.Error("the unknown kid did not make Portcullis ask the JWKS endpoint")
		}
		l.setPhase(t, "down", 100)
		p.down.Store(false)
		l.setPhase(t, "back", 30)
		account(t, "JWKS down and back", l.finish(), toolResult)
	})

	t.Run("down from the start", func(t *testing.T) {
		p := newIssuer(t)
		p.down.Store(true)
		c := startChain(t, hostileChainConfig(t, p, nil, "info", filepath.Join(t.TempDir(), "audit"), generousLimits(t)))
		var results []outcome
		for range 5 {
			o := post(ctx, client, c.url, fresh(p, c.url), whoamiCall)
			o.phase = "down"
			results = append(results, o)
		}
		p.down.Store(false)
		waitReady(t, c.env.admin) // the fetch is retried in the background
		for range 5 {
			o := post(ctx, client, c.url, fresh(p, c.url), whoamiCall)
			o.phase = "back"
			results = append(results, o)
		}
		account(t, "JWKS down at start", results, func(o outcome) error {
			if o.phase == "down" {
				if code, _ := rpcError(o.body); o.status != http.StatusServiceUnavailable || code != -32603 {
					return errors.New("not 503 while the keys are not loaded")
				}
				return nil
			}
			return toolResult(o)
		})
	})
}

// TestFaultIntrospectionSlow makes the introspection endpoint slower than
// the provider's timeout: requests are answered 503 within the timeout
// (plus slack for a loaded machine), the source address is not locked out
// by the failures, and answers are right again once it is fast.
func TestFaultIntrospectionSlow(t *testing.T) {
	const timeout = 300 * time.Millisecond
	var slow atomic.Bool
	release := make(chan struct{})
	var introspected atomic.Int64
	endpoint := newIntrospectionServer(t, func(tok string) bool {
		introspected.Add(1)
		if slow.Load() {
			<-release
		}
		return strings.HasPrefix(tok, "opaque-good-")
	})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the endpoint's Close, which waits for its handlers
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret-"+randHex(8)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChain(t, fmt.Sprintf(`authn:
  providers:
    - name: opaque
      introspection: { url: %q, client_id: portcullis, client_secret_file: %q, timeout: %q, cache_ttl: "1s" }
%s`, endpoint, secret, timeout, generousLimits(t)))
	waitReady(t, c.env.admin)
	ctx := testContext(t)
	client := &http.Client{Timeout: 30 * time.Second}
	call := toolCall("whoami", "{}")

	var results []outcome
	send := func(phase, tok string) {
		start := time.Now()
		o := post(ctx, client, c.url, tok, call)
		o.phase, o.took = phase, time.Since(start)
		results = append(results, o)
	}
	send("fast", "opaque-good-"+randHex(8))
	send("fast", "opaque-bad-"+randHex(8))
	slow.Store(true)
	// More failures than the lockout allows (5), from one address.
	for range 7 {
		send("slow", "opaque-good-"+randHex(8))
	}
	slow.Store(false)
	unblock()
	send("fast again", "opaque-good-"+randHex(8))
	send("fast again", "opaque-bad-"+randHex(8))

	account(t, "introspection slow", results, func(o outcome) error {
		bad := strings.Contains(o.header.Get("WWW-Authenticate"), `error="invalid_token"`)
		switch {
		case o.phase == "slow":
			if o.status != http.StatusServiceUnavailable {
				return errors.New("not 503 while the endpoint is slow")
			}
			if o.took > timeout+5*time.Second {
				return fmt.Errorf("answered after %s, beyond the timeout of %s", o.took, timeout)
			}
			return nil
		case o.status == http.StatusUnauthorized:
			if !bad {
				return errors.New("401 without invalid_token")
			}
			return nil
		default:
			return toolResult(o)
		}
	})
	// The bad tokens were refused 401, the good ones answered.
	if got := results[1].status; got != http.StatusUnauthorized {
		t.Errorf("inactive token: status %d, want 401", got)
	}
	if got := results[len(results)-1].status; got != http.StatusUnauthorized {
		t.Errorf("inactive token after the fault: status %d, want 401", got)
	}
}

// newIntrospectionServer serves an RFC 7662 endpoint, whose URL it
// returns; active decides.
func newIntrospectionServer(t *testing.T, active func(tok string) bool) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		tok := r.PostForm.Get("token")
		w.Header().Set("Content-Type", "application/json")
		if !active(tok) {
			_, _ = io.WriteString(w, `{"active":false}`)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "sub": "opaque-" + tok[len(tok)-4:], "client_id": "opaque",
			"exp": time.Now().Add(time.Hour).Unix(), "roles": []string{"user"}})
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s.URL + "/introspect"
}

// slowUpstream is a streamable HTTP MCP server with one tool, "sleepy",
// that holds every call until its context ends or it is released.
type slowUpstream struct {
	url       string
	started   chan struct{} // one value per call that began
	cancelled chan struct{} // one value per call whose context ended
	release   chan struct{}
}

func newSlowUpstream(t *testing.T) *slowUpstream {
	t.Helper()
	u := &slowUpstream{started: make(chan struct{}, 16), cancelled: make(chan struct{}, 16), release: make(chan struct{})}
	s := mcp.NewServer(&mcp.Implementation{Name: "slow", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "sleepy", Description: "waits"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, struct{}, error) {
		u.started <- struct{}{}
		select {
		case <-ctx.Done():
			u.cancelled <- struct{}{}
			return nil, struct{}{}, ctx.Err()
		case <-u.release:
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "awake"}}}, struct{}{}, nil
		}
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(u.release) })
		srv.Close()
	})
	u.url = srv.URL
	return u
}

// TestFaultClientDisconnectsMidCall has an MCP client hang up while its
// tools/call, streamed as SSE through the front door, waits on a bridged
// upstream. Before MCP 2026-07-28 a disconnection is not a cancellation
// (the client sends notifications/cancelled for that), so the call runs to
// its end; its answer, acknowledged to nobody, is not lost track of: the
// decision and the tool call are both audited, joined by decision_id. The
// chain goes on serving, the same upstream included.
func TestFaultClientDisconnectsMidCall(t *testing.T) {
	up := newSlowUpstream(t)
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	c := startChain(t, fmt.Sprintf("mcp: { upstreams: [{ name: slow, url: %q, timeout: \"30s\" }] }\ntelemetry: { audit: { output: %q, format: json } }\n%s",
		up.url, auditFile, generousLimits(t)))
	waitReady(t, c.env.admin)
	_, admin := c.token(t, "admin")
	ctx := testContext(t)
	client := &http.Client{Timeout: 30 * time.Second}
	until(t, "the bridged tool is listed", func() bool {
		o := post(ctx, client, c.url, admin, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		return bytes.Contains(o.body, []byte(`"slow.sleepy"`))
	})

	conn, err := net.Dial("tcp", c.env.frontDoor)
	if err != nil {
		t.Fatal(err)
	}
	body := toolCall("slow.sleepy", "{}")
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: mcp.test\r\nAuthorization: Bearer %s\r\n%sContent-Length: %d\r\n\r\n%s", admin, wireAccept, len(body), body)
	select {
	case <-up.started:
	case <-ctx.Done():
		t.Fatal("the call never reached the upstream")
	}
	conn.Close() // the client goes away mid-call
	cancelled := false
	select {
	case up.release <- struct{}{}:
	case <-up.cancelled:
		cancelled = true
	}

	var records []map[string]any
	until(t, "the abandoned call is audited", func() bool {
		records = readAudit(t, auditFile)
		for _, r := range records {
			if r["msg"] == "tool call" && r["tool"] == "slow.sleepy" {
				return true
			}
		}
		return false
	})
	var decided, called map[string]any
	for _, r := range records {
		switch {
		case r["msg"] == "decision" && r["mcp_name"] == "slow.sleepy":
			decided = r
		case r["msg"] == "tool call" && r["tool"] == "slow.sleepy":
			called = r
		}
	}
	want := "ok"
	if cancelled {
		want = "error"
	}
	if decided["outcome"] != "allowed" || called["outcome"] != want || called["decision_id"] != decided["decision_id"] {
		t.Errorf("audit of the abandoned call: decision %v, tool call %v", decided, called)
	}
	// The chain serves on, the same tool included.
	if o := post(ctx, client, c.url, admin, toolCall("whoami", "{}")); toolResult(o) != nil {
		t.Errorf("after the disconnect: %d %s", o.status, o.body)
	}
	done := make(chan outcome, 1)
	go func() { done <- post(ctx, client, c.url, admin, toolCall("slow.sleepy", "{}")) }()
	<-up.started
	up.release <- struct{}{}
	if o := <-done; toolResult(o) != nil || !bytes.Contains(o.body, []byte("awake")) {
		t.Errorf("a call after the disconnect: %d %s", o.status, o.body)
	}
	t.Logf("client disconnect mid-call: cancelled upstream %v, audited as %v with its decision; lost 0", cancelled, called["outcome"])
}

// readAudit reads the JSON audit records written so far.
func readAudit(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(b, []byte("\n")) {
		var r map[string]any
		if json.Unmarshal(line, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}
