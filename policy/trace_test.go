package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/portcullis-mcp/portcullis/policy"
)

// policyDir writes one Rego module into a new directory and returns it.
func policyDir(t *testing.T, rego string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestEvalSpan(t *testing.T) {
	dir := policyDir(t, "package mcp.authz\n\ndecision := {\"allowed\": input.mcp.tool == \"ok\", \"reason\": \"r\"}\n")
	rec := tracetest.NewSpanRecorder()
	e, err := policy.New(context.Background(), &policy.Options{Paths: []string{dir},
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"ok", "secret-arg"} {
		if _, err := e.Eval(context.Background(), &policy.Input{MCP: &policy.MCP{Method: "tools/call", Name: tool, Tool: tool}}); err != nil {
			t.Fatal(err)
		}
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	for i, want := range []string{"allow", "deny"} {
		s := spans[i]
		m := map[string]string{}
		for _, kv := range s.Attributes() {
			m[string(kv.Key)] = kv.Value.String()
		}
		if s.Name() != "portcullis.policy.eval" || m["portcullis.policy.result"] != want || m["portcullis.policy.decision_path"] != "mcp/authz/decision" {
			t.Errorf("span %s %v, want result %s", s.Name(), m, want)
		}
		for _, v := range m {
			if v == "secret-arg" {
				t.Error("input value in a span attribute")
			}
		}
	}
}

// A no-op provider turns the span off: no span, even under a recording
// parent, and no allocation for it.
func TestEvalSpanNoop(t *testing.T) {
	dir := policyDir(t, "package mcp.authz\n\ndecision := {\"allowed\": input.mcp.tool == \"ok\"}\n")
	rec := tracetest.NewSpanRecorder()
	ctx, parent := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test").Start(context.Background(), "parent")
	in := &policy.Input{MCP: &policy.MCP{Method: "tools/call", Name: "ok", Tool: "ok"}}
	allocs := map[string]float64{}
	for name, tp := range map[string]trace.TracerProvider{"noop": tracenoop.NewTracerProvider(), "nil": nil} {
		e, err := policy.New(context.Background(), &policy.Options{Paths: []string{dir}, TracerProvider: tp})
		if err != nil {
			t.Fatal(err)
		}
		octx := ctx
		if name == "nil" {
			octx = context.Background() // no recording parent: no span either
		}
		allocs[name] = testing.AllocsPerRun(100, func() { _, _ = e.Eval(octx, in) })
	}
	parent.End()
	if n := len(rec.Ended()); n != 1 {
		t.Errorf("%d spans ended, want only the parent", n)
	}
	if allocs["noop"] != allocs["nil"] {
		t.Errorf("Eval allocates %.0f times with a no-op provider, %.0f with none", allocs["noop"], allocs["nil"])
	}
}
