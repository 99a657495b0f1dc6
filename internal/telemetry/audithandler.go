package telemetry

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
)

// auditHandler is the JSON handler of the audit stream. It writes exactly
// the bytes slog.NewJSONHandler writes with the same options, at a fraction
// of the cost for the records the stream is made of: a message, the
// attributes of With and of the record, all of them strings, integers,
// booleans, floats, durations or times. It encodes those itself into a
// pooled buffer, the With attributes once; a record or handler with
// anything else (a group, a LogValuer, an Any, a time slog reports as out
// of range) is handed whole to an embedded slog.JSONHandler that has the
// same attributes and groups and writes to the same writer.
//
// Each record is one Write, serialized with every other Write of the
// handler and its clones, the embedded handler's included. It is safe for
// concurrent use.
type auditHandler struct {
	std   slog.Handler // slog's JSONHandler with the same attributes and groups
	level slog.Leveler // nil: info
	pre   []byte       // the With attributes, each as ,"key":value
	slow  bool         // a group or With attribute the handler does not encode: slog writes every record
	w     io.Writer
	mu    *sync.Mutex // shared by the clones and with slog's writes
	bufs  *sync.Pool  // of *[]byte, shared by the clones
}

// maxPooledRecord is the largest record buffer put back in the pool, as
// slog's own handlers do.
const maxPooledRecord = 16 << 10

// newAuditJSONHandler returns a handler writing what slog.NewJSONHandler(w,
// opts) writes. Options it does not reproduce (AddSource, ReplaceAttr) get
// slog's handler itself.
func newAuditJSONHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	if opts.AddSource || opts.ReplaceAttr != nil {
		return slog.NewJSONHandler(w, opts)
	}
	mu := new(sync.Mutex)
	return &auditHandler{
		std:   slog.NewJSONHandler(&lockedWriter{mu: mu, w: w}, opts),
		level: opts.Level,
		w:     w,
		mu:    mu,
		bufs:  &sync.Pool{New: func() any { return new([]byte) }},
	}
}

// Enabled reports whether level is at least the handler's.
func (h *auditHandler) Enabled(_ context.Context, level slog.Level) bool {
	minLevel := slog.LevelInfo
	if h.level != nil {
		minLevel = h.level.Level()
	}
	return level >= minLevel
}

// WithAttrs returns a handler whose records carry attrs after h's.
func (h *auditHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.std = h.std.WithAttrs(attrs)
	if !h.slow {
		pre := slices.Clip(h.pre) // the clones must not share appends
		for _, a := range attrs {
			var ok bool
			if pre, ok = appendAuditAttr(pre, a); !ok {
				h2.slow, pre = true, nil
				break
			}
		}
		h2.pre = pre
	}
	return &h2
}

// WithGroup returns a handler whose later attributes are in group name.
// Groups are slog's to write.
func (h *auditHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	h2.std = h.std.WithGroup(name)
	h2.slow, h2.pre = true, nil
	return &h2
}

// Handle writes r as one line of JSON, in one Write.
func (h *auditHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.slow {
		return h.std.Handle(ctx, r)
	}
	bp := h.bufs.Get().(*[]byte)
	b, ok := h.appendRecord((*bp)[:0], r)
	var err error
	if ok {
		h.mu.Lock()
		_, err = h.w.Write(b)
		h.mu.Unlock()
	}
	if cap(b) <= maxPooledRecord {
		*bp = b
		h.bufs.Put(bp)
	}
	if !ok {
		return h.std.Handle(ctx, r)
	}
	return err
}

// appendRecord appends the line slog's JSONHandler writes for r, or
// reports false if r holds something it leaves to slog.
func (h *auditHandler) appendRecord(b []byte, r slog.Record) ([]byte, bool) {
	b = append(b, '{')
	if !r.Time.IsZero() {
		t := r.Time.Round(0) // as slog: no monotonic reading
		if !timeInRange(t) {
			return b, false
		}
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendSlogString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendSlogString(b, r.Message)
	b = append(b, h.pre...)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAuditAttr(b, a)
		return ok
	})
	if !ok {
		return b, false
	}
	return append(b, '}', '\n'), true
}

// appendAuditAttr appends a as ,"key":value the way slog's JSONHandler
// writes an attribute outside any group, nothing for an attribute slog
// elides, or reports false for a kind of value it leaves to slog.
func appendAuditAttr(b []byte, a slog.Attr) ([]byte, bool) {
	v := a.Value
	k := v.Kind()
	if a.Key == "" && k == slog.KindAny && v.Any() == nil {
		return b, true // slog elides the empty Attr
	}
	switch k {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindFloat64,
		slog.KindBool, slog.KindDuration, slog.KindTime:
	default: // Any, LogValuer, Group
		return b, false
	}
	b = append(b, ',')
	b = appendSlogString(b, a.Key)
	b = append(b, ':')
	switch k {
	case slog.KindString:
		b = appendSlogString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		return appendJSONFloat(b, v.Float64(), 64) // slog writes floats with encoding/json
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = strconv.AppendInt(b, int64(v.Duration()), 10) // as encoding/json
	case slog.KindTime:
		t := v.Time()
		if !timeInRange(t) {
			return b, false
		}
		b = append(b, '"')
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return b, true
}

// timeInRange reports whether t has the four-digit year RFC 3339 allows;
// slog writes an error beside any other.
func timeInRange(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y < 10000
}

// lockedWriter serializes the embedded slog handler's writes with the
// audit handler's own.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

var _ slog.Handler = (*auditHandler)(nil)
