package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/portcullis-mcp/portcullis/rego"
)

func compileModules(t *testing.T, src ...string) *ast.Compiler {
	t.Helper()
	mods := map[string]*ast.Module{}
	for i, s := range src {
		m, err := ast.ParseModule(string(rune('a'+i))+".rego", s)
		if err != nil {
			t.Fatal(err)
		}
		mods[m.Package.Path.String()+string(rune('a'+i))] = m
	}
	c := ast.NewCompiler()
	c.Compile(mods)
	if c.Failed() {
		t.Fatal(c.Errors)
	}
	return c
}

func TestPolicyFootprint(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string // footprint, or the start of the reason when uncacheable
		cacheable bool
	}{
		{"fields", `package p
allow if input.mcp.tool == "x"
allow if input.identity.roles[_] == "admin"
allow if input.parsed_path[0] == "mcp"`, "input.identity.roles input.mcp.tool input.parsed_path", true},
		{"a subtree covers its fields", `package p
allow if input.mcp.tool == "x"
allow if count(input.mcp) > 3
allow if input.mcp.arguments[k] == k`, "input.mcp", true},
		{"functions and comprehensions", `package p
f(x) := x.a
allow if f(input.attributes.request) == 1
allow if count([k | some k, v in input.identity.claims; v == 1]) > 0`, "input.attributes.request input.identity.claims", true},
		{"data is not input", `package p
allow if data.roles[input.identity.subject]`, "input.identity.subject", true},
		{"input as a whole", `package p
allow if walk(input, [_, "x"])`, "reads input as a whole", false},
		{"input with a computed key", `package p
allow if input[k] == 1`, "reads input as a whole", false},
		{"input in a variable", `package p
allow if { x := input; x.a == 1 }`, "reads input as a whole", false},
		{"object.get on input", `package p
allow if object.get(input, ["mcp", "tool"], "") == "x"`, "reads input as a whole", false},
		{"time", `package p
allow if time.now_ns() > 0`, "calls the non-deterministic built-in time.now_ns", false},
		{"http.send", `package p
allow if http.send({"method": "GET", "url": "http://x"}).status_code == 200`, "calls the non-deterministic built-in http.send", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, why := policyFootprint(compileModules(t, tc.src))
			switch {
			case tc.cacheable && fp == nil:
				t.Errorf("not cacheable: %s", why)
			case tc.cacheable && fp.String() != tc.want:
				t.Errorf("footprint %q, want %q", fp.String(), tc.want)
			case !tc.cacheable && (fp != nil || !strings.HasPrefix(why, tc.want)):
				t.Errorf("footprint %v, reason %q; want not cacheable: %s", fp, why, tc.want)
			}
		})
	}
}

// The shipped policies must stay cacheable, and must not read the JSON-RPC
// id (different on every call) or anything else that differs per request.
func TestShippedPoliciesAreCacheable(t *testing.T) {
	dirs := map[string]fs.FS{"default": rego.Default}
	entries, err := fs.ReadDir(rego.Examples, "examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		dirs["examples/"+e.Name()] = rego.Examples
	}
	for dir, fsys := range dirs {
		t.Run(dir, func(t *testing.T) {
			mods := map[string]*ast.Module{}
			err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() || !strings.HasSuffix(p, ".rego") || strings.HasSuffix(p, "_test.rego") {
					return err
				}
				src, err := fs.ReadFile(fsys, p)
				if err != nil {
					return err
				}
				mods[p], err = ast.ParseModuleWithOpts(p, string(src), ast.ParserOptions{ProcessAnnotation: true})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := addLibrary(mods); err != nil {
				t.Fatal(err)
			}
			c := ast.NewCompiler()
			c.Compile(mods)
			if c.Failed() {
				t.Fatal(c.Errors)
			}
			fp, why := policyFootprint(c)
			if fp == nil {
				t.Fatalf("not cacheable: %s", why)
			}
			for _, p := range fp.paths {
				if s := strings.Join(p, "."); s == "mcp" || s == "mcp.id" || s == "attributes" || s == "attributes.request" ||
					s == "attributes.request.http" || s == "attributes.request.http.headers" || s == "attributes.request.http.id" {
					t.Errorf("the footprint %s holds input.%s, which differs on every request", fp, s)
				}
			}
		})
	}
}

