package bench

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	extv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/mcpserver"
)

// envNullListen makes the test binary a null server on that address: the
// child process of TestProcessNullServer.
const envNullListen = "BENCH_TEST_NULL_LISTEN"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "baremcp" {
		os.Exit(bareMCPMain(os.Args[2:]))
	}
	if addr := os.Getenv(envNullListen); addr != "" {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = NewNullServer().Serve(lis) // until the parent's SIGTERM kills it
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testTimeout bounds every test's context.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startNull serves the null services on a loopback port until the test
// ends; check, when not nil, runs before each request.
func startNull(t *testing.T, check func(context.Context) error) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if check != nil {
		opts = append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}))
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, nullAuthz{})
	rlsv3.RegisterRateLimitServiceServer(gs, nullRateLimit{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func TestNullServerAnswersOK(t *testing.T) {
	ctx := testContext(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := NewNullServer()
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	addr := lis.Addr().String()
	if err := GRPCReady(authv3.Authorization_ServiceDesc.ServiceName)(ctx, addr); err != nil {
		t.Fatalf("health: %v", err)
	}

	check, err := NewCheckTarget(addr, 2, []*authv3.CheckRequest{mcpCheckRequest(1, nil, "tools/list", map[string]any{})})
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	rl, err := NewRateLimitTarget(addr, 1, []*rlsv3.RateLimitRequest{{Domain: "mcp", Descriptors: []*extv3.RateLimitDescriptor{
		{Entries: []*extv3.RateLimitDescriptor_Entry{{Key: "subject", Value: "a"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	for name, target := range map[string]Target{"check": check, "ratelimit": rl} {
		// A second, not less: on a loaded machine the first answers can
		// take a while to come.
		r, err := Run(ctx, target, Load{Mode: Closed, Workers: 4, Duration: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests == 0 || r.Errors != 0 || r.Outcomes["OK"] != r.Requests {
			t.Errorf("%s: %d answers, %d errors, outcomes %v; want only OK", name, r.Requests, r.Errors, r.Outcomes)
		}
	}
}

// The null server run as a child process, as compare runs it: started,
// ready, measured in /proc, stopped.
func TestProcessNullServer(t *testing.T) {
	ctx := testContext(t)
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{Label: "null", Path: os.Args[0], Env: []string{envNullListen + "=" + addr}, Addr: addr, Ready: GRPCReady("")}
	r, err := p.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target, err := NewCheckTarget(r.Addr, 1, []*authv3.CheckRequest{{}})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	res, err := Run(ctx, target, Load{Mode: Closed, Workers: 2, Duration: 100 * time.Millisecond, Meters: []Meter{&ProcMeter{PID: r.PID}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Server == nil || res.Server.PID != r.PID || res.Server.PeakRSSBytes <= 0 {
		t.Errorf("server usage %+v", res.Server)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestReadReplySSE(t *testing.T) {
	body := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
		"id: 2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\n" +
		"data: \"result\":{\"isError\":false}}\n\n"
	resp := &http.Response{Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: io.NopCloser(strings.NewReader(body))}
	got, err := readReply(resp, 7)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"isError":false}` {
		t.Errorf("result %s", got)
	}
	resp = &http.Response{Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":3,"error":{"code":-32003,"message":"forbidden"}}`))}
	if _, err := readReply(resp, 3); err == nil || !strings.Contains(err.Error(), "-32003") {
		t.Errorf("error reply: %v", err)
	}
}

func TestMCPTargetBareServer(t *testing.T) {
	ctx := testContext(t)
	srv := httptest.NewServer(NewBareMCPServer().Handler)
	defer srv.Close()
	target, err := NewMCPTarget(MCPOptions{URL: srv.URL + "/mcp", Calls: []ToolCall{{Name: "echo", Arguments: map[string]any{"text": "hi"}}, {Name: "nope"}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(ctx, target, Load{Mode: Closed, Workers: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The unknown tool is a JSON-RPC error: counted, not an answer.
	if r.Outcomes["OK"] == 0 || r.Errors == 0 || len(r.ErrorSamples) == 0 {
		t.Errorf("outcomes %v, errors %d %q", r.Outcomes, r.Errors, r.ErrorSamples)
	}
}

// The mcp-call scenario's identity tokens are accepted by Portcullis's MCP
// server with require_identity, and are needed.
func TestMCPCallScenarioIdentity(t *testing.T) {
	ctx := testContext(t)
	sc, err := FindScenario("mcp-call")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sc.Prepare("scenarios", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mcpserver.New(&mcpserver.Options{Name: "portcullis", Version: "test",
		IdentityKey: w.identityKey.Public().(ed25519.PublicKey), Audience: benchResource, RequireIdentity: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ms.Handler())
	defer srv.Close()
	calls, err := ReadToolCalls(w.Requests...)
	if err != nil {
		t.Fatal(err)
	}
	withID, err := NewMCPTarget(MCPOptions{URL: srv.URL + "/mcp", Calls: calls, Headers: w.MCPHeaders()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(ctx, withID, Load{Mode: Closed, Workers: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests == 0 || r.Errors != 0 || r.Outcomes["OK"] != r.Requests {
		t.Errorf("with identity: %d answers, %d errors %q", r.Requests, r.Errors, r.ErrorSamples)
	}
	without, err := NewMCPTarget(MCPOptions{URL: srv.URL + "/mcp", Calls: calls})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := without.NewCaller(ctx, 0); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without identity: %v, want a 401", err)
	}
}

// bareMCPMain makes the test binary, run as `baremcp -stdio` or `baremcp
// -listen ADDR`, the bare MCP server that `bench baremcp` is: the
// workspace's bench command in tests (see [Workspace.BenchCommand]).
func bareMCPMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case len(args) == 1 && args[0] == "-stdio":
		err = ServeBareMCPStdio(ctx, os.Stdin, os.Stdout)
	case len(args) == 2 && args[0] == "-listen":
		var lis net.Listener
		if lis, err = net.Listen("tcp", args[1]); err == nil {
			hs := NewBareMCPServer()
			go func() {
				<-ctx.Done()
				_ = hs.Close()
			}()
			if err = hs.Serve(lis); errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
		}
	default:
		err = fmt.Errorf("baremcp %q: want -stdio or -listen ADDR", args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// The mcp-bridge scenario's two sides, started as compare starts them:
// portcullis mcp (built here) bridging the bare server that runs as its
// child on stdio, and the bare server over HTTP (both this test binary:
// see bareMCPMain). Each answers a tools/call of echo, by the name it
// exposes the tool under, with the text sent.
func TestMCPBridgeScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the portcullis binary")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute) // the build is slow on a busy machine
	defer cancel()
	bin := filepath.Join(t.TempDir(), "portcullis")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/portcullis-mcp/portcullis/cmd/portcullis").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sc, err := FindScenario("mcp-bridge")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sc.Prepare("scenarios", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !sameFile(w.BenchCommand, os.Args[0]) {
		t.Fatalf("bench command %q, want this test binary %q", w.BenchCommand, os.Args[0])
	}
	newTarget, err := w.NewTarget(1)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := w.PortcullisProcess(bin, "redis://127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	baseline, err := w.BaselineProcess(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		side Server
		tool string
	}{
		{subject, "bare.echo"}, // not the built-in echo, which would answer the same
		{baseline, "echo"},
	} {
		t.Run(tc.side.Name(), func(t *testing.T) {
			r, err := tc.side.Start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := r.Stop(); err != nil {
					t.Error(err)
				}
			}()
			target, done, err := newTarget(r)
			if err != nil {
				t.Fatal(err)
			}
			defer done()
			c, err := target.NewCaller(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			s := c.(*mcpSession)
			if got := s.t.opts.Calls[0].Name; got != tc.tool {
				t.Fatalf("calls %q, want %q", got, tc.tool)
			}
			const text = "through the bridge and back"
			params, err := json.Marshal(ToolCall{Name: tc.tool, Arguments: map[string]any{"text": text}})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := s.post(ctx, "tools/call", tc.tool, params, true)
			if err != nil {
				t.Fatal(err)
			}
			var res struct {
				IsError bool `json:"isError"`
				Content []struct {
					Type, Text string
				} `json:"content"`
				StructuredContent BareEchoOutput `json:"structuredContent"`
			}
			if err := json.Unmarshal(resp.result, &res); err != nil {
				t.Fatal(err)
			}
			if res.IsError || len(res.Content) != 1 || res.Content[0].Text != text || res.StructuredContent.Text != text {
				t.Errorf("result %s, want %q echoed", resp.result, text)
			}
			if tc.side == subject {
				// The upstream runs under Portcullis, and the server's
				// CPU and memory are measured with it.
				if kids := descendants(r.PID); len(kids) != 1 {
					t.Errorf("portcullis has child processes %v, want the upstream alone", kids)
				}
				tree, err := ReadProcTree(r.PID)
				if err != nil {
					t.Fatal(err)
				}
				alone, err := ReadProc(r.PID)
				if err != nil {
					t.Fatal(err)
				}
				if tree.PeakRSS <= alone.PeakRSS {
					t.Errorf("peak RSS %d with the upstream, %d without", tree.PeakRSS, alone.PeakRSS)
				}
			}
		})
	}
}

// sameFile reports whether paths a and b name the same file.
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// Every scenario prepares, its requests parse into the right messages,
// and its configuration is valid for portcullis.
func TestScenarios(t *testing.T) {
	want := map[string]int{"authz-rbac": 10, "authz-jwt": jwtSubjects, "authz-opa-compat": 8,
		"rl-memory": rlSubjects, "rl-redis": rlSubjects, "mcp-call": 3, "mcp-bridge": 3}
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			w, err := sc.Prepare("scenarios", t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			switch sc.Kind {
			case KindCheck:
				reqs, err := ReadMessages(func() *authv3.CheckRequest { return new(authv3.CheckRequest) }, w.Requests...)
				if err != nil {
					t.Fatal(err)
				}
				n = len(reqs)
			case KindRateLimit:
				reqs, err := ReadMessages(func() *rlsv3.RateLimitRequest { return new(rlsv3.RateLimitRequest) }, w.Requests...)
				if err != nil {
					t.Fatal(err)
				}
				n = len(reqs)
				if len(reqs[0].Descriptors) != 2 {
					t.Errorf("descriptors %v, want subject and subject+tool", reqs[0].Descriptors)
				}
			case KindMCP:
				calls, err := ReadToolCalls(w.Requests...)
				if err != nil {
					t.Fatal(err)
				}
				n = len(calls)
			}
			if n != want[sc.Name] {
				t.Errorf("%d requests, want %d", n, want[sc.Name])
			}
			env := map[string]string{}
			for _, kv := range w.Env("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "redis://127.0.0.1:6379/0") {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			cfg, err := config.Load(w.Config, func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// sequence records the order in which sides are loaded.
type sequence struct {
	mu    sync.Mutex
	sides []string
}

func (s *sequence) add(side string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.sides); n == 0 || s.sides[n-1] != side {
		s.sides = append(s.sides, side)
	}
}

// recordingTarget notes its side each time a run makes its callers.
type recordingTarget struct {
	Target
	side string
	seq  *sequence
}

func (r recordingTarget) NewCaller(ctx context.Context, worker int) (Caller, error) {
	r.seq.add(r.side)
	return r.Target.NewCaller(ctx, worker)
}

// A whole comparison in under two seconds: a null server against a
// subject that does a little work per request, alternating A B A B.
func TestCompareEndToEnd(t *testing.T) {
	ctx := testContext(t)
	inProcess := func(name string, check func(context.Context) error) Server {
		return &InProcess{Label: name, Run: func(context.Context) (*Running, error) {
			return &Running{Addr: startNull(t, check)}, nil
		}}
	}
	busy := func(context.Context) error {
		// A subject with a cost: allocate and hash a little, no sleep.
		b := bytes.Repeat([]byte("x"), 4096)
		_ = bytes.Count(b, []byte("y"))
		return nil
	}
	seq := &sequence{}
	reqs := []*authv3.CheckRequest{mcpCheckRequest(1, nil, "tools/list", map[string]any{})}
	started := []string{"null", "subject"} // Compare starts the baseline first
	c, err := Compare(ctx, "tiny", CompareOptions{
		Baseline: inProcess("null", nil), Subject: inProcess("subject", busy),
		NewTarget: func(r *Running) (Target, func(), error) {
			t, err := NewCheckTarget(r.Addr, 1, reqs)
			if err != nil {
				return nil, nil, err
			}
			side := started[0]
			started = started[1:]
			return recordingTarget{Target: t, side: side, seq: seq}, func() { _ = t.Close() }, nil
		},
		Rounds: 2, Warmup: 20 * time.Millisecond, Duration: 150 * time.Millisecond,
		Workers: 2, OpenWorkers: 16, Loads: []float64{0.5}, MinOK: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Closed) != 2 || len(c.Open) != 1 || len(c.Open[0].Rounds) != 2 {
		t.Fatalf("closed %d, open %d points", len(c.Closed), len(c.Open))
	}
	if want := []string{"null", "subject", "null", "subject", "null", "subject", "null", "subject"}; !slices.Equal(seq.sides, want) {
		t.Errorf("run order %v, want %v", seq.sides, want)
	}
	s := c.Summary
	if s.ThroughputRatio <= 0 || s.BaselineThroughput <= 0 || s.SubjectThroughput <= 0 || s.HalfLoad == nil || s.HalfLoad.Rate <= 0 {
		t.Errorf("summary %+v", s)
	}
	for _, w := range c.Warnings {
		// Whether an open-loop rate can be kept up with depends on the
		// machine's load; errors and refusals do not.
		if !strings.Contains(w, "could not be sent in time") {
			t.Errorf("warning %q", w)
		}
	}

	// The results round-trip through JSON and draw a well-formed chart
	// and a table row.
	path := filepath.Join(t.TempDir(), "tiny.json")
	if err := WriteJSON(path, c); err != nil {
		t.Fatal(err)
	}
	back, err := ReadComparison(path)
	if err != nil {
		t.Fatal(err)
	}
	var svg bytes.Buffer
	if err := WriteChart(&svg, back); err != nil {
		t.Fatal(err)
	}
	if err := wellFormed(svg.Bytes()); err != nil {
		t.Errorf("chart is not well-formed XML: %v", err)
	}
	if n := strings.Count(svg.String(), "<path "); n != 6 {
		t.Errorf("chart has %d lines, want 6 (p50, p99, p99.9 of each side)", n)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, []*Comparison{back}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "| tiny | null |") {
		t.Errorf("table:\n%s", table.String())
	}
}

func wellFormed(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
