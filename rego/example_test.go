package rego_test

import (
	"fmt"
	"io/fs"
	"strings"

	"github.com/portcullis-mcp/portcullis/rego"
)

// Callers that load a policy leave out the Rego tests.
func Example() {
	for _, fsys := range []fs.FS{rego.Library, rego.Default} {
		_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.rego") {
				return err
			}
			fmt.Println(p)
			return nil
		})
	}
	// Output:
	// lib/portcullis/mcp/mcp.rego
	// default/data.rego
	// default/policy.rego
}

// Each example is a directory to load, with the library when it imports it.
func ExampleExamples() {
	dirs, _ := fs.ReadDir(rego.Examples, "examples")
	for _, d := range dirs {
		fmt.Println("examples/" + d.Name())
	}
	// Output:
	// examples/opa-envoy
	// examples/rbac
	// examples/tenant
}
