//go:build linux

package telemetry

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// captureStdout runs f with file descriptor 1 redirected to a file and
// returns what was written: the console exporter holds on to os.Stdout, so
// replacing the variable is not enough.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	file, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	saved, err := syscall.Dup(1)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(saved)
	if err := syscall.Dup3(int(file.Fd()), 1, 0); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { _ = syscall.Dup3(saved, 1, 0) }()
		f()
	}()
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
