package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/portcullis-mcp/portcullis/extauthz"
	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/policy"
	"github.com/portcullis-mcp/portcullis/rego"
)

func policyCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("usage: portcullis policy test|eval ...")
	}
	switch args[0] {
	case "test":
		return policyTestCmd(ctx, args[1:], stdout, stderr)
	case "eval":
		return policyEvalCmd(ctx, args[1:], getenv, stdout, stderr)
	default:
		return usagef("unknown policy command %q (want test or eval)", args[0])
	}
}

// policyTestCmd runs Rego tests with the semantics and exit codes of opa
// test: 0 all passed, 2 a test failed, 1 the files could not be loaded.
func policyTestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("policy test", stderr)
	verbose := fs.Bool("v", false, "print every test, not only failures")
	runRE := fs.String("run", "", "run only tests matching this regular expression")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}
	if code := policy.RunTests(ctx, stdout, paths, policy.TestOptions{Verbose: *verbose, Run: *runRE}); code != policy.TestsPassed {
		return exitError{code}
	}
	return nil
}

// policyEvalCmd prints the input, decision and CheckResponse for a
// CheckRequest (protojson) or a policy input document.
func policyEvalCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("policy eval", stderr)
	inputPath := fs.String("input", "", "a CheckRequest in protojson, or a policy input document (JSON)")
	cfgPath := fs.String("config", "", "configuration file (default: the embedded default policy)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *inputPath == "" {
		return usagef("--input is required")
	}
	data, err := os.ReadFile(*inputPath)
	if err != nil {
		return usageError{err}
	}
	var cfg *config.Config
	if *cfgPath != "" {
		if cfg, err = loadConfig(*cfgPath, getenv); err != nil {
			return err
		}
	} else {
		c := config.Default()
		cfg = &c
	}
	opts := policyOptions(cfg, nil, nil)
	if *cfgPath == "" {
		opts.FS, opts.Paths, opts.Decision = rego.Default, []string{"default"}, rego.DefaultDecision
	}
	opts.Watch = false
	if opts.BundleURL != "" {
		return usagef("policy eval needs policy.paths; it does not download bundles")
	}
	engine, err := policy.New(ctx, opts)
	if err != nil {
		return usageError{err}
	}
	srv := extauthz.New(engine, &extauthz.Options{
		MCPPaths:            cfg.ExtAuthz.MCPPaths,
		MaxBodyBytes:        cfg.ExtAuthz.MaxBodyBytes,
		MaxJSONDepth:        cfg.ExtAuthz.MaxJSONDepth,
		MaxHeaderBytes:      cfg.ExtAuthz.MaxHeaderBytes,
		ResourceMetadataURL: cfg.Authn.ResourceMetadataURL,
	})

	var in *policy.Input
	var req authv3.CheckRequest
	if protojson.Unmarshal(data, &req) == nil {
		if in, err = srv.Input(&req); err != nil {
			// A refusal before policy: show what Envoy would get.
			resp, _ := srv.Check(ctx, &req)
			return printJSON(stdout, map[string]any{"refused": err.Error(), "check_response": protoJSON(resp)})
		}
	} else {
		in = &policy.Input{}
		if err := json.Unmarshal(data, in); err != nil {
			return usagef("%s: neither a CheckRequest nor a policy input: %v", *inputPath, err)
		}
	}
	resp, d, err := srv.Decide(ctx, in)
	if err != nil {
		return err
	}
	return printJSON(stdout, map[string]any{
		"input":          in,
		"decision":       decisionJSON(d),
		"check_response": protoJSON(resp),
	})
}

func decisionJSON(d policy.Decision) map[string]any {
	return map[string]any{
		"allowed": d.Allowed, "reason": d.Reason, "http_status": d.HTTPStatus, "scopes": d.Scopes,
		"cost": d.Cost, "dry_run": d.DryRun, "headers": d.Headers, "dynamic_metadata": d.DynamicMetadata,
	}
}

func protoJSON(resp *authv3.CheckResponse) json.RawMessage {
	b, err := protojson.Marshal(resp)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
