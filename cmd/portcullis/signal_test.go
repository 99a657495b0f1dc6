package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildBinary builds cmd/portcullis once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portcullis-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "portcullis")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestServeSignal builds the binary, runs portcullis serve, waits until it
// serves, sends SIGTERM and expects a clean exit (status 0) after a
// graceful stop.
func TestServeSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx := testContext(t)
	dir := t.TempDir()
	write(t, dir, "rego/p.rego", "package mcp.authz\n\ndefault decision := false\n")
	cfg := write(t, dir, "c.yaml", "grpc: { listen: \"127.0.0.1:0\" }\nadmin: { listen: \"127.0.0.1:0\" }\npolicy: { paths: [rego] }\nauthn: { allow_anonymous: true }\n")

	p := startServe(t, ctx, cfg)

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatalf("serve did not exit:\n%s", p.logText())
	}
	if p.err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", p.err, p.logText())
	}
	for _, want := range []string{`"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(p.logText(), want) {
			t.Errorf("log lacks %s:\n%s", want, p.logText())
		}
	}
}
