package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-mcp/portcullis/internal/config"
)

// TestAuditLogger: telemetry.audit.output picks the audit stream's
// destination; a file is appended to and readable by its owner only.
func TestAuditLogger(t *testing.T) {
	dir := t.TempDir()
	parse := func(yaml string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(yaml), dir, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var stderr bytes.Buffer
	l, done, err := auditLogger(parse("telemetry: { audit: { format: text } }"), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("decision")
	done()
	if !strings.Contains(stderr.String(), "log=audit") {
		t.Errorf("stderr: %q", stderr.String())
	}

	if l, done, err := auditLogger(parse("telemetry: { audit: { output: none } }"), &stderr); err != nil || l != nil {
		t.Errorf("none: %v, %v", l, err)
	} else {
		done()
	}

	path := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(path, []byte("earlier\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, done, err = auditLogger(parse("telemetry: { audit: { output: audit.log } }"), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("tool call")
	done()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), "earlier\n{") || !strings.Contains(string(data), `"log":"audit"`) {
		t.Errorf("file: %q", data)
	}
	os.Remove(path)
	l, done, _ = auditLogger(parse("telemetry: { audit: { output: audit.log } }"), &stderr)
	l.Info("x")
	done()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("created file: %v, %v", fi.Mode(), err)
	}

	if _, _, err := auditLogger(parse("telemetry: { audit: { output: missing/audit.log } }"), &stderr); err == nil {
		t.Error("a file in a missing directory was opened")
	}
}
