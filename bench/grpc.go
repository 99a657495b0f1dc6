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
	"google.golang.org/protobuf/proto"
)

// GRPCTarget sends Envoy's ext_authz Check or rate-limit ShouldRateLimit
// requests to any gRPC address. The requests are cycled in order across
// all workers; workers are spread over Conns connections, as an Envoy with
// several worker threads holds several.
type GRPCTarget struct {
	conns  []*grpc.ClientConn
	method string        // the full method name
	reqs   []wireRequest // the requests, marshalled once
	next   atomic.Uint64
}

// NewCheckTarget returns a target sending reqs to the Authorization
// service at addr.
func NewCheckTarget(addr string, conns int, reqs []*authv3.CheckRequest) (*GRPCTarget, error) {
	if len(reqs) == 0 {
		return nil, errors.New("no Check requests")
	}
	t := &GRPCTarget{method: authv3.Authorization_Check_FullMethodName}
	if err := t.marshal(len(reqs), func(i int) proto.Message { return reqs[i] }); err != nil {
		return nil, err
	}
	return t, t.dial(addr, conns)
}

// NewRateLimitTarget returns a target sending reqs to the
// RateLimitService at addr.
func NewRateLimitTarget(addr string, conns int, reqs []*rlsv3.RateLimitRequest) (*GRPCTarget, error) {
	if len(reqs) == 0 {
		return nil, errors.New("no ShouldRateLimit requests")
	}
	t := &GRPCTarget{method: rlsv3.RateLimitService_ShouldRateLimit_FullMethodName}
	if err := t.marshal(len(reqs), func(i int) proto.Message { return reqs[i] }); err != nil {
		return nil, err
	}
	return t, t.dial(addr, conns)
}

// marshal encodes the n requests once: the generator spends its CPU on
// sending, and every server receives the same bytes.
func (t *GRPCTarget) marshal(n int, req func(int) proto.Message) error {
	for i := range n {
		b, err := proto.Marshal(req(i))
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		t.reqs = append(t.reqs, wireRequest(b))
	}
	return nil
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
	if t.method == authv3.Authorization_Check_FullMethodName {
		return &checkCaller{t: t, cc: cc}, nil
	}
	return &rlsCaller{t: t, cc: cc}, nil
}

// pick returns the next request, cycling over them.
func (t *GRPCTarget) pick() wireRequest { return t.reqs[(t.next.Add(1)-1)%uint64(len(t.reqs))] }

type checkCaller struct {
	t  *GRPCTarget
	cc *grpc.ClientConn
}

// Call sends one Check. The outcome is the status code of the answer, with
// the HTTP status of a denial: "OK", "PERMISSION_DENIED 403".
func (c *checkCaller) Call(ctx context.Context) (string, error) {
	var a checkAnswer
	err := c.cc.Invoke(ctx, c.t.method, c.t.pick(), &a, grpc.ForceCodecV2(answerCodec{}))
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
	err := c.cc.Invoke(ctx, c.t.method, c.t.pick(), &a, grpc.ForceCodecV2(answerCodec{}))
	if err != nil {
		return "", err
	}
	return rlsv3.RateLimitResponse_Code(a.overall).String(), nil
}
