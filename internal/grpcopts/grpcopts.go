// Package grpcopts holds the gRPC server options of `portcullis serve`, in
// one place so that the benchmark's null server runs with the same ones.
package grpcopts

import (
	"runtime"

	"google.golang.org/grpc"
)

// Server returns the transport options of the gRPC server.
//
// Check and ShouldRateLimit are short calls made at a high rate over a few
// long-lived connections from Envoy. By default gRPC starts a goroutine per
// call, whose stack then grows again through the policy evaluation on every
// call; a pool of stream workers, one per CPU, keeps grown stacks (gRPC
// still starts a goroutine when every worker is busy).
func Server() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}
}
