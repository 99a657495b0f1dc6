package policy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write aside and rename, as editors and ConfigMap updates do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// toolPolicy allows calls to the tools listed in data.tools.
const toolPolicy = `package mcp.authz

default decision := {"allowed": false, "reason": "tool not listed"}

decision := {"allowed": true, "reason": "listed", "cost": 2} if {
	input.mcp.tool in data.tools
}
`

func callTool(tool string) *Input {
	return &Input{MCP: &MCP{Method: "tools/call", Name: tool, Tool: tool, Source: SourceBody}}
}

func TestEngineEval(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.rego"), toolPolicy)
	writeFile(t, filepath.Join(dir, "data.json"), `{"tools": ["echo", "whoami"]}`)
	writeFile(t, filepath.Join(dir, "policy_test.rego"), "package mcp.authz\n\ntest_broken if { 1 == 2 }\n")
	e, err := New(ctx, &Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Loaded():
	default:
		t.Fatal("Loaded not closed after New loaded the policy")
	}
	for _, tc := range []struct {
		tool    string
		allowed bool
		reason  string
		cost    int64
	}{
		{"echo", true, "listed", 2},
		{"whoami", true, "listed", 2},
		{"rm", false, "tool not listed", 1},
	} {
		d, err := e.Eval(ctx, callTool(tc.tool))
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tc.allowed || d.Reason != tc.reason || d.Cost != tc.cost {
			t.Errorf("%s: got %+v", tc.tool, d)
		}
	}
	if st := e.Status(); !st.Ready || st.Reloads != 1 || !strings.HasPrefix(st.Revision, "sha256:") {
		t.Errorf("status = %+v", st)
	}
}

func TestEngineLibraryIsAvailable(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), `package mcp.authz

import data.portcullis.mcp

decision := {"allowed": mcp.is_mcp, "reason": "library"}
`)
	e, err := New(ctx, &Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Eval(ctx, callTool("echo"))
	if err != nil || !d.Allowed {
		t.Fatalf("MCP call: %+v, %v", d, err)
	}
	d, err = e.Eval(ctx, &Input{})
	if err != nil || d.Allowed {
		t.Fatalf("non-MCP request: %+v, %v", d, err)
	}
}

func TestEngineUndefinedAndErrors(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), `package mcp.authz

# Defined only for tools/call: undefined otherwise.
decision := {"allowed": true} if input.mcp.method == "tools/call"

# Conflicting values: an evaluation error.
decision := {"allowed": false} if input.mcp.method == "conflict"
decision := {"allowed": true} if input.mcp.method == "conflict"

# A malformed decision.
decision := 42 if input.mcp.method == "number"
`)
	e, err := New(ctx, &Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Eval(ctx, &Input{MCP: &MCP{Method: "ping"}})
	if err != nil || d.Allowed || d.Reason != ReasonUndefined {
		t.Errorf("undefined: %+v, %v", d, err)
	}
	for _, m := range []string{"conflict", "number"} {
		d, err = e.Eval(ctx, &Input{MCP: &MCP{Method: m}})
		if err == nil || d.Allowed {
			t.Errorf("%s: got %+v, %v; want an error and no allow", m, d, err)
		}
	}
}

