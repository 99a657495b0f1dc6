package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serveProc is `portcullis serve` running as a child process (the binary
// buildBinary builds).
type serveProc struct {
	cmd  *exec.Cmd
	grpc string // the gRPC address from the "serving" line

	mu     sync.Mutex
	log    strings.Builder
	msgs   map[string]chan struct{} // closed when a record with that msg is logged
	exited chan struct{}
	err    error // of Wait, once exited is closed
}

// startServe runs the binary with the configuration file and waits until
// its gRPC health check answers SERVING.
func startServe(t *testing.T, ctx context.Context, cfg string) *serveProc {
	t.Helper()
	p := &serveProc{cmd: exec.CommandContext(ctx, buildBinary(t), "serve", "--config", cfg), msgs: map[string]chan struct{}{},
		exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serving := p.logged("serving")
	grpcAddr := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stderr)
		lines.Buffer(make([]byte, 64<<10), 1<<20)
		for lines.Scan() {
			var rec struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
			}
			_ = json.Unmarshal(lines.Bytes(), &rec)
			if rec.Msg == "serving" {
				grpcAddr <- rec.GRPC
			}
			p.mu.Lock()
			p.log.WriteString(lines.Text() + "\n")
			if ch, ok := p.msgs[rec.Msg]; ok {
				select {
				case <-ch:
				default:
					close(ch)
				}
			}
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-serving:
		p.grpc = <-grpcAddr
	case <-p.exited:
		t.Fatalf("serve exited: %v\n%s", p.err, p.logText())
	case <-ctx.Done():
		t.Fatalf("no serving line:\n%s", p.logText())
	}
	health := healthpb.NewHealthClient(grpcConn(t, p.grpc))
	for {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p
		}
		if ctx.Err() != nil {
			t.Fatalf("never SERVING:\n%s", p.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logged returns a channel closed once a record with msg is logged.
func (p *serveProc) logged(msg string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, ok := p.msgs[msg]
	if !ok {
		ch = make(chan struct{})
		p.msgs[msg] = ch
		if strings.Contains(p.log.String(), `"msg":"`+msg+`"`) {
			close(ch)
		}
	}
	return ch
}

func (p *serveProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// TestFaultSIGTERMUnderLoad sends SIGTERM to `portcullis serve` while
// Checks are in flight (each waiting on a slow introspection endpoint):
// new Checks are refused (UNAVAILABLE, so Envoy answers its
// status_on_error) while the in-flight ones go on; once the endpoint
// answers they all finish with their decision, and the process exits 0
// within its shutdown grace, without forcing the stop.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx := testContext(t)
	const inFlight = 8
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	var arrived atomic.Int64
	allArrived := make(chan struct{})
	endpoint := newIntrospectionServer(t, func(tok string) bool {
		if strings.HasPrefix(tok, "opaque-slow-") {
			if arrived.Add(1) == inFlight {
				close(allArrived)
			}
			<-release
		}
		return true
	})
	t.Cleanup(unblock)

	dir := t.TempDir()
	write(t, dir, "rego/p.rego", "package mcp.authz\n\ndefault decision := false\n\ndecision := true if input.identity.authenticated\n")
	write(t, dir, "secret", "s3cret")
	cfg := write(t, dir, "c.yaml", fmt.Sprintf(`grpc: { listen: "127.0.0.1:0", shutdown_grace: "20s" }
admin: { listen: "127.0.0.1:0" }
policy: { paths: [rego] }
authn:
  lockout: { max_failures: 0 }
  providers:
    - name: opaque
      introspection: { url: %q, client_id: portcullis, client_secret_file: secret, timeout: "30s" }
`, endpoint))
	p := startServe(t, ctx, cfg)
	loopback := net.IPv4(127, 0, 0, 1)
	authz := authv3.NewAuthorizationClient(grpcConn(t, p.grpc))
	check := func(ctx context.Context, tok string) (*authv3.CheckResponse, error) {
		r := mcpPost(tok, toolCall("whoami", "{}"))
		return authz.Check(ctx, checkRequestFor(loopback, r))
	}

	type answer struct {
		resp *authv3.CheckResponse
		err  error
	}
	answers := make(chan answer, inFlight)
	for i := range inFlight {
		go func() {
			resp, err := check(ctx, fmt.Sprintf("opaque-slow-%d-%s", i, randHex(4)))
			answers <- answer{resp, err}
		}()
	}
	select {
	case <-allArrived:
	case <-ctx.Done():
		t.Fatalf("only %d Checks reached the introspection endpoint", arrived.Load())
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.logged("shutting down")
	// New Checks, on a new connection and on the open one, are refused once
	// the server has stopped accepting; one that got in before is answered.
	refusedNew, refusedOpen, acceptedLate := false, false, 0
	for !refusedNew || !refusedOpen {
		if ctx.Err() != nil {
			t.Fatalf("new Checks were never refused:\n%s", p.logText())
		}
		for _, c := range []struct {
			client  authv3.AuthorizationClient
			refused *bool
		}{{authv3.NewAuthorizationClient(grpcConn(t, p.grpc)), &refusedNew}, {authz, &refusedOpen}} {
			if *c.refused {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := c.client.Check(cctx, checkRequestFor(loopback, mcpPost("opaque-fast-"+randHex(4), toolCall("whoami", "{}"))))
			cancel()
			switch {
			case status.Code(err) == codes.Unavailable:
				*c.refused = true
			case err == nil && codes.Code(resp.GetStatus().GetCode()) == codes.OK:
				acceptedLate++
			default:
				t.Fatalf("a Check during shutdown: %v, %v", resp, err)
			}
		}
	}
	select {
	case a := <-answers:
		t.Fatalf("an in-flight Check ended before its introspection answered: %v, %v", a.resp, a.err)
	default:
	}

	unblock()
	answered := 0
	for range inFlight {
		a := <-answers
		if a.err != nil || codes.Code(a.resp.GetStatus().GetCode()) != codes.OK {
			t.Errorf("in-flight Check: %v, %v", a.resp, a.err)
			continue
		}
		answered++
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		t.Fatalf("serve did not exit:\n%s", p.logText())
	}
	if p.err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", p.err, p.logText())
	}
	log := p.logText()
	if !strings.Contains(log, `"msg":"stopped"`) || strings.Contains(log, `"msg":"forcing stop"`) {
		t.Errorf("not a graceful stop within the grace period:\n%s", log)
	}
	t.Logf("SIGTERM under load: %d in flight, %d answered, %d admitted after the signal and answered, new Checks refused; lost %d",
		inFlight, answered, acceptedLate, inFlight-answered)
}
