package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown/print"

	"github.com/portcullis-mcp/portcullis/rego"
)

// libraryPackage is the package of the embedded Rego library. The library is
// added to every policy that does not define this package itself.
const libraryPackage = "data.portcullis.mcp"

// isTestFile reports whether a loader path is a Rego test file, which the
// serving engine skips.
func isTestFile(abspath string, info fs.FileInfo, depth int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

// policyFiles is a policy as read from disk, not compiled yet.
type policyFiles struct {
	modules  map[string]*ast.Module
	data     map[string]any
	revision string // a digest of the files
}

// loadFiles reads and parses the policy under e.opts.Paths.
func (e *Engine) loadFiles() (*policyFiles, error) {
	l := loader.NewFileLoader().WithProcessAnnotation(true)
	if e.opts.FS != nil {
		l = l.WithFS(e.opts.FS)
	}
	res, err := l.Filtered(e.opts.Paths, isTestFile)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	modules := make(map[string]*ast.Module, len(res.Modules))
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(res.Modules)) {
		m := res.Modules[name]
		modules[name] = m.Parsed
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(m.Raw))
		h.Write(m.Raw)
	}
	fmt.Fprintf(h, "%v", res.Documents)
	return &policyFiles{modules: modules, data: res.Documents, revision: "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]}, nil
}

// compileMu serialises compilations in the process. OPA's type checker
// merges the types of object rules into types it shares across compilers
// (ast.mergeTypes assigns to the dynamic properties of a type it did not
// copy), so two engines compiling at once — serve and the MCP server of
// portcullis dev reloading the same file — race (found by -race in
// TestFaultPolicyReplacedByBrokenOne). Compiling happens at load and
// reload only, never per request.
var compileMu sync.Mutex

// compile adds the library, compiles modules, checks that the decision rule
// exists and prepares the decision query over data.
func (e *Engine) compile(ctx context.Context, modules map[string]*ast.Module, data map[string]any, revision string) (*compiled, error) {
	compileMu.Lock()
	defer compileMu.Unlock()
	if err := addLibrary(modules); err != nil {
		return nil, err
	}
	compiler := ast.NewCompiler().WithEnablePrintStatements(true)
	compiler.Compile(modules)
	if compiler.Failed() {
		return nil, fmt.Errorf("compile policy: %w", compiler.Errors)
	}
	if data == nil {
		data = map[string]any{}
	}
	if err := checkDecisionExists(compiler, data, e.query); err != nil {
		return nil, err
	}
	pq, err := oparego.New(
		oparego.Query(e.query),
		oparego.Compiler(compiler),
		oparego.Store(inmem.NewFromObject(data)),
		oparego.EnablePrintStatements(true),
		oparego.PrintHook(printHook{e.logger}),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", e.query, err)
	}
	c := &compiled{query: pq, revision: revision, loadedAt: time.Now()}
	if e.opts.DecisionCacheSize > 0 {
		fp, why := policyFootprint(compiler)
		if fp == nil {
			e.logger.Info("decisions are not cached: the policy "+why, slog.String("revision", revision))
		} else {
			c.fp, c.cache = fp, newDecisionCache(e.opts.DecisionCacheSize)
			e.logger.Debug("decisions cached by input footprint", slog.String("revision", revision), slog.String("footprint", fp.String()))
		}
	}
	return c, nil
}

// checkDecisionExists refuses a policy with no rule and no data at the
// decision path: a typo there would otherwise deny everything silently.
func checkDecisionExists(c *ast.Compiler, data map[string]any, query string) error {
	ref := ast.MustParseRef(query)
	if len(c.GetRules(ref)) > 0 || len(c.GetRulesWithPrefix(ref)) > 0 {
		return nil
	}
	var node any = data
	for _, t := range ref[1:] {
		m, ok := node.(map[string]any)
		if !ok {
			break
		}
		key, _ := ast.ValueToInterface(t.Value, nil)
		s, _ := key.(string)
		if node, ok = m[s]; !ok {
			break
		}
		if t == ref[len(ref)-1] {
			return nil
		}
	}
	return fmt.Errorf("compile policy: no rule defines %s (check policy.decision and the package name)", query)
}

// addLibrary adds the embedded MCP library to modules unless they define
// its package themselves.
func addLibrary(modules map[string]*ast.Module) error {
	for _, m := range modules {
		if m.Package.Path.String() == libraryPackage {
			return nil
		}
	}
	return fs.WalkDir(rego.Library, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		src, err := fs.ReadFile(rego.Library, path)
		if err != nil {
			return err
		}
		name := "portcullis:" + path
		m, err := ast.ParseModuleWithOpts(name, string(src), ast.ParserOptions{ProcessAnnotation: true})
		if err != nil {
			return fmt.Errorf("embedded library: %w", err)
		}
		modules[name] = m
		return nil
	})
}

// printHook sends Rego print() output to the logger at debug level.
type printHook struct{ logger *slog.Logger }

func (h printHook) Print(pctx print.Context, msg string) error {
	loc := ""
	if pctx.Location != nil {
		loc = pctx.Location.String()
	}
	h.logger.Debug("rego print", slog.String("location", loc), slog.String("message", msg))
	return nil
}