func TestEngineRefusesBadPolicy(t *testing.T) {
	ctx := testContext(t)
	tests := []struct {
		name, src, want string
	}{
		{"syntax error", "package mcp.authz\n\ndecision := {\n", "p.rego:4"},
		{"type error", "package mcp.authz\n\ndecision := x if { x := 1 + \"a\" }\n", "p.rego:3"},
		{"unsafe var", "package mcp.authz\n\n\ndecision if { y == 1 }\n", "p.rego:4"},
		{"no decision rule", "package mcp.other\n\ndecision := true\n", "no rule defines data.mcp.authz.decision"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "p.rego"), tc.src)
			_, err := New(ctx, &Options{Paths: []string{dir}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestEngineReload swaps good → bad → good: the bad policy never serves,
// and the failure shows in Status and the reload metric.
func TestEngineReload(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.rego")
	writeFile(t, policyFile, toolPolicy)
	writeFile(t, filepath.Join(dir, "data.json"), `{"tools": ["echo"]}`)
	reader := sdkmetric.NewManualReader()
	var logs bytes.Buffer
	e, err := New(ctx, &Options{
		Paths:         []string{dir},
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(tool string) bool {
		t.Helper()
		d, err := e.Eval(ctx, callTool(tool))
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	if !allowed("echo") || allowed("rm") {
		t.Fatal("initial policy")
	}

	// Bad: a syntax error (EOF on line 5).
	writeFile(t, policyFile, "package mcp.authz\n\ndefault decision := false\ndecision := {\n")
	if err := e.Reload(ctx); err == nil {
		t.Fatal("Reload of a broken policy succeeded")
	}
	if !allowed("echo") || allowed("rm") {
		t.Fatal("a failed reload changed the serving policy")
	}
	st := e.Status()
	if !st.Ready || st.Failures != 1 || !strings.Contains(st.LastError, "policy.rego:5") {
		t.Fatalf("status after failed reload = %+v", st)
	}
	if !strings.Contains(logs.String(), "policy.rego:5") {
		t.Errorf("log does not name the file and line:\n%s", logs.String())
	}

	// Good again, with different data.
	writeFile(t, policyFile, toolPolicy)
	writeFile(t, filepath.Join(dir, "data.json"), `{"tools": ["rm"]}`)
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if allowed("echo") || !allowed("rm") {
		t.Fatal("the good reload did not take effect")
	}
	if st := e.Status(); st.LastError != "" || st.Reloads != 2 || st.Failures != 1 {
		t.Fatalf("status after good reload = %+v", st)
	}
	if got := reloadCounts(t, reader); got["success"] != 2 || got["failure"] != 1 {
		t.Errorf("reload metric = %v, want success 2, failure 1", got)
	}
}

func reloadCounts(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portcullis.policy.reloads" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				v, _ := dp.Attributes.Value("result")
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}

// TestEngineWatch edits files under a watched directory and waits for the
// engine to pick the change up.
func TestEngineWatch(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	// Data files are namespaced by directory; Rego files are not, so the
	// policy sits in a subdirectory to check that subdirectories are watched.
	policyFile := filepath.Join(dir, "sub", "policy.rego")
	writeFile(t, policyFile, toolPolicy)
	writeFile(t, filepath.Join(dir, "data.json"), `{"tools": ["echo"]}`)
	e, err := New(ctx, &Options{Paths: []string{dir}, Watch: true})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s; status %+v", what, e.Status())
			case <-tick.C:
			}
		}
	}
	allowed := func(tool string) bool {
		d, err := e.Eval(ctx, callTool(tool))
		return err == nil && d.Allowed
	}
	time.Sleep(50 * time.Millisecond) // let the watcher register its directories
	if !allowed("echo") || allowed("rm") {
		t.Fatal("initial policy")
	}
	writeFile(t, filepath.Join(dir, "data.json"), `{"tools": ["echo", "rm"]}`)
	waitFor("the data change", func() bool { return allowed("rm") })

	writeFile(t, policyFile, "package mcp.authz\n\ndecision := {\n")
	waitFor("the failed reload", func() bool { return e.Status().Failures == 1 })
	if !allowed("rm") {
		t.Fatal("the broken file replaced the serving policy")
	}
	writeFile(t, policyFile, strings.Replace(toolPolicy, `"listed"`, `"listed again"`, 1))
	waitFor("the fixed policy", func() bool {
		d, _ := e.Eval(ctx, callTool("echo"))
		return d.Reason == "listed again"
	})
}

func TestEngineDryRun(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), `package mcp.authz

decision := {"allowed": false, "reason": "no tools today", "cost": 3} if input.mcp.method == "tools/call"
decision := {"allowed": true} if input.mcp.method == "ping"
decision := 1 if input.mcp.method == "broken"
`)
	var logs bytes.Buffer
	e, err := New(ctx, &Options{Paths: []string{dir}, DryRun: true, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Eval(ctx, callTool("echo"))
	if err != nil || !d.Allowed || !d.DryRun || d.Reason != "no tools today" || d.Cost != 3 {
		t.Errorf("denied in dry run: %+v, %v", d, err)
	}
	d, err = e.Eval(ctx, &Input{MCP: &MCP{Method: "ping"}})
	if err != nil || !d.Allowed || d.DryRun {
		t.Errorf("allowed in dry run: %+v, %v", d, err)
	}
	d, err = e.Eval(ctx, &Input{MCP: &MCP{Method: "broken"}})
	if err != nil || !d.Allowed || !d.DryRun || !strings.Contains(d.Reason, "policy error") {
		t.Errorf("error in dry run: %+v, %v", d, err)
	}
	if !strings.Contains(logs.String(), `"reason":"no tools today"`) || !strings.Contains(logs.String(), `"allowed":false`) {
		t.Errorf("the real decision was not logged:\n%s", logs.String())
	}
}

func TestEngineOptions(t *testing.T) {
	ctx := testContext(t)
	if _, err := New(ctx, nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New(ctx, &Options{Paths: []string{"x"}, BundleURL: "http://b"}); err == nil {
		t.Error("New with both sources succeeded")
	}
	if _, err := New(ctx, &Options{Paths: []string{filepath.Join(t.TempDir(), "missing")}}); err == nil {
		t.Error("New with a missing path succeeded")
	}
	e, err := New(ctx, &Options{BundleURL: "http://127.0.0.1:1/b.tar.gz"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Eval(ctx, &Input{}); !errors.Is(err, ErrNotReady) {
		t.Errorf("Eval before load: %v, want ErrNotReady", err)
	}
}

// TestEngineReloadUnchanged: reloading the same files compiles nothing and
// counts nothing; after a failure, the same good files are installed again.
func TestEngineReloadUnchanged(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "policy.rego")
	writeFile(t, f, toolPolicy)
	e, err := New(ctx, &Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	loaded := e.Status().LoadedAt
	for range 3 {
		if err := e.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := e.Status(); st.Reloads != 1 || !st.LoadedAt.Equal(loaded) {
		t.Fatalf("unchanged reloads counted: %+v", st)
	}
	writeFile(t, f, "package mcp.authz\n\ndecision := {\n")
	_ = e.Reload(ctx)
	writeFile(t, f, toolPolicy)
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); st.LastError != "" || st.Reloads != 2 {
		t.Fatalf("recovery to the serving files: %+v", st)
	}
}