func TestFootprintKeyIsInjective(t *testing.T) {
	fp := &footprint{paths: [][]string{{"a"}, {"b"}}}
	key := func(js string) [32]byte {
		t.Helper()
		v, err := ast.ParseTerm(js)
		if err != nil {
			t.Fatal(err)
		}
		return fp.key(astPaths{v.Value.(ast.Object)})
	}
	same := [][2]string{
		{`{"a": {"x": 1, "y": 2}}`, `{"a": {"y": 2, "x": 1}}`},
		{`{"a": 1, "c": 1}`, `{"a": 1, "c": 2}`}, // c is not read
		{`{"a": {1, 2}}`, `{"a": {2, 1}}`},
	}
	for _, p := range same {
		if key(p[0]) != key(p[1]) {
			t.Errorf("%s and %s: different keys, want the same", p[0], p[1])
		}
	}
	differ := [][2]string{
		{`{"a": {"x": "yz"}}`, `{"a": {"xy": "z"}}`},
		{`{"a": ["a", "b"]}`, `{"a": ["ab"]}`},
		{`{"a": "1"}`, `{"a": 1}`},
		{`{"a": null}`, `{}`},
		{`{"a": true}`, `{"a": "true"}`},
		{`{"a": 1, "b": 2}`, `{"a": 2, "b": 1}`},
		{`{"a": [[]]}`, `{"a": [[], []]}`},
		{`{"a": {"k": []}}`, `{"a": {"k": {}}}`},
	}
	for _, p := range differ {
		if key(p[0]) == key(p[1]) {
			t.Errorf("%s and %s: the same key", p[0], p[1])
		}
	}
}

func cacheCounts(t *testing.T, r *sdkmetric.ManualReader) (hits, misses int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "portcullis.policy.decision_cache" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := dp.Attributes.Value("result"); v.AsString() == "hit" {
					hits = dp.Value
				} else {
					misses = dp.Value
				}
			}
		}
	}
	return hits, misses
}

