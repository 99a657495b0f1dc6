package rego

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/loader"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/util"
)

var update = flag.Bool("update", false, "rewrite the Rego files as opa fmt formats them")

// source is one directory of Rego inside an embedded file system.
type source struct {
	fsys fs.FS
	root string
}

var lib = source{Library, "lib"}

// combination is a set of sources meant to be loaded together, as
// `opa test` loads the directories it is given.
type combination struct {
	name     string
	sources  []source
	packages []string // test packages that must have run
}

// combinations are the directories a user loads together: each example
// and the default policy, with the library when they import it.
var combinations = []combination{
	{
		name:     "rbac",
		sources:  []source{lib, {Examples, "examples/rbac"}},
		packages: []string{"data.portcullis.mcp_test", "data.mcp.authz_test"},
	},
	{
		name:     "tenant",
		sources:  []source{lib, {Examples, "examples/tenant"}},
		packages: []string{"data.portcullis.mcp_test", "data.mcp.tenant_test"},
	},
	{
		name:     "opa-envoy",
		sources:  []source{{Examples, "examples/opa-envoy"}},
		packages: []string{"data.envoy.authz_test"},
	},
	{
		name:     "default",
		sources:  []source{lib, {Default, "default"}},
		packages: []string{"data.portcullis.mcp_test", "data.portcullis.builtin_test"},
	},
}

// TestRego runs the Rego tests of every combination of sources that is
// meant to be loaded together, as `opa test` would, with builtin errors
// raised and the compiler in strict mode.
func TestRego(t *testing.T) {
	for _, c := range combinations {
		t.Run(c.name, func(t *testing.T) {
			modules, store := load(t, c.sources...)
			ran := runTests(t, modules, store)
			for _, pkg := range c.packages {
				if ran[pkg] == 0 {
					t.Errorf("no test ran in %s", pkg)
				}
			}
		})
	}
}

// TestRegoAll loads everything under rego/ at once, as `opa test rego/`
// (and `portcullis policy test rego/`) does, and runs every test exactly
// once: the tests of each combination, with the library's only once.
func TestRegoAll(t *testing.T) {
	// go test runs in this directory: "." is rego/ on disk.
	modules, store, err := tester.Load([]string{"."}, nil)
	if err != nil {
		t.Fatalf("load rego/ as opa test does: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	docs, err := storage.ReadOne(ctx, store, storage.RootPath)
	if err != nil {
		t.Fatalf("read data: %v", err)
	}
	if diff := cmp.Diff(map[string]any{}, docs); diff != "" {
		t.Errorf("data files loaded under rego/ (-want +got):\n%s", diff)
	}

	// Every Rego file on disk is embedded, and the other way round.
	embedded := map[string]bool{}
	for _, s := range []source{lib, {Default, "default"}, {Examples, "examples"}} {
		mods, _ := load(t, s)
		for name := range mods {
			embedded[cleanName(name)] = true
		}
	}
	onDisk := map[string]bool{}
	for name := range modules {
		onDisk[cleanName(name)] = true
	}
	if diff := cmp.Diff(embedded, onDisk); diff != "" {
		t.Errorf("Rego files on disk and embedded differ (-embedded +disk):\n%s", diff)
	}

	// What each combination runs, with the packages of the library's tests,
	// which every combination that loads the library runs, counted once.
	libModules, _ := load(t, lib)
	libTests := testsByPackage(libModules)
	want := map[string]int{}
	owner := map[string]string{}
	sum, withLib := 0, 0
	for _, c := range combinations {
		mods, _ := load(t, c.sources...)
		byPkg := testsByPackage(mods)
		loadsLib := false
		for pkg, n := range byPkg {
			sum += n
			if _, ok := libTests[pkg]; ok {
				loadsLib = true
				if n != libTests[pkg] {
					t.Errorf("%s: %d tests in %s, the library has %d", c.name, n, pkg, libTests[pkg])
				}
			} else if prev, dup := owner[pkg]; dup {
				t.Errorf("test package %s is in both %s and %s: loaded together, their tests merge", pkg, prev, c.name)
			}
			owner[pkg] = c.name
			want[pkg] = n
		}
		if loadsLib {
			withLib++
		}
	}
	if withLib < 2 {
		t.Fatalf("%d combinations load the library; the count below assumes at least 2", withLib)
	}
	dup := (withLib - 1) * sumValues(libTests)

	ran := runTests(t, modules, store)
	if diff := cmp.Diff(want, ran); diff != "" {
		t.Errorf("tests run per package, all loaded together vs one combination at a time (-combinations +all):\n%s", diff)
	}
	if total := sumValues(ran); total != sum-dup {
		t.Errorf("ran %d tests, want %d: %d in the combinations less %d library tests run more than once", total, sum-dup, sum, dup)
	}
	t.Logf("combinations: %d tests, of which %d repeat the library's; all together: %d", sum, dup, sumValues(ran))
}

// runTests runs the Rego tests of modules over store with builtin errors
// raised and the compiler in strict mode, reports every test that does not
// pass, checks that each loaded test ran, and returns how many ran per
// package.
func runTests(t *testing.T, modules map[string]*ast.Module, store storage.Store) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	results, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithStrict(true)).
		SetStore(store).
		SetModules(modules).
		RaiseBuiltinErrors(true).
		SetTimeout(time.Minute).
		RunTests(ctx, nil)
	if err != nil {
		t.Fatalf("run tests: %v", err)
	}

	ran := map[string]int{}
	for r := range results {
		ran[r.Package]++
		switch {
		case r.Error != nil:
			t.Errorf("%s: %s.%s: ERROR: %v", r.Location, r.Package, r.Name, r.Error)
		case r.Fail:
			t.Errorf("%s: %s.%s: FAIL", r.Location, r.Package, r.Name)
		case r.Skip:
			t.Errorf("%s: %s.%s: skipped", r.Location, r.Package, r.Name)
		}
	}

	total := sumValues(ran)
	if want := testsByPackage(modules); total == 0 || !maps.Equal(ran, want) {
		t.Errorf("ran %d tests %v, want the %d test rules loaded %v", total, ran, sumValues(want), want)
	}
	t.Logf("%d tests ran: %v", total, ran)
	return ran
}

