package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTelemetryAudit(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte("authn: { allow_anonymous: true }\npolicy: { paths: [.] }\n"), dir, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Audit{Output: AuditStderr, Format: "json"}); cfg.Telemetry.Audit != want || cfg.Telemetry.RecordSubject {
		t.Errorf("defaults: %+v, record_subject %v", cfg.Telemetry.Audit, cfg.Telemetry.RecordSubject)
	}
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"stderr", "telemetry: { audit: { output: stderr, format: text }, record_subject: true }", nil},
		{"none", "telemetry: { audit: { output: none } }", nil},
		{"relative file", "telemetry: { audit: { output: logs/audit.log } }", nil},
		{"bad", "telemetry: { audit: { output: stdout, format: xml } }", []string{
			`telemetry.audit.format: "xml" is not one of [json text]`,
			`telemetry.audit.output: stdout is not supported: use stderr or a file path`,
		}},
		{"empty", `telemetry: { audit: { output: "" } }`, []string{`telemetry.audit.output: want stderr, none or a file path`}},
		{"directory", "telemetry: { audit: { output: logs } }", []string{`telemetry.audit.output: ` + filepath.Join(dir, "logs") + ` is a directory, want a file`}},
		{"no directory", "telemetry: { audit: { output: missing/audit.log } }", []string{
			`telemetry.audit.output: ` + filepath.Join(dir, "missing") + `: no such file or directory`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte("authn: { allow_anonymous: true }\npolicy: { paths: [.] }\n"+tc.yaml+"\n"), dir, env(nil))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, messages(cfg.Validate())); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
	cfg, err = Parse([]byte("telemetry: { audit: { outptu: x } }\n"), dir, env(nil))
	if err == nil {
		t.Fatalf("unknown key accepted: %+v", cfg.Telemetry.Audit)
	}
}