func TestDecisionCache(t *testing.T) {
	dir := t.TempDir()
	write := func(src string) {
		if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`package mcp.authz
decision := {"allowed": input.mcp.tool == "echo", "reason": sprintf("tool %s", [input.mcp.tool])}`)
	reader := sdkmetric.NewManualReader()
	e, err := New(context.Background(), &Options{Paths: []string{dir}, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	eval := func(tool string, id string) Decision {
		t.Helper()
		d, err := e.Eval(context.Background(), &Input{MCP: &MCP{Method: "tools/call", Tool: tool, Name: tool, ID: id, Source: SourceBody}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := eval("echo", "1"); !d.Allowed || d.Reason != "tool echo" {
		t.Fatalf("echo: %+v", d)
	}
	// Another id: the policy does not read it, so the decision is cached.
	if d := eval("echo", "2"); !d.Allowed || d.Reason != "tool echo" {
		t.Fatalf("echo again: %+v", d)
	}
	if d := eval("hash", "3"); d.Allowed || d.Reason != "tool hash" {
		t.Fatalf("hash: %+v", d)
	}
	if hits, misses := cacheCounts(t, reader); hits != 1 || misses != 2 {
		t.Errorf("hits %d misses %d, want 1 and 2", hits, misses)
	}
	// A new policy starts a new cache: the old decisions are not reused.
	write(`package mcp.authz
decision := {"allowed": input.mcp.tool == "hash", "reason": "swapped"}`)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := eval("echo", "1"); d.Allowed || d.Reason != "swapped" {
		t.Errorf("after reload: %+v", d)
	}
	// A policy that reads the clock is never cached.
	write(`package mcp.authz
decision := {"allowed": time.now_ns() > 0}`)
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	eval("echo", "1")
	eval("echo", "1")
	if hits, misses := cacheCounts(t, reader); hits != 1 || misses != 3 {
		t.Errorf("after a clock policy: hits %d misses %d, want 1 and 3 (not counted)", hits, misses)
	}
}

// at must return exactly what the policy sees at a path: the cache key is
// built from it, the evaluation from value().
func TestInputAtAgreesWithValue(t *testing.T) {
	in := &Input{
		Attributes: map[string]any{
			"request": map[string]any{"http": map[string]any{
				"method":  "POST",
				"headers": map[string]any{"x-a": "1", "authorization": "Bearer t"},
				"query":   map[string]string{"q": "v"},
				"multi":   map[string][]string{"k": {"a", "b"}},
				"list":    []any{map[string]any{"x": 1.5}},
			}},
			"source": map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "10.0.0.1", "portValue": json.Number("443")}}},
		},
		ParsedPath:    []string{"mcp"},
		ParsedQuery:   map[string][]string{"q": {"1", "2"}},
		ParsedBody:    map[string]any{"params": map[string]any{"name": "echo", "arguments": map[string]any{"n": json.Number("3")}}},
		TruncatedBody: true,
		Identity:      Identity{Authenticated: true, Subject: "alice", Roles: []string{"admin"}, Claims: map[string]any{"tenant": map[string]any{"id": "t1"}}},
		MCP:           &MCP{Method: "tools/call", Name: "echo", Tool: "echo", ID: json.Number("7"), Arguments: map[string]any{"text": "hi"}, Source: SourceBody},
	}
	checkAtAgreesWithValue(t, in)
	// Another shape: a string id, a truncated call, no roles or claims.
	checkAtAgreesWithValue(t, &Input{Identity: Identity{Subject: "bob", Kind: "api_key"},
		MCP: &MCP{Method: "tools/call", ID: "req-1", Truncated: true, Source: SourceHeaders}})
	// The zero input: no MCP, no claims, an anonymous kind.
	zero := &Input{}
	checkAtAgreesWithValue(t, zero)
	for _, p := range [][]string{{"mcp"}, {"mcp", "method"}, {"identity", "kind"}, {"identity", "claims"}, {"identity", "claims", "x"},
		{"parsed_body"}, {"parsed_body", "x"}, {"attributes", "request"}, {"identity"}, {"parsed_query"}, {"identity", "roles"}} {
		var want ast.Value = zero.value()
		for _, k := range p {
			obj, ok := want.(ast.Object)
			if !ok {
				want = nil
				break
			}
			if e := obj.Get(ast.StringTerm(k)); e != nil {
				want = e.Value
			} else {
				want = nil
				break
			}
		}
		got := zero.at(p)
		if (got == nil) != (want == nil) || (got != nil && ast.Compare(got, want) != 0) {
			t.Errorf("zero input: at(%v) = %v, value() has %v", p, got, want)
		}
	}
}

func checkAtAgreesWithValue(t *testing.T, in *Input) {
	t.Helper()
	full := in.value()
	var paths [][]string
	var walkPaths func(v ast.Value, p []string)
	walkPaths = func(v ast.Value, p []string) {
		if len(p) > 0 {
			paths = append(paths, slices.Clone(p), append(slices.Clone(p), "missing"))
		}
		if obj, ok := v.(ast.Object); ok {
			obj.Foreach(func(k, e *ast.Term) { walkPaths(e.Value, append(p, string(k.Value.(ast.String)))) })
		}
	}
	walkPaths(full, nil)
	paths = append(paths, []string{"nope"}, []string{"parsed_path", "0"}, []string{"attributes", "request", "http", "list", "x"},
		[]string{"mcp", "resource"}, []string{"mcp", "prompt"}, []string{"mcp", "protocol_version"}, []string{"mcp", "session_id"},
		[]string{"mcp", "arguments", "text", "deeper"}, []string{"identity", "claims", "tenant", "id", "deeper"},
		[]string{"identity", "roles", "0"}, []string{"version", "encoding"})
	for _, p := range paths {
		var want ast.Value = full
		for _, k := range p {
			obj, ok := want.(ast.Object)
			if !ok {
				want = nil
				break
			}
			e := obj.Get(ast.StringTerm(k))
			if e == nil {
				want = nil
				break
			}
			want = e.Value
		}
		got := in.at(p)
		if (got == nil) != (want == nil) || (got != nil && ast.Compare(got, want) != 0) {
			t.Errorf("at(%v) = %v, value() has %v", p, got, want)
		}
	}
	if len(paths) < 40 {
		t.Fatalf("only %d paths checked", len(paths))
	}
	// The key reads these paths through goAt: its encoding must be the
	// AST value's.
	for _, p := range paths {
		if got, handled := in.appendFieldKey(nil, p); handled {
			want := []byte{'x'}
			if v := in.at(p); v != nil {
				want = appendCanonical(nil, v)
			}
			if string(got) != string(want) {
				t.Errorf("field key encoding at %v: %q, AST %q", p, got, want)
			}
		}
		if v, ok, handled := in.goAt(p); handled && ok {
			if got, want := appendCanonicalGo(nil, v), appendCanonical(nil, in.at(p)); string(got) != string(want) {
				t.Errorf("key encoding at %v: Go %q, AST %q", p, got, want)
			}
		}
	}
}

// astPaths reads paths of one segment from an AST object.
type astPaths struct{ obj ast.Object }

func (astPaths) goAt([]string) (any, bool, bool) { return nil, false, false }

func (astPaths) appendFieldKey(b []byte, _ []string) ([]byte, bool) { return b, false }

func (a astPaths) at(p []string) ast.Value {
	if t := a.obj.Get(ast.StringTerm(p[0])); t != nil {
		return t.Value
	}
	return nil
}

// The Go encoding of a value is the AST encoding of its conversion.
func TestAppendCanonicalGo(t *testing.T) {
	values := []any{
		nil, "", "x", true, false, json.Number("3"), json.Number("-1.5e3"), 2.5, 1e300, math.Copysign(0, -1), 3, int64(-7),
		[]any{}, []any{"a", json.Number("1"), nil, []any{true}}, []string{"a", "b"},
		map[string]any{}, map[string]any{"b": 1.0, "a": map[string]any{"z": "", "y": []any{}}, "": nil},
		map[string]string{"k": "v", "a": "b"}, map[string][]string{"q": {"1", "2"}, "e": nil},
		struct{ A int }{1}, // through OPA's generic conversion
	}
	for _, v := range values {
		want := appendCanonical(nil, term(v).Value)
		if got := appendCanonicalGo(nil, v); !bytes.Equal(got, want) {
			t.Errorf("%#v: %q, the AST conversion gives %q", v, got, want)
		}
	}
}
