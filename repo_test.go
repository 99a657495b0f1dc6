// Tests of the repository as a whole: who may import whom, and package
// documentation.
package portcullis_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/portcullis-mcp/portcullis"

type pkg struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

// TestImports pins the dependency rules of STYLE.md: only policy talks to
// OPA, and only through its v1 packages; nothing imports the command.
func TestImports(t *testing.T) {
	opaAllowed := map[string]bool{module + "/policy": true, module + "/rego": true}
	for _, p := range listPackages(t) {
		for _, imp := range p.Imports {
			switch {
			case strings.HasPrefix(imp, "github.com/open-policy-agent/opa/") && !strings.HasPrefix(imp, "github.com/open-policy-agent/opa/v1/"):
				t.Errorf("%s imports %s: use the v1 packages", p.ImportPath, imp)
			case strings.HasPrefix(imp, "github.com/open-policy-agent/opa/") && !opaAllowed[p.ImportPath]:
				t.Errorf("%s imports %s: only policy uses OPA; use policy.Input and policy.Decision", p.ImportPath, imp)
			case strings.HasPrefix(imp, module+"/cmd/"):
				t.Errorf("%s imports the command %s", p.ImportPath, imp)
			case strings.HasPrefix(imp, "log") && imp == "log":
				t.Errorf("%s imports the global logger package log: use *slog.Logger", p.ImportPath)
			}
		}
	}
}

// TestPackageDocs checks that every package has a doc comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		documented := false
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && strings.HasPrefix(af.Doc.Text(), "Package "+p.Name+" ") || p.Name == "main" && af.Doc != nil {
				documented = true
			}
		}
		if !documented && len(p.GoFiles) > 0 {
			t.Errorf("package %s has no doc comment (\"Package %s ...\")", p.ImportPath, p.Name)
		}
	}
}
