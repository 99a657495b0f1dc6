package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"github.com/portcullis-mcp/portcullis/internal/filewatch"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const watchTestTimeout = 20 * time.Second

// recordHandler sends every log record to a channel.
type recordHandler struct{ ch chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.ch <- r.Clone()
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func recordError(r slog.Record) string {
	var s string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == watchAttrError {
			s = fmt.Sprint(a.Value.Any())
		}
		return true
	})
	return s
}

func limitsYAML(requests int) []byte {
	return fmt.Appendf(nil, "domain: mcp\ndescriptors:\n  - key: subject\n    rate_limit: {unit: second, requests_per_unit: %d}\n", requests)
}

// replaceFile writes data next to path and renames it over path, as
// editors and deployment tools do.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatchConfigReload(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), watchTestTimeout)
	defer cancel()
	dir := t.TempDir()
	path := filepath.Join(dir, "limits.yaml")
	if err := os.WriteFile(path, limitsYAML(1), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := make(chan slog.Record, 100)
	installs := make(chan *Config, 100)
	done := make(chan error, 1)
	go func() {
		done <- WatchConfig(ctx, []string{path}, slog.New(recordHandler{logs}), func(c *Config) { installs <- c })
	}()

	waitInstall := func(want uint64) {
		t.Helper()
		select {
		case c := <-installs:
			ls := c.Match("mcp", []Entry{{"subject", "bob"}})
			if len(ls) != 1 || ls[0].Requests != want {
				t.Fatalf("installed config matches %+v, want %d requests", ls, want)
			}
		case <-ctx.Done():
			t.Fatalf("no config with %d requests installed", want)
		}
	}
	waitError := func() string {
		t.Helper()
		for {
			select {
			case r := <-logs:
				if r.Level == slog.LevelError {
					return recordError(r)
				}
			case <-ctx.Done():
				t.Fatal("no error logged")
			}
		}
	}

	// The configuration as it is when the watch starts.
	waitInstall(1)

	// A good file, written in place.
	if err := os.WriteFile(path, limitsYAML(2), 0o644); err != nil {
		t.Fatal(err)
	}
	waitInstall(2)

	// A bad file: logged with the file and the path, not installed.
	replaceFile(t, path, []byte("domain: mcp\ndescriptors:\n  - key: subject\n    rate_limit: {unit: fortnight, requests_per_unit: 3}\n"))
	msg := waitError()
	want := path + `: descriptors[0].rate_limit.unit: "fortnight" is not a unit`
	if !strings.Contains(msg, want) {
		t.Errorf("logged error %q does not contain %q", msg, want)
	}
	select {
	case c := <-installs:
		t.Fatalf("a bad configuration was installed: %v", c.Match("mcp", []Entry{{"subject", "bob"}}))
	default:
	}

	// Good again, replaced by rename: installed.
	replaceFile(t, path, limitsYAML(4))
	waitInstall(4)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchConfig returned %v, want nil", err)
		}
	case <-time.After(watchTestTimeout):
		t.Fatal("WatchConfig did not return after its context ended")
	}
	select {
	case c := <-installs:
		t.Errorf("unexpected install: %v", c.Domains())
	default:
	}
}

func TestWatchConfigDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), watchTestTimeout)
	defer cancel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), limitsYAML(1), 0o644); err != nil {
		t.Fatal(err)
	}
	installs := make(chan *Config, 100)
	done := make(chan error, 1)
	go func() { done <- WatchConfig(ctx, []string{dir}, nil, func(c *Config) { installs <- c }) }()
	next := func() *Config {
		t.Helper()
		select {
		case c := <-installs:
			return c
		case <-ctx.Done():
			t.Fatal("nothing installed")
			return nil
		}
	}
	if got := next().Domains(); len(got) != 1 || got[0] != "mcp" {
		t.Fatalf("initial domains %v", got)
	}
	// A new file in the directory is picked up.
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("domain: other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := next().Domains(); len(got) != 2 {
		t.Fatalf("domains after adding b.yaml: %v", got)
	}
	// A change to a file that is not loaded installs nothing new.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-installs:
		t.Fatalf("install after an unrelated change: %v", c.Domains())
	case <-time.After(3 * filewatch.DefaultDebounce):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("WatchConfig: %v", err)
	}
}

func TestWatchConfigMissingDirectory(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), watchTestTimeout)
	defer cancel()
	missing := filepath.Join(t.TempDir(), "gone", "limits.yaml")
	err := WatchConfig(ctx, []string{missing}, nil, func(*Config) { t.Error("install called") })
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WatchConfig = %v, want an error wrapping os.ErrNotExist", err)
	}
}
