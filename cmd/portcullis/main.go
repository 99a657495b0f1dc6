// Command portcullis is the authorization and rate-limit service for MCP
// servers behind Envoy. Run "portcullis help" for its commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis-mcp/portcullis/internal/gcfloor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A floor under the heap goal: the live heap is a few MB, and at
	// GOGC=100 the collector ran 30 times a second under load (README,
	// Memory). GOGC in the environment turns it off.
	gcfloor.Start(ctx, gcfloor.DefaultFloor, os.Getenv)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
