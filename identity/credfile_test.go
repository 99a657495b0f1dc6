package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// credTestTimeout bounds every test context of the credential providers.
const credTestTimeout = 30 * time.Second

// credTestContext returns a context with a deadline, cancelled when the
// test ends.
func credTestContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), credTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// replaceCredFile writes content to path the way editors and ConfigMaps do:
// a new file renamed over the old one.
func replaceCredFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// runProvider starts run in a goroutine and, when the test ends, cancels it
// and checks that it returned nil.
func runProvider(t *testing.T, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), credTestTimeout)
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// waitReload returns the outcome of the next reload reported on ch.
func waitReload(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no reload within 10s")
		return nil
	}
}

// credLogRecorder is a slog.Handler that keeps what is logged.
type credLogRecorder struct {
	mu      sync.Mutex
	records []string
	levels  []slog.Level
}

func (h *credLogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *credLogRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *credLogRecorder) WithGroup(string) slog.Handler            { return h }
func (h *credLogRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, b.String())
	h.levels = append(h.levels, r.Level)
	return nil
}

// text returns everything logged, one record a line.
func (h *credLogRecorder) text() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.records, "\n")
}

// count returns how many records were logged at level.
func (h *credLogRecorder) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, l := range h.levels {
		if l == level {
			n++
		}
	}
	return n
}

func TestAPIKeyDecodeCredFile(t *testing.T) {
	type entry struct {
		Name  string   `yaml:"name"`
		Roles []string `yaml:"roles"`
	}
	type file struct {
		Entries []entry `yaml:"entries"`
	}
	for _, tc := range []struct {
		name    string
		yaml    string
		want    file
		wantErr []string
	}{
		{name: "empty", yaml: ""},
		{name: "comment only", yaml: "# nothing yet\n"},
		{name: "good", yaml: "entries:\n  - name: a\n    roles: [x]\n", want: file{Entries: []entry{{Name: "a", Roles: []string{"x"}}}}},
		{name: "unknown top-level key", yaml: "entry: []\n", wantErr: []string{"entry (line 1): unknown key"}},
		{name: "unknown entry keys", yaml: "entries:\n  - name: a\n  - nme: b\n    rolez: [x]\n",
			wantErr: []string{"entries[1].nme (line 3): unknown key", "entries[1].rolez (line 4): unknown key"}},
		{name: "wrong type", yaml: "entries:\n  - name: [a]\n", wantErr: []string{"line 2"}},
		{name: "alias", yaml: "entries:\n  - &a {name: a}\n  - *a\n", wantErr: []string{"entries[1] (line 3): YAML aliases are not supported"}},
		{name: "duplicate key", yaml: "entries:\n  - name: a\n    name: b\n", wantErr: []string{"entries[0].name (line 3): duplicate key"}},
		{name: "two documents", yaml: "entries: []\n---\nentries: []\n", wantErr: []string{"more than one YAML document"}},
		{name: "not YAML", yaml: "entries: [\n", wantErr: []string{"yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got file
			err := decodeCredFile([]byte(tc.yaml), &got)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(got.Entries) != len(tc.want.Entries) || len(got.Entries) > 0 && got.Entries[0].Name != tc.want.Entries[0].Name {
					t.Errorf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestBasicCredCacheWithoutRun(t *testing.T) {
	var c credCache[int]
	c.size = 10
	c.set("k", 1, time.Minute)
	if _, ok := c.get("k"); ok {
		t.Error("a closed cache remembered a value")
	}
	if err := c.open(); err != nil {
		t.Fatal(err)
	}
	if err := c.open(); err == nil {
		t.Error("a second open succeeded")
	}
	c.set("k", 1, time.Minute)
	c.set("zero", 2, 0)
	c.wait()
	if v, ok := c.get("k"); !ok || v != 1 {
		t.Errorf("get = %v, %v; want 1, true", v, ok)
	}
	if _, ok := c.get("zero"); ok {
		t.Error("a value with no time to live was kept")
	}
	c.close()
	if _, ok := c.get("k"); ok {
		t.Error("a closed cache remembered a value")
	}

	// Entries are counted, not their bytes: a cache of 1000 holds 500.
	big := credCache[int]{size: 1000}
	if err := big.open(); err != nil {
		t.Fatal(err)
	}
	defer big.close()
	for n := range 500 {
		big.set(fmt.Sprint(n), n, time.Minute)
	}
	big.wait()
	kept := 0
	for n := range 500 {
		if _, ok := big.get(fmt.Sprint(n)); ok {
			kept++
		}
	}
	if kept < 450 {
		t.Errorf("a cache of 1000 kept %d of 500 entries", kept)
	}
	if _, ok := c.get("k"); ok {
		t.Error("a closed cache remembered a value")
	}
}

func TestAPIKeyCredFileReadError(t *testing.T) {
	// A file that disappears keeps the previous credentials.
	dir := t.TempDir()
	path := filepath.Join(dir, "f.yaml")
	applied := 0
	f := &credFile{path: path, what: "test file", provider: "p", logger: slog.New(slog.DiscardHandler),
		apply: func([]byte) (int, error) { applied++; return 0, nil }}
	if err := f.load(); err == nil || !strings.Contains(err.Error(), "test file") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("load of a missing file: %v", err)
	}
	replaceCredFile(t, path, "a")
	if err := f.load(); err != nil {
		t.Fatal(err)
	}
	f.reload() // unchanged: not applied again
	if applied != 1 {
		t.Errorf("applied %d times, want 1", applied)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	f.reload()
	if applied != 1 {
		t.Errorf("applied %d times after the file went away, want 1", applied)
	}
}
