package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portcullis-mcp/portcullis/internal/config"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func noEnv(string) string { return "" }

// runCmd runs the command line and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(testContext(t), args, noEnv, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "rego/p.rego", "package mcp.authz\n\ndefault decision := false\n")
	good := write(t, dir, "good.yaml", "policy:\n  paths: [rego]\nauthn: { allow_anonymous: true }\n")
	bad := write(t, dir, "bad.yaml", "policy:\n  pathz: [rego]\n  bundle: { url: \"\" }\nratelimit:\n  config_paths: [limits.yaml]\n")
	broken := write(t, dir, "broken.yaml", "policy:\n  paths: [broken]\nauthn: { allow_anonymous: true }\n")
	write(t, dir, "broken/p.rego", "package mcp.authz\n\ndecision := {\n")

	code, out, _ := runCmd(t, "config", "check", "--config", good)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("good config: exit %d, %q", code, out)
	}
	code, _, errOut := runCmd(t, "config", "check", "--config", bad)
	if code != exitUsage {
		t.Errorf("bad config: exit %d, want %d", code, exitUsage)
	}
	for _, want := range []string{
		`policy.pathz (line 2): unknown key (did you mean "paths"?)`,
		`ratelimit.config_paths[0]: ` + filepath.Join(dir, "limits.yaml") + `: no such file or directory`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("bad config output lacks %q:\n%s", want, errOut)
		}
	}
	badFiles := write(t, dir, "badfiles.yaml", "policy: { paths: [rego] }\nauthn:\n  providers: [{ name: keys, api_key: { keys_file: keys.yaml } }]\nratelimit: { config_paths: [limits.yaml] }\n")
	write(t, dir, "keys.yaml", "keys:\n  - { sha256: nothex, subject: x }\n")
	write(t, dir, "limits.yaml", "domain: mcp\ndescriptors:\n  - key: subject\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n")
	code, _, errOut = runCmd(t, "config", "check", "--config", badFiles)
	if code != exitUsage || !strings.Contains(errOut, "keys.yaml") || !strings.Contains(errOut, "fortnight") {
		t.Errorf("bad key and limit files: exit %d:\n%s", code, errOut)
	}
	code, _, errOut = runCmd(t, "config", "check", "--config", broken)
	if code != exitUsage || !strings.Contains(errOut, "p.rego:4") {
		t.Errorf("broken policy: exit %d:\n%s", code, errOut)
	}
	if code, _, _ := runCmd(t, "config", "check"); code != exitUsage {
		t.Errorf("no --config: exit %d", code)
	}
}