// load reads the sources as `opa test` reads directories. They hold Rego
// modules only: each policy keeps its data in a Rego file of its own
// package, so that the data has one path whatever directory is the load
// root, and a data file is an error.
func load(t *testing.T, sources ...source) (map[string]*ast.Module, storage.Store) {
	t.Helper()
	modules := map[string]*ast.Module{}
	for _, s := range sources {
		res, err := loader.NewFileLoader().
			WithFS(s.fsys).
			WithProcessAnnotation(true).
			All([]string{s.root})
		if err != nil {
			t.Fatalf("load %s: %v", s.root, err)
		}
		for name, m := range res.ParsedModules() {
			modules[name] = m
		}
		if len(res.Documents) > 0 {
			t.Errorf("load %s: data files loaded %v; put data in a .rego file of the policy's package", s.root, slices.Sorted(maps.Keys(res.Documents)))
		}
	}
	if len(modules) == 0 {
		t.Fatal("no Rego module loaded")
	}
	return modules, inmem.New()
}

// TestDefaultDecision evaluates the default policy as the engine loads it,
// without its tests, on inputs in the JSON form of the policy input.
func TestDefaultDecision(t *testing.T) {
	modules, store := load(t, lib, source{Default, "default"})
	var opts []func(*oparego.Rego)
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			opts = append(opts, oparego.ParsedModule(m))
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pq, err := oparego.New(append(opts,
		oparego.Query("data.portcullis.builtin.decision"),
		oparego.Store(store),
		oparego.StrictBuiltinErrors(true),
	)...).PrepareForEval(ctx)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}

	const call = `{
		"attributes": {
			"source": {"address": {"socketAddress": {"address": "10.0.0.5", "portValue": 4444}}},
			"request": {"http": {"method": "POST", "path": "/mcp", "host": "mcp.example.com",
				"headers": {"content-type": "application/json"}}}
		},
		"parsed_path": ["mcp"], "parsed_query": {}, "truncated_body": false,
		"version": {"ext_authz": "v3", "encoding": "protojson"},
		"identity": %s,
		"mcp": {"method": "tools/call", "id": 1, "name": %[2]q, "tool": %[2]q,
			"arguments": {"text": "hello"}, "protocol_version": "2025-06-18", "source": "body"}
	}`
	const user = `{"authenticated": true, "provider": "dev", "kind": "jwt", "subject": "alice",
		"roles": ["user"], "scopes": null, "claims": {}}`
	const anonymous = `{"authenticated": false, "provider": "", "kind": "anonymous", "subject": "",
		"client_id": "", "roles": null, "scopes": null, "claims": null}`

	cases := []struct {
		name, input string
		want        map[string]any
	}{
		{"user calls echo", fmt.Sprintf(call, user, "echo"), map[string]any{
			"allowed": true, "reason": `tool "echo" permitted for roles [user]`,
			"headers": map[string]any{}, "cost": json.Number("1"),
		}},
		{"user calls fs.write", fmt.Sprintf(call, user, "fs.write"), map[string]any{
			"allowed": false, "reason": `tool "fs.write" not permitted for roles [user]`,
			"headers": map[string]any{}, "http_status": json.Number("403"),
		}},
		{"anonymous calls echo", fmt.Sprintf(call, anonymous, "echo"), map[string]any{
			"allowed": false, "reason": "authentication required",
			"headers": map[string]any{}, "http_status": json.Number("401"),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var input any
			if err := util.UnmarshalJSON([]byte(tc.input), &input); err != nil {
				t.Fatalf("input: %v", err)
			}
			rs, err := pq.Eval(ctx, oparego.EvalInput(input))
			if err != nil {
				t.Fatalf("eval: %v", err)
			}
			if len(rs) != 1 || len(rs[0].Expressions) != 1 {
				t.Fatalf("got %d results, want 1", len(rs))
			}
			if diff := cmp.Diff(tc.want, rs[0].Expressions[0].Value); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

// testsByPackage counts the rules the test runner must run, those named
// test_*, by package.
func testsByPackage(modules map[string]*ast.Module) map[string]int {
	n := map[string]int{}
	for _, m := range modules {
		for _, r := range m.Rules {
			if strings.HasPrefix(r.Head.Name.String(), "test_") {
				n[m.Package.Path.String()]++
			}
		}
	}
	return n
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// cleanName is a module's file name relative to this directory.
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean(filepath.ToSlash(name)), "/")
}

// TestFormat checks that every Rego file is formatted as `opa fmt` would
// format it. Run with -update to rewrite the files in place.
func TestFormat(t *testing.T) {
	n := 0
	for _, fsys := range []fs.FS{Library, Default, Examples} {
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
				return err
			}
			n++
			src, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			got, err := format.Source(p, src)
			if err != nil {
				t.Errorf("format %s: %v", p, err)
				return nil
			}
			if bytes.Equal(got, src) {
				return nil
			}
			if *update {
				return os.WriteFile(p, got, 0o644)
			}
			t.Errorf("%s is not formatted as opa fmt would (first difference at line %d); run go test -run TestFormat -update", p, firstDiffLine(src, got))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 {
		t.Fatal("no Rego file found")
	}
}

func firstDiffLine(a, b []byte) int {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}
