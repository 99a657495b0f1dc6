package telemetry

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// writes records every Write call it gets.
type writes struct {
	mu    sync.Mutex
	calls []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

func (w *writes) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

func TestFlushingWriterBatches(t *testing.T) {
	out := &writes{}
	f := NewFlushingWriter(out, time.Hour) // only size and Flush flush here
	rec := strings.Repeat("x", 99) + "\n"
	for range 100 {
		if n, err := f.Write([]byte(rec)); n != len(rec) || err != nil {
			t.Fatal(n, err)
		}
	}
	calls := out.get()
	// 100-byte records, 4096-byte batches: 40 records each, whole.
	if len(calls) != 2 {
		t.Fatalf("%d writes before Flush, want 2", len(calls))
	}
	for _, c := range calls {
		if len(c) != 4000 || !strings.HasSuffix(c, "\n") {
			t.Errorf("a batch of %d bytes", len(c))
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	calls = out.get()
	if len(calls) != 3 || len(strings.Join(calls, "")) != 100*len(rec) {
		t.Fatalf("after Close: %d writes, %d bytes", len(calls), len(strings.Join(calls, "")))
	}
	// After Close, writes go straight through.
	_, _ = f.Write([]byte("late\n"))
	if calls := out.get(); calls[len(calls)-1] != "late\n" {
		t.Errorf("a write after Close was held: %q", calls)
	}
	// A record larger than a batch is written whole.
	var big bytes.Buffer
	g := NewFlushingWriter(&big, time.Hour)
	huge := strings.Repeat("y", 10000)
	_, _ = g.Write([]byte("a\n"))
	_, _ = g.Write([]byte(huge))
	_ = g.Close()
	if big.String() != "a\n"+huge {
		t.Errorf("large record: %d bytes", big.Len())
	}
}

func TestFlushingWriterInterval(t *testing.T) {
	out := &writes{}
	f := NewFlushingWriter(out, 10*time.Millisecond)
	defer f.Close()
	_, _ = f.Write([]byte("one\n"))
	deadline := time.Now().Add(10 * time.Second)
	for len(out.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the timer never flushed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.get(); len(got) != 1 || got[0] != "one\n" {
		t.Errorf("flushed %q", got)
	}
}
