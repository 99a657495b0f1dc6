package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// A Server is one side of a comparison: something that can be started and
// then takes load at an address.
type Server interface {
	Name() string
	Start(ctx context.Context) (*Running, error)
}

// Running is a started server.
type Running struct {
	// Addr is the gRPC address (host:port) or the MCP endpoint URL.
	Addr string
	// PID is the process measured in /proc; 0 when the server runs inside
	// this process and cannot be measured apart.
	PID int
	// AdminAddr, when set, serves /debug/pprof/.
	AdminAddr string
	// ToolPrefix is put before the name of every tool called on an MCP
	// server: a bridge exposes an upstream's tools as "<upstream>.<tool>".
	ToolPrefix string
	// Stop stops the server and waits for it.
	Stop func() error
}

// Process is a [Server] run as a child process, so that its CPU and memory
// are its own.
type Process struct {
	Label string
	Path  string
	Args  []string
	// Env is added to this process's environment.
	Env []string
	// Addr and AdminAddr are where the child will listen (chosen by the
	// caller, usually with [FreeAddr]).
	Addr, AdminAddr string
	// ToolPrefix is the started server's [Running.ToolPrefix].
	ToolPrefix string
	// Ready returns nil once the child answers; it is polled.
	Ready func(ctx context.Context, addr string) error
}

// Name returns the label of the process.
func (p *Process) Name() string { return p.Label }

// startupTimeout bounds how long a child may take to be ready.
const startupTimeout = 90 * time.Second

// Start starts the child and waits until Ready says yes. The child's
// output is read and dropped, keeping the last lines for error messages:
// a server logging every decision must not block on a full pipe, and
// keeping gigabytes of logs is no use.
func (p *Process) Start(ctx context.Context) (*Running, error) {
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	tail := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Label, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(15 * time.Second)
		defer timer.Stop()
		select {
		case <-exited:
			return nil
		case <-timer.C:
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s did not stop on SIGTERM", p.Label)
		}
	}
	r := &Running{Addr: p.Addr, PID: cmd.Process.Pid, AdminAddr: p.AdminAddr, ToolPrefix: p.ToolPrefix, Stop: stop}
	rctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	for {
		err := p.Ready(rctx, p.Addr)
		if err == nil {
			return r, nil
		}
		select {
		case werr := <-exited:
			return nil, fmt.Errorf("%s exited (%v) before it was ready:\n%s", p.Label, werr, tail.String())
		default:
		}
		if rctx.Err() != nil {
			_ = stop()
			return nil, fmt.Errorf("%s not ready after %s: %v\n%s", p.Label, startupTimeout, err, tail.String())
		}
		if sleepUntil(rctx, time.Now().Add(100*time.Millisecond)) != nil && ctx.Err() != nil {
			_ = stop()
			return nil, ctx.Err()
		}
	}
}

// InProcess is a [Server] running inside this process: for tests, where a
// child process would be slow to build. Its CPU and memory cannot be told
// apart from the generator's, so no process is measured.
type InProcess struct {
	Label string
	Run   func(ctx context.Context) (*Running, error)
}

// Name returns the label.
func (s *InProcess) Name() string { return s.Label }

// Start runs the server.
func (s *InProcess) Start(ctx context.Context) (*Running, error) { return s.Run(ctx) }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago. Another process could take it before the server binds it; on a
// development machine that is rare enough, and a clash fails loudly.
func FreeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer lis.Close()
	return lis.Addr().String(), nil
}

// GRPCReady returns a readiness check of a gRPC server: the health of
// service ("" is the server as a whole) is SERVING.
func GRPCReady(service string) func(ctx context.Context, addr string) error {
	return func(ctx context.Context, addr string) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health %s", s)
		}
		return nil
	}
}

// HTTPReady returns a readiness check that GETs url until it answers 200:
// Portcullis's admin /readyz, which also waits for the JWKS.
func HTTPReady(url string) func(ctx context.Context, addr string) error {
	return func(ctx context.Context, _ string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return nil
	}
}

// AllReady combines readiness checks: ready when every one is.
func AllReady(checks ...func(ctx context.Context, addr string) error) func(ctx context.Context, addr string) error {
	return func(ctx context.Context, addr string) error {
		for _, c := range checks {
			if err := c(ctx, addr); err != nil {
				return err
			}
		}
		return nil
	}
}

// MCPReady returns a readiness check of an MCP endpoint: an initialize
// is answered, and then each of calls with "OK" — a bridged tool exists
// only once the bridge has connected its upstream.
func MCPReady(headers func(worker int, method, name string) (http.Header, error), calls ...ToolCall) func(ctx context.Context, url string) error {
	return func(ctx context.Context, url string) error {
		targetCalls := calls
		if len(targetCalls) == 0 {
			targetCalls = []ToolCall{{Name: "echo"}} // a target needs one; never called
		}
		t, err := NewMCPTarget(MCPOptions{URL: url, Calls: targetCalls, Headers: headers, Client: &http.Client{}})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := t.NewCaller(ctx, 0)
		if err != nil {
			return err
		}
		for _, call := range calls {
			outcome, err := c.Call(ctx)
			if err != nil {
				return fmt.Errorf("tools/call %s: %w", call.Name, err)
			}
			if outcome != "OK" {
				return fmt.Errorf("tools/call %s: %s", call.Name, outcome)
			}
		}
		return nil
	}
}

// RedisReady is the readiness check of a Redis server at addr (host:port).
func RedisReady(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// RedisServer returns a private redis-server on addr, without persistence:
// its command statistics count the measured server's commands only. It
// needs redis-server on PATH.
func RedisServer(addr string) (*Process, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return &Process{
		Label: "redis-server", Path: path, Addr: addr, Ready: RedisReady,
		Args: []string{"--bind", host, "--port", port, "--save", "", "--appendonly", "no", "--protected-mode", "yes"},
	}, nil
}

// errNoServer is returned when a comparison lacks one of its sides.
var errNoServer = errors.New("comparison needs a baseline and a subject server")
