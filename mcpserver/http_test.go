package mcpserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestHTTPHardening(t *testing.T) {
	s := newServer(t, &Options{AllowedOrigins: []string{"https://app.example.com"}, MaxBodyBytes: 1024})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		name       string
		method     string
		header     map[string]string
		body       string
		wantStatus int
		wantHeader map[string]string // "" means absent
	}{
		{name: "no origin", method: "POST", body: initializeBody, wantStatus: 200,
			wantHeader: map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Strict-Transport-Security": "", "Access-Control-Allow-Origin": ""}},
		{name: "foreign origin", method: "POST", header: map[string]string{"Origin": "https://evil.example"}, body: initializeBody, wantStatus: 403,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "foreign preflight", method: "OPTIONS", header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, wantStatus: 403},
		{name: "allowed origin", method: "POST", header: map[string]string{"Origin": "https://app.example.com"}, body: initializeBody, wantStatus: 200,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Expose-Headers": corsExpose}},
		{name: "loopback origin", method: "POST", header: map[string]string{"Origin": "http://localhost:8080"}, body: initializeBody, wantStatus: 200},
		{name: "loopback IP origin", method: "POST", header: map[string]string{"Origin": "http://127.0.0.1:3000"}, body: initializeBody, wantStatus: 200},
		{name: "look-alike of localhost", method: "POST", header: map[string]string{"Origin": "http://localhost.evil.example"}, body: initializeBody, wantStatus: 403},
		{name: "userinfo trick", method: "POST", header: map[string]string{"Origin": "http://localhost@evil.example"}, body: initializeBody, wantStatus: 403},
		{name: "other loopback address", method: "POST", header: map[string]string{"Origin": "http://127.0.0.2"}, body: initializeBody, wantStatus: 403},
		{name: "allowed preflight", method: "OPTIONS", header: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}, wantStatus: 204,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Allow-Methods": corsMethods, "Access-Control-Allow-Headers": corsHeaders}},
		{name: "body too large", method: "POST", body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 2048) + `"}}}`, wantStatus: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(testContext(t), tc.method, srv.URL+PathMCP, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			for k, v := range tc.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

// TestBodyLimitChunked checks the limit without a Content-Length.
func TestBodyLimitChunked(t *testing.T) {
	s := newServer(t, &Options{MaxBodyBytes: 1024})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 4096) + `"}}}`
	req, _ := http.NewRequestWithContext(testContext(t), "POST", srv.URL+PathMCP, struct{ *strings.Reader }{strings.NewReader(body)})
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", resp.StatusCode)
	}
}

// TestBehindProxy: Envoy forwards the public Host to a loopback listener.
func TestBehindProxy(t *testing.T) {
	tests := []struct {
		name        string
		behindProxy bool
		host        string
		want        int
	}{
		{"loopback host", false, "", 200},
		{"public host, not behind proxy", false, "mcp.example.com", 403},
		{"public host, behind proxy", true, "mcp.example.com", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, &Options{BehindProxy: tc.behindProxy})
			srv := httptest.NewServer(s.Handler())
			t.Cleanup(srv.Close)
			if _, port, _ := net.SplitHostPort(srv.Listener.Addr().String()); !strings.HasPrefix(srv.Listener.Addr().String(), "127.") {
				t.Skipf("not a loopback listener (port %s)", port)
			}
			req, _ := http.NewRequestWithContext(testContext(t), "POST", srv.URL+PathMCP, strings.NewReader(initializeBody))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.host != "" {
				req.Host = tc.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func benchEcho(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	ctx := context.Background()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bench"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL + PathMCP}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cs.Close() })
	params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := cs.CallTool(ctx, params)
		if err != nil || res.IsError {
			b.Fatal(err, res)
		}
	}
}

// BenchmarkToolCallHTTP is one tools/call round trip over loopback HTTP:
// through this server (hardening, audit, no policy) and through a bare SDK
// server with the same echo tool.
func BenchmarkToolCallHTTP(b *testing.B) {
	b.Run("portcullis", func(b *testing.B) {
		s := newServer(b, nil)
		benchEcho(b, s.Handler())
	})
	b.Run("bare-sdk", func(b *testing.B) {
		bare := mcp.NewServer(&mcp.Implementation{Name: "bare"}, nil)
		mcp.AddTool(bare, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in EchoInput) (*mcp.CallToolResult, EchoOutput, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, EchoOutput(in), nil
		})
		mux := http.NewServeMux()
		mux.Handle(PathMCP, mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return bare }, &mcp.StreamableHTTPOptions{Stateless: true}))
		benchEcho(b, mux)
	})
}

// The SDK's per-request session lines are debug, not info: a stateless
// server would otherwise log three lines for every call.
func TestSDKLifecycleLogsAtDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var logs syncBuffer
		s := newServer(t, &Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))})
		srv := httptest.NewServer(s.Handler())
		req, _ := http.NewRequestWithContext(testContext(t), "POST", srv.URL+PathMCP, strings.NewReader(initializeBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		srv.Close()
		out := logs.String()
		switch {
		case level == slog.LevelInfo && strings.Contains(out, "server connecting"):
			t.Errorf("at info, the SDK's lifecycle is logged:\n%s", out)
		case level == slog.LevelDebug && !strings.Contains(out, `"level":"DEBUG","msg":"server connecting"`):
			t.Errorf("at debug, the SDK's lifecycle is missing or not at debug:\n%s", out)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