func TestUsage(t *testing.T) {
	if code, _, _ := runCmd(t); code != exitUsage {
		t.Errorf("no args: exit %d", code)
	}
	if code, _, errOut := runCmd(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, errOut)
	}
	if code, _, _ := runCmd(t, "serve", "--no-such-flag"); code != exitUsage {
		t.Errorf("bad flag: exit %d", code)
	}
	code, out, _ := runCmd(t, "version")
	if code != 0 || !strings.Contains(out, "portcullis") || !strings.Contains(out, "go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestPolicyTest(t *testing.T) {
	if code, out, _ := runCmd(t, "policy", "test", "../../rego"); code != 0 {
		t.Errorf("policy test rego: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	write(t, dir, "p.rego", "package x\n\nallow := false\n")
	write(t, dir, "p_test.rego", "package x\n\ntest_allow if allow\n")
	code, out, _ := runCmd(t, "policy", "test", dir)
	if code != 2 || !strings.Contains(out, "data.x.test_allow: FAIL") {
		t.Errorf("failing test: exit %d (want 2, as opa test)\n%s", code, out)
	}
}

func TestPolicyEval(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "rego/p.rego", `package mcp.authz

default decision := {"allowed": false, "reason": "no"}

decision := {"allowed": true, "headers": {"x-tool": input.mcp.tool}} if input.mcp.tool == "echo"
`)
	cfg := write(t, dir, "c.yaml", "policy:\n  paths: [rego]\nauthn: { allow_anonymous: true }\n")
	checkReq := write(t, dir, "req.json", `{"attributes": {"request": {"http": {"method": "POST", "path": "/mcp",
		"headers": {"content-type": "application/json"},
		"body": "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}"}}}}`)
	inputDoc := write(t, dir, "input.json", `{"parsed_path": ["mcp"], "mcp": {"method": "tools/call", "tool": "rm", "name": "rm", "source": "body"}}`)

	var out struct {
		Decision      map[string]any `json:"decision"`
		CheckResponse map[string]any `json:"check_response"`
	}
	code, stdout, stderr := runCmd(t, "policy", "eval", "--config", cfg, "--input", checkReq)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Decision["allowed"] != true || !strings.Contains(stdout, `"x-tool"`) || out.CheckResponse["okResponse"] == nil {
		t.Errorf("CheckRequest eval:\n%s", stdout)
	}
	code, stdout, stderr = runCmd(t, "policy", "eval", "--config", cfg, "--input", inputDoc)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	out.Decision, out.CheckResponse = nil, nil
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	if out.Decision["allowed"] != false || out.Decision["reason"] != "no" || out.CheckResponse["deniedResponse"] == nil {
		t.Errorf("input document eval:\n%s", stdout)
	}
	if code, _, _ := runCmd(t, "policy", "eval", "--input", filepath.Join(dir, "missing.json")); code != exitUsage {
		t.Errorf("missing input: exit %d", code)
	}
}

// TestServe runs portcullis serve on loopback ports: Check and health over
// gRPC, the admin endpoints over HTTP, then a graceful stop.
func TestServe(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	write(t, dir, "rego/p.rego", `package mcp.authz

default decision := {"allowed": false, "reason": "no"}

decision := {"allowed": true} if input.mcp.tool == "echo"
`)
	write(t, dir, "limits.yaml", "domain: mcp\ndescriptors:\n  - key: subject\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n")
	cfg, err := config.Parse([]byte(`
grpc: { listen: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0" }
policy: { paths: [rego] }
authn: { allow_anonymous: true }
ratelimit: { config_paths: [limits.yaml] }
extauthz: { max_body_bytes: 6291456 }
`), dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	ready := make(chan listeners, 1)
	done := make(chan error, 1)
	go func() { done <- serve(serveCtx, cfg, slog.New(slog.DiscardHandler), ready) }()
	var addrs listeners
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	}

	conn, err := grpc.NewClient(addrs.grpc.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	waitServing := func(service string) {
		for {
			r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("health %q never SERVING: %v %v", service, r, err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitServing("")
	waitServing("envoy.service.auth.v3.Authorization")

	client := authv3.NewAuthorizationClient(conn)
	check := func(tool string) int32 {
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/mcp", Headers: map[string]string{"content-type": "application/json"},
				Body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `"}}`,
			}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus().GetCode()
	}
	// Bodies past gRPC's default 4 MiB message limit reach Check when
	// extauthz.max_body_bytes allows them, and Check answers 413 just
	// beyond it (Envoy sends no more than its max_request_bytes).
	for size, want := range map[int]int32{5 << 20: 0, 6<<20 + 100<<10: int32(typev3.StatusCode_PayloadTooLarge)} {
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/mcp", Headers: map[string]string{"content-type": "application/json"},
				Body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", size) + `"}}}`,
			}},
		}})
		if err != nil {
			t.Fatalf("a %d KiB body: %v", size>>10, err)
		}
		if got := int32(resp.GetDeniedResponse().GetStatus().GetCode()); got != want {
			t.Errorf("a %d KiB body: denied with %d, want %d", size>>10, got, want)
		}
	}
	if check("echo") != 0 || check("rm") == 0 {
		t.Error("Check answers wrong")
	}

	// The rate limit service on the same port.
	rl := rlsv3.NewRateLimitServiceClient(conn)
	rlReq := &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*rlcommonv3.RateLimitDescriptor{
		{Entries: []*rlcommonv3.RateLimitDescriptor_Entry{{Key: "subject", Value: "alice"}}},
	}}
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp, err := rl.ShouldRateLimit(ctx, rlReq)
		if err != nil || resp.GetOverallCode() != want {
			t.Errorf("ShouldRateLimit %d: %v, %v; want %v", i, resp, err, want)
		}
	}
	waitServing("envoy.service.ratelimit.v3.RateLimitService")

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addrs.admin.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"revision": "sha256:`) {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `portcullis_policy_reloads_total{`) {
		t.Errorf("/metrics: %d %s", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/: %d", code)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("serve did not stop")
	}
}
