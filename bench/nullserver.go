package bench

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/portcullis-mcp/portcullis/internal/grpcopts"
)

// NewNullServer returns a gRPC server with the services of `portcullis
// serve` — Authorization, RateLimitService, health, reflection — that
// answer OK at once: the fastest any implementation of these APIs can be
// on this machine, with this gRPC, over this loopback. It is built with the
// same server options as `portcullis serve` (internal/grpcopts) without TLS; the OpenTelemetry
// stats handler that serve adds is left out on purpose, as its cost is
// part of what Portcullis is measured for.
func NewNullServer() *grpc.Server {
	gs := grpc.NewServer(grpcopts.Server()...)
	authv3.RegisterAuthorizationServer(gs, nullAuthz{})
	rlsv3.RegisterRateLimitServiceServer(gs, nullRateLimit{})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return gs
}

type nullAuthz struct{}

// Check allows every request, as an ext_authz server that decided nothing.
func (nullAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

type nullRateLimit struct{}

// ShouldRateLimit answers OK without counting anything.
func (nullRateLimit) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

// Interface guards.
var (
	_ authv3.AuthorizationServer   = nullAuthz{}
	_ rlsv3.RateLimitServiceServer = nullRateLimit{}
)
