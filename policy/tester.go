package policy

import (
	"context"
	"fmt"
	"io"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions configure [RunTests].
type TestOptions struct {
	// Verbose prints every test, not only failures (opa test -v).
	Verbose bool
	// Run selects tests by regular expression (opa test --run).
	Run string
}

// Test outcomes, as exit codes: the same as `opa test`.
const (
	TestsPassed = 0
	TestsError  = 1 // the policy or tests could not be loaded or compiled
	TestsFailed = 2 // at least one test failed or errored
)

// RunTests runs the Rego tests (rules named test_*) in the .rego files under
// paths, with OPA's test runner and the report format of `opa test`, and
// returns an outcome with the same meaning as opa test's exit code. The
// embedded Portcullis library is loaded too, unless the paths define it.
func RunTests(ctx context.Context, w io.Writer, paths []string, opts TestOptions) int {
	modules, store, err := tester.Load(paths, nil)
	if err != nil {
		fmt.Fprintln(w, err)
		return TestsError
	}
	if err := addLibrary(modules); err != nil {
		fmt.Fprintln(w, err)
		return TestsError
	}
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		fmt.Fprintln(w, err)
		return TestsError
	}
	defer store.Abort(ctx, txn)
	runner := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithEnablePrintStatements(true)).
		SetStore(store).
		SetModules(modules).
		CapturePrintOutput(true).
		Filter(opts.Run)
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		fmt.Fprintln(w, err)
		return TestsError
	}
	outcome := TestsPassed
	results := make(chan *tester.Result)
	go func() {
		defer close(results)
		for r := range ch {
			if !r.Pass() {
				outcome = TestsFailed
			}
			results <- r
		}
	}()
	reporter := tester.PrettyReporter{Output: w, Verbose: opts.Verbose, FailureLine: true}
	if err := reporter.Report(results); err != nil {
		fmt.Fprintln(w, err)
		return TestsError
	}
	return outcome
}
