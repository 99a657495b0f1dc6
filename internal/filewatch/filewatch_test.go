package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// watch runs Watch until the test ends and counts the callbacks.
func watch(t *testing.T, opts Options) *atomic.Int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	done := make(chan error, 1)
	started := make(chan struct{})
	opts.Debounce = 20 * time.Millisecond
	go func() {
		done <- Watch(ctx, opts, func() {
			if calls.Add(1) == 1 && opts.Initial {
				close(started)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	if opts.Initial {
		<-started
	} else {
		time.Sleep(50 * time.Millisecond) // let the watches register
	}
	return &calls
}

func waitCalls(t *testing.T, calls *atomic.Int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for calls.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("callbacks = %d, want %d", calls.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatchFileByRename(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "keys.yaml")
	write(t, f, "a")
	calls := watch(t, Options{Paths: []string{f}, Initial: true, Match: func(n string) bool { return filepath.Clean(n) == f }})
	waitCalls(t, calls, 1) // the initial call
	for range 5 {          // a burst makes one callback
		write(t, f, "b")
	}
	waitCalls(t, calls, 2)
	time.Sleep(100 * time.Millisecond)
	if got := calls.Load(); got != 2 {
		t.Errorf("a burst of writes made %d callbacks, want 1 (plus the initial one)", got-1)
	}
	write(t, filepath.Join(dir, "other.yaml"), "x") // filtered out
	time.Sleep(100 * time.Millisecond)
	if got := calls.Load(); got != 2 {
		t.Errorf("an unrelated file triggered a callback (%d)", got)
	}
}

func TestWatchRecursive(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a", "p.rego"), "x")
	// Initial: the first callback says the watches are in place, however
	// slow the machine.
	calls := watch(t, Options{Paths: []string{dir}, Recursive: true, Initial: true})
	write(t, filepath.Join(dir, "a", "p.rego"), "y")
	waitCalls(t, calls, 2)
	// A directory created later is watched too.
	if err := os.Mkdir(filepath.Join(dir, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, calls, 3)
	time.Sleep(50 * time.Millisecond)
	before := calls.Load()
	write(t, filepath.Join(dir, "new", "q.rego"), "z")
	waitCalls(t, calls, before+1)
}

func TestWatchNotRecursive(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "sub", "x.yaml"), "x")
	calls := watch(t, Options{Paths: []string{dir}, Initial: true})
	write(t, filepath.Join(dir, "sub", "x.yaml"), "y")
	time.Sleep(150 * time.Millisecond)
	if calls.Load() != 1 {
		t.Error("a change below a non-recursive directory triggered a callback")
	}
	write(t, filepath.Join(dir, "top.yaml"), "y")
	waitCalls(t, calls, 2)
}

func TestWatchMissingDirectory(t *testing.T) {
	err := Watch(context.Background(), Options{Paths: []string{filepath.Join(t.TempDir(), "no", "such", "file")}}, func() {})
	if err == nil || !strings.Contains(err.Error(), "no") {
		t.Fatalf("err = %v", err)
	}
}
