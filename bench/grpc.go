package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// GRPCTarget sends Envoy's ext_authz Check or rate-limit ShouldRateLimit
// requests to any gRPC address. The requests are cycled in order across
// all workers; workers are spread over Conns connections, as an Envoy with
// several worker threads holds several.
type GRPCTarget struct {
	conns []*grpc.ClientConn
	check []*authv3.CheckRequest
	rls   []*rlsv3.RateLimitRequest
	next  atomic.Uint64
}

// NewCheckTarget returns a target sending reqs to the Authorization
// service at addr.
func NewCheckTarget(addr string, conns int, reqs []*authv3.CheckRequest) (*GRPCTarget, error) {
	if len(reqs) == 0 {
		return nil, errors.New("no Check requests")
	}
	t := &GRPCTarget{check: reqs}
	return t, t.dial(addr, conns)
}

// NewRateLimitTarget returns a target sending reqs to the
// RateLimitService at addr.
func NewRateLimitTarget(addr string, conns int, reqs []*rlsv3.RateLimitRequest) (*GRPCTarget, error) {
	if len(reqs) == 0 {
		return nil, errors.New("no ShouldRateLimit requests")
	}
	t := &GRPCTarget{rls: reqs}
	return t, t.dial(addr, conns)
}

func (t *GRPCTarget) dial(addr string, n int) error {
	if n <= 0 {
		n = 1
	}
	for range n {
		// Each grpc.NewClient is its own HTTP/2 connection.
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Close()
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		cc.Connect()
		t.conns = append(t.conns, cc)
	}
	return nil
}

// Close closes the connections.
func (t *GRPCTarget) Close() error {
	var errs []error
	for _, cc := range t.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// NewCaller returns the caller of one worker, on connection worker % Conns.
func (t *GRPCTarget) NewCaller(_ context.Context, worker int) (Caller, error) {
	cc := t.conns[worker%len(t.conns)]
	if t.check != nil {
		return &checkCaller{t: t, cc: cc}, nil
	}
	return &rlsCaller{t: t, cc: cc}, nil
}

// pick returns the index of the next request, cycling over n.
func (t *GRPCTarget) pick(n int) int { return int((t.next.Add(1) - 1) % uint64(n)) }

type checkCaller struct {
	t  *GRPCTarget
	cc *grpc.ClientConn
}

// Call sends one Check. The outcome is the status code of the answer, with
// the HTTP status of a denial: "OK", "PERMISSION_DENIED 403".
func (c *checkCaller) Call(ctx context.Context) (string, error) {
	var a checkAnswer
	err := c.cc.Invoke(ctx, authv3.Authorization_Check_FullMethodName, c.t.check[c.t.pick(len(c.t.check))], &a, grpc.ForceCodecV2(answerCodec{}))
	if err != nil {
		return "", err
	}
	code := codes.Code(a.code)
	if code == codes.OK {
		return "OK", nil
	}
	outcome := code.String()
	if a.denied {
		outcome += " " + strconv.Itoa(int(a.deniedHTTP))
	}
	return outcome, nil
}

type rlsCaller struct {
	t  *GRPCTarget
	cc *grpc.ClientConn
}

// Call sends one ShouldRateLimit; the outcome is the overall code ("OK",
// "OVER_LIMIT").
func (c *rlsCaller) Call(ctx context.Context) (string, error) {
	var a rateLimitAnswer
	err := c.cc.Invoke(ctx, rlsv3.RateLimitService_ShouldRateLimit_FullMethodName, c.t.rls[c.t.pick(len(c.t.rls))], &a, grpc.ForceCodecV2(answerCodec{}))
	if err != nil {
		return "", err
	}
	return rlsv3.RateLimitResponse_Code(a.overall).String(), nil
}
