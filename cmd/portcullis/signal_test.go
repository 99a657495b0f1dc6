package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	bin := buildBinary(t)
	write(t, dir, "rego/p.rego", "package mcp.authz\n\ndefault decision := false\n")
	cfg := write(t, dir, "c.yaml", "grpc: { listen: \"127.0.0.1:0\" }\nadmin: { listen: \"127.0.0.1:0\" }\npolicy: { paths: [rego] }\nauthn: { allow_anonymous: true }\n")

	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	var grpcAddr string
	var log strings.Builder
	for grpcAddr == "" && lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		var rec struct {
			Msg  string `json:"msg"`
			GRPC string `json:"grpc"`
		}
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec.Msg == "serving" {
			grpcAddr = rec.GRPC
		}
	}
	if grpcAddr == "" {
		t.Fatalf("no serving line:\n%s", log.String())
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for {
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("never SERVING")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
	}
	for _, want := range []string{`"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, log.String())
		}
	}
}
