package policy

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunTests(t *testing.T) {
	ctx := testContext(t)
	pass := t.TempDir()
	writeFile(t, filepath.Join(pass, "p.rego"), "package x\n\nallow if input.user == \"alice\"\n")
	writeFile(t, filepath.Join(pass, "p_test.rego"), "package x\n\ntest_alice if allow with input as {\"user\": \"alice\"}\n\ntest_bob if not allow with input as {\"user\": \"bob\"}\n")

	fail := t.TempDir()
	writeFile(t, filepath.Join(fail, "p.rego"), "package x\n\nallow if input.user == \"alice\"\n")
	writeFile(t, filepath.Join(fail, "p_test.rego"), "package x\n\ntest_bob if allow with input as {\"user\": \"bob\"}\n")

	broken := t.TempDir()
	writeFile(t, filepath.Join(broken, "p.rego"), "package x\n\nallow if {\n")

	for _, tc := range []struct {
		name    string
		paths   []string
		verbose bool
		want    int
		output  []string
	}{
		{"pass", []string{pass}, false, TestsPassed, []string{"PASS: 2/2"}},
		{"pass verbose", []string{pass}, true, TestsPassed, []string{"data.x.test_alice: PASS", "data.x.test_bob: PASS"}},
		{"fail", []string{fail}, false, TestsFailed, []string{"data.x.test_bob: FAIL", "FAIL: 1/1"}},
		{"broken", []string{broken}, false, TestsError, []string{"p.rego:4"}},
		{"missing", []string{filepath.Join(pass, "nope")}, false, TestsError, []string{"nope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			got := RunTests(ctx, &out, tc.paths, TestOptions{Verbose: tc.verbose})
			if got != tc.want {
				t.Errorf("outcome = %d, want %d; output:\n%s", got, tc.want, out.String())
			}
			for _, s := range tc.output {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
		})
	}
}
