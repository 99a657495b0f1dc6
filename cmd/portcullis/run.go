package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis-mcp/portcullis/internal/config"
)

// Exit codes, the contract of DESIGN.md.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure
	exitUsage   = 2 // a usage or configuration error
)

// usageError is a mistake in the command line or the configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError ends the command with a given code after its output is printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

const usage = `portcullis: authorization and rate limits for MCP servers behind Envoy.

Usage:
  portcullis serve --config FILE            ext_authz + ratelimit gRPC, admin HTTP
  portcullis mcp --config FILE [--transport http|stdio]
                                            the bundled MCP server
  portcullis policy test [-v] [--run RE] [PATH...]
                                            run Rego tests, like opa test
  portcullis policy eval --input FILE [--config FILE]
                                            print the decision and CheckResponse
  portcullis dev [--config FILE] [--listen ADDR] [--envoy FILE]
                                            everything on loopback behind an
                                            Envoy-faithful front door
  portcullis config check --config FILE     validate the configuration
  portcullis token --key FILE --sub S [--iss I] [--aud A]... [--claim k=v]... [--ttl D]
                                            mint a JWT for development
  portcullis version                        print version information

Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error
(policy test: 2 when a test fails, as opa test).
`

// run runs the command line args and returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, getenv, stdin, stdout, stderr)
	var ee exitError
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "portcullis: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "portcullis: %v\n", err)
		return exitFailure
	}
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError{exitUsage}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCmd(ctx, rest, getenv, stderr)
	case "mcp":
		return mcpCmd(ctx, rest, getenv, stdin, stdout, stderr)
	case "policy":
		return policyCmd(ctx, rest, getenv, stdout, stderr)
	case "config":
		return configCmd(rest, getenv, stdout, stderr)
	case "dev":
		return devCmd(ctx, rest, getenv, stdout, stderr)
	case "token":
		return tokenCmd(rest, stdout, stderr)
	case "version":
		return versionCmd(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", cmd)
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args, mapping flag errors to usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// loadConfig loads and validates the configuration file; every problem is
// a usage error listing each one on its own line.
func loadConfig(path string, getenv func(string) string) (*config.Config, error) {
	if path == "" {
		return nil, usagef("--config is required")
	}
	cfg, err := config.Load(path, getenv)
	if cfg != nil {
		err = errors.Join(err, cfg.Validate())
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("%s:\n  %s", path, strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	return cfg, nil
}
