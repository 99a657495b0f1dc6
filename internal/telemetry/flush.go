package telemetry

import (
	"io"
	"sync"
	"time"
)

// FlushingWriter batches the records written to it (each Write is one
// record: slog handlers write one line per call) and passes them on at
// most Interval after the first of a batch, when a batch would pass
// pipeAtomic bytes, and on Flush or Close. The audit stream writes a record
// per decision; one write(2) each was a tenth of a Check's CPU. A batch
// never splits a record and, up to pipeAtomic bytes, reaches a pipe or
// terminal in one piece even when the operational log writes to the same
// stderr. A crash loses at most Interval of records.
type FlushingWriter struct {
	mu       sync.Mutex
	w        io.Writer
	interval time.Duration
	buf      []byte
	timer    *time.Timer // armed while buf holds records
	closed   bool
}

// pipeAtomic is the size up to which one write to a pipe is not
// interleaved with other writers' (PIPE_BUF on Linux).
const pipeAtomic = 4096

// NewFlushingWriter returns a FlushingWriter to w. It starts no goroutine:
// a timer fires the flush.
func NewFlushingWriter(w io.Writer, interval time.Duration) *FlushingWriter {
	return &FlushingWriter{w: w, interval: interval, buf: make([]byte, 0, pipeAtomic)}
}

// Write adds one record to the batch; after Close it writes through.
func (f *FlushingWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.w.Write(p)
	}
	if len(f.buf)+len(p) > pipeAtomic {
		if err := f.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= pipeAtomic {
			return f.w.Write(p)
		}
	}
	f.buf = append(f.buf, p...)
	if f.timer == nil {
		f.timer = time.AfterFunc(f.interval, func() { _ = f.Flush() })
	}
	return len(p), nil
}

// Flush writes the batch.
func (f *FlushingWriter) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushLocked()
}

func (f *FlushingWriter) flushLocked() error {
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.w.Write(f.buf)
	f.buf = f.buf[:0]
	return err
}

// Close flushes the batch; later writes go straight through.
func (f *FlushingWriter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return f.flushLocked()
}
