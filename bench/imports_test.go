package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// The instrument stays outside the product: no package of the module but
// bench's own command imports it.
func TestNothingImportsBench(t *testing.T) {
	const self = "github.com/portcullis-mcp/portcullis/bench"
	out, err := exec.CommandContext(testContext(t), "go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}}`,
		"github.com/portcullis-mcp/portcullis/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], self) {
			continue
		}
		for _, imp := range fields[1:] {
			if imp == self || strings.HasPrefix(imp, self+"/") {
				t.Errorf("%s imports %s: bench is a measuring instrument, not a dependency", fields[0], imp)
			}
		}
	}
}
