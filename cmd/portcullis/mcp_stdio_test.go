package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPStdio runs `portcullis mcp --transport stdio` as a child process,
// as a desktop client does, with the Go SDK client: stdout carries only the
// protocol, and the policy decides with mcp.stdio_identity.
func TestMCPStdio(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx := testContext(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	write(t, dir, "p.rego", `package mcp.authz

default decision := {"allowed": false, "reason": "not for this role"}

decision := {"allowed": true} if {
	"dev" in input.identity.roles
	input.mcp.tool in {"echo", "whoami"}
}
`)
	cfg := write(t, dir, "c.yaml", "authn: { allow_anonymous: true }\npolicy: { paths: [p.rego] }\nmcp: { stdio_identity: { subject: desk, roles: [dev] } }\n")
	cmd := exec.CommandContext(ctx, bin, "mcp", "--transport", "stdio", "--config", cfg)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "desktop"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	lt, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range lt.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"echo", "whoami"}) {
		t.Errorf("tools for the stdio identity = %v, want [echo whoami]", names)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %v", res, err)
	}
	if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, `"desk"`) || !strings.Contains(text, `"local"`) {
		t.Errorf("whoami on stdio: %s", text)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "time"}); err == nil || !strings.Contains(err.Error(), "not for this role") {
		t.Errorf("time for dev: %v, want a denial", err)
	}
}

func TestMCPStdioRefusesConsoleExporter(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "p.rego", "package mcp.authz\n\ndefault decision := false\n")
	cfg := write(t, dir, "c.yaml", "authn: { allow_anonymous: true }\npolicy: { paths: [p.rego] }\n")
	var out, errOut strings.Builder
	env := func(k string) string {
		if k == "OTEL_TRACES_EXPORTER" {
			return "console"
		}
		return ""
	}
	code := run(testContext(t), []string{"mcp", "--transport", "stdio", "--config", cfg}, env, strings.NewReader(""), &out, &errOut)
	if code != exitUsage || out.Len() != 0 || !strings.Contains(errOut.String(), "OTEL_TRACES_EXPORTER=console") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
