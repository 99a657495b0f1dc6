package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// auditTime is the time of the test records: fixed, with nanoseconds and a
// zone, so the output compares.
var auditTime = time.Date(2025, 6, 18, 9, 30, 15, 123456789, time.FixedZone("", 2*3600))

// typicalAuditRecord is a decision record as extauthz's writeAudit makes
// it, with every optional attribute present.
func typicalAuditRecord() slog.Record {
	rec := slog.NewRecord(auditTime, slog.LevelInfo, "decision", 0)
	attrs := [...]slog.Attr{
		slog.String("decision_id", "01JY0B7Q6X9R5D2M8K4T3W1ZVA"),
		slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
		slog.String("outcome", "denied"),
		slog.String("reason", "policy"),
		slog.Int("status", 403),
		slog.String("source_address", "10.0.3.17"),
		slog.String("policy_reason", `tool "shell.exec" is not allowed for role dev`),
		slog.Bool("dry_run", true),
		slog.String("subject", "alice@example.com"),
		slog.String("client_id", "vscode-mcp"),
		slog.String("provider", "corp"),
		slog.String("kind", "user"),
		slog.String("mcp_method", "tools/call"),
		slog.String("mcp_name", "shell.exec"),
		slog.String("args_sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
		slog.Int64("latency_us", 87),
	}
	rec.AddAttrs(attrs[:]...)
	return rec
}

// handlerPair is the audit handler and slog's JSONHandler with the same
// options, attributes and groups, each writing to its own buffer.
type handlerPair struct {
	got, want      bytes.Buffer
	audit, jsonRef slog.Handler
}

func newHandlerPair(opts *slog.HandlerOptions) *handlerPair {
	p := new(handlerPair)
	p.audit = newAuditJSONHandler(&p.got, opts)
	p.jsonRef = slog.NewJSONHandler(&p.want, opts)
	return p
}

func (p *handlerPair) withAttrs(attrs ...slog.Attr) {
	p.audit, p.jsonRef = p.audit.WithAttrs(attrs), p.jsonRef.WithAttrs(attrs)
}

func (p *handlerPair) withGroup(name string) {
	p.audit, p.jsonRef = p.audit.WithGroup(name), p.jsonRef.WithGroup(name)
}

func (p *handlerPair) handle(t *testing.T, r slog.Record) {
	t.Helper()
	ctx := context.Background()
	if got, want := p.audit.Enabled(ctx, r.Level), p.jsonRef.Enabled(ctx, r.Level); got != want {
		t.Fatalf("Enabled(%v) = %v, slog says %v", r.Level, got, want)
	}
	if err := p.audit.Handle(ctx, r.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := p.jsonRef.Handle(ctx, r.Clone()); err != nil {
		t.Fatal(err)
	}
}

func (p *handlerPair) check(t *testing.T) {
	t.Helper()
	if diff := cmp.Diff(p.want.String(), p.got.String()); diff != "" {
		t.Fatalf("output differs from slog's JSONHandler (-slog +audit):\n%s", diff)
	}
}

type valuer struct{ v slog.Value }

func (v valuer) LogValue() slog.Value { return v.v }

func TestAuditHandlerCases(t *testing.T) {
	farFuture := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		opts  *slog.HandlerOptions
		setup func(p *handlerPair)
		rec   func() slog.Record
		fast  bool // the handler writes it itself
	}{
		{name: "typical", rec: typicalAuditRecord, fast: true},
		{name: "with audit mark", setup: func(p *handlerPair) { p.withAttrs(slog.String(AuditKey, AuditValue)) }, rec: typicalAuditRecord, fast: true},
		{name: "no attrs", rec: func() slog.Record { return slog.NewRecord(auditTime, slog.LevelWarn, "m", 0) }, fast: true},
		{name: "zero time", rec: func() slog.Record { return slog.NewRecord(time.Time{}, slog.LevelError+2, "no time", 0) }, fast: true},
		{name: "monotonic time", rec: func() slog.Record { return slog.NewRecord(time.Now(), slog.LevelInfo, "now", 0) }, fast: true},
		{name: "year out of range", rec: func() slog.Record { return slog.NewRecord(farFuture, slog.LevelInfo, "m", 0) }},
		{name: "debug level", opts: &slog.HandlerOptions{Level: slog.LevelDebug}, rec: func() slog.Record {
			return slog.NewRecord(auditTime, slog.LevelDebug-1, "debug", 0)
		}, fast: true},
		{name: "escapes", rec: func() slog.Record {
			r := slog.NewRecord(auditTime, slog.LevelInfo, "\b\f\n\r\t\x00\x1f\x7f\"\\/<>&\u2028\u2029\xff\xed\xa0\x80é😀", 0)
			r.AddAttrs(slog.String("k\b\"ey\xc3", "v\f\u2029\xe2\x82"))
			return r
		}, fast: true},
		{name: "every kind", rec: func() slog.Record {
			r := slog.NewRecord(auditTime, slog.LevelInfo, "kinds", 0)
			r.AddAttrs(slog.Int("int", -3), slog.Int64("i64", math.MinInt64), slog.Uint64("u64", math.MaxUint64),
				slog.Bool("f", false), slog.Duration("d", 1500*time.Millisecond), slog.Float64("x", 1e21), slog.Float64("y", 1e-7),
				slog.Float64("z", math.Copysign(0, -1)), slog.Float64("w", 0.1), slog.Time("t", auditTime), slog.Time("zero", time.Time{}),
				slog.Time("utc", auditTime.UTC()), slog.String("", "empty key"), slog.Attr{}, slog.Any("", nil))
			return r
		}, fast: true},
		{name: "NaN", rec: func() slog.Record {
			r := slog.NewRecord(auditTime, slog.LevelInfo, "m", 0)
			r.AddAttrs(slog.Float64("nan", math.NaN()))
			return r
		}},
		{name: "time attr out of range", rec: func() slog.Record {
			r := slog.NewRecord(auditTime, slog.LevelInfo, "m", 0)
			r.AddAttrs(slog.Time("t", farFuture))
			return r
		}},
		{name: "any", rec: func() slog.Record {
			r := slog.NewRecord(auditTime, slog.LevelInfo, "m", 0)
			r.AddAttrs(slog.String("a", "b"), slog.Any("err", errors.New("boom")), slog.Any("m", map[string]int{"x": 1}), slog.Any("nil", nil))
			return r
		}},
		{name: "log valuer", rec: func() slog.Record {
			r := slog.NewRecord(auditTime, slog.LevelInfo, "m", 0)
			r.AddAttrs(slog.Any("v", valuer{slog.IntValue(7)}))
			return r
		}},
		{name: "group attr", rec: func() slog.Record {
			r := slog.NewRecord(auditTime, slog.LevelInfo, "m", 0)
			r.AddAttrs(slog.Group("g", slog.Int("a", 1)), slog.Group("", slog.Int("inline", 2)), slog.Int("after", 3))
			return r
		}},
		{name: "with group", setup: func(p *handlerPair) {
			p.withAttrs(slog.String(AuditKey, AuditValue))
			p.withGroup("req")
			p.withAttrs(slog.Int("n", 1))
			p.withGroup("inner")
		}, rec: typicalAuditRecord},
		{name: "with group, no attrs", setup: func(p *handlerPair) { p.withGroup("g") }, rec: func() slog.Record {
			return slog.NewRecord(auditTime, slog.LevelInfo, "m", 0)
		}},
		{name: "with any", setup: func(p *handlerPair) { p.withAttrs(slog.Int("a", 1), slog.Any("p", struct{ X int }{1})) }, rec: typicalAuditRecord},
		{name: "with log valuer", setup: func(p *handlerPair) { p.withAttrs(slog.Any("v", valuer{slog.StringValue("x")})) }, rec: typicalAuditRecord},
		{name: "with empty", setup: func(p *handlerPair) {
			p.withAttrs(slog.Attr{})
			p.withAttrs(slog.Group("empty"))
			p.withAttrs(slog.Int("a", 1))
		}, rec: typicalAuditRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newHandlerPair(tc.opts)
			if tc.setup != nil {
				tc.setup(p)
			}
			p.handle(t, tc.rec())
			p.handle(t, tc.rec()) // a second record through the same handlers
			p.check(t)
			h, ok := p.audit.(*auditHandler)
			if !ok {
				t.Fatalf("handler %T", p.audit)
			}
			_, fast := h.appendRecord(nil, tc.rec())
			if fast = fast && !h.slow; fast != tc.fast {
				t.Errorf("written by the audit handler itself: %v, want %v", fast, tc.fast)
			}
		})
	}
}

// TestAuditHandlerOptions: options the audit handler does not reproduce
// get slog's JSONHandler.
func TestAuditHandlerOptions(t *testing.T) {
	for _, opts := range []*slog.HandlerOptions{
		{AddSource: true},
		{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return a }},
	} {
		if h := newAuditJSONHandler(io.Discard, opts); !isSlogJSON(h) {
			t.Errorf("%+v: handler %T, want slog's", opts, h)
		}
	}
}

func isSlogJSON(h slog.Handler) bool {
	_, ok := h.(*slog.JSONHandler)
	return ok
}

// TestAuditHandlerGenerated compares the audit handler with slog's
// JSONHandler over many generated handlers and records.
func TestAuditHandlerGenerated(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 500
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range n {
		// Every other handler gets only what the audit handler writes
		// itself, and must write it itself.
		g := attrGen{valueGen: valueGen{r: r}, plain: i%2 == 0}
		var opts *slog.HandlerOptions
		switch r.IntN(3) {
		case 0:
			opts = &slog.HandlerOptions{Level: slog.LevelDebug}
		case 1:
			opts = &slog.HandlerOptions{Level: slog.LevelInfo}
		}
		p := newHandlerPair(opts)
		for range r.IntN(4) {
			if !g.plain && r.IntN(6) == 0 {
				p.withGroup(g.string())
			} else {
				p.withAttrs(g.attrs(3)...)
			}
		}
		for range 1 + r.IntN(3) {
			rec := g.record()
			p.handle(t, rec)
			h := p.audit.(*auditHandler)
			if _, fast := h.appendRecord(nil, rec); g.plain && (!fast || h.slow) {
				t.Fatalf("audit handler left a record of plain attributes to slog: %s", p.got.Bytes())
			}
		}
		p.check(t)
	}
}

// attrGen generates records and attributes: mostly of the kinds the audit
// handler writes itself, some (unless plain) of those it leaves to slog.
type attrGen struct {
	valueGen
	plain bool
}

var genLevels = []slog.Level{slog.LevelDebug - 3, slog.LevelDebug, slog.LevelInfo, slog.LevelInfo + 2, slog.LevelWarn, slog.LevelError, slog.LevelError + 5}

func (g attrGen) record() slog.Record {
	var tm time.Time
	switch g.r.IntN(8) {
	case 0: // zero: omitted
	case 1:
		tm = time.Date(g.r.IntN(10000), time.Month(1+g.r.IntN(12)), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), g.r.IntN(1e9), time.UTC)
	case 2:
		secs := g.r.Int64N(250e9) // to the year 9892
		if !g.plain && g.r.IntN(2) == 0 {
			secs = g.r.Int64N(1 << 40) // beyond 9999: slog writes an error
		}
		tm = time.Unix(secs, int64(g.r.IntN(1e9))).In(time.FixedZone("X", (g.r.IntN(49)-24)*1800))
	default:
		tm = auditTime.Add(time.Duration(g.r.Int64N(1e15)))
	}
	rec := slog.NewRecord(tm, genLevels[g.r.IntN(len(genLevels))], g.string(), 0)
	rec.AddAttrs(g.attrs(20)...)
	return rec
}

func (g attrGen) attrs(n int) []slog.Attr {
	attrs := make([]slog.Attr, g.r.IntN(n+1))
	for i := range attrs {
		attrs[i] = g.attr(0)
	}
	return attrs
}

func (g attrGen) attr(depth int) slog.Attr {
	key := g.string()
	if g.r.IntN(8) != 0 {
		key = g.pick("decision_id", "outcome", "status", "latency_us", "k", "a.b", "time", "msg")
	}
	kinds := 30
	if g.plain {
		kinds = 21
	}
	switch k := g.r.IntN(kinds); {
	case k < 10:
		return slog.String(key, g.string())
	case k < 12:
		return slog.Int(key, int(g.r.Int64()>>g.r.IntN(64)))
	case k < 14:
		return slog.Int64(key, -g.r.Int64())
	case k < 15:
		return slog.Uint64(key, g.r.Uint64())
	case k < 16:
		return slog.Bool(key, g.r.IntN(2) == 0)
	case k < 17:
		return slog.Duration(key, time.Duration(g.r.Int64()>>g.r.IntN(64)))
	case k < 19:
		f := g.float() // NaN and infinities included, unless plain
		for g.plain && (math.IsNaN(f) || math.IsInf(f, 0)) {
			f = g.float()
		}
		return slog.Float64(key, f)
	case k < 21:
		return slog.Time(key, auditTime.Add(time.Duration(g.r.Int64N(1e18)-5e17)).In(time.FixedZone("", (g.r.IntN(49)-24)*1800)))
	case k < 22:
		return slog.Attr{} // elided
	case k < 23:
		return slog.Any("", nil) // elided
	case k < 24:
		return slog.Any(key, g.valueGen.value(3))
	case k < 25:
		return slog.Any(key, errors.New(g.string()))
	case k < 26:
		return slog.Any(key, valuer{slog.StringValue(g.string())})
	case k < 27 && depth < 2:
		attrs := make([]slog.Attr, g.r.IntN(3))
		for i := range attrs {
			attrs[i] = g.attr(depth + 1)
		}
		return slog.Attr{Key: key, Value: slog.GroupValue(attrs...)}
	default:
		return slog.String(key, g.pick("allowed", "denied", "tools/call", ""))
	}
}

// TestAuditHandlerConcurrent writes from many goroutines through the
// handler, its clones and the records it leaves to slog: every Write must
// be one whole record, and no two Writes may overlap (-race checks the
// writer, which has no lock of its own).
func TestAuditHandlerConcurrent(t *testing.T) {
	w := &recordWriter{t: t}
	base := slog.New(newAuditJSONHandler(w, nil)).With(slog.String(AuditKey, AuditValue))
	loggers := []*slog.Logger{
		base,
		base.With(slog.Int("n", 1)),             // fast, a clone
		base.WithGroup("g"),                     // slog's
		base.With(slog.Any("any", []int{1, 2})), // slog's
	}
	const goroutines, records = 8, 200
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			l := loggers[i%len(loggers)]
			for j := range records {
				rec := typicalAuditRecord()
				if j%5 == 0 {
					rec.AddAttrs(slog.Any("v", valuer{slog.IntValue(j)})) // slog's
				}
				_ = l.Handler().Handle(context.Background(), rec)
			}
		})
	}
	wg.Wait()
	if got, want := w.n, goroutines*records; got != want {
		t.Errorf("%d records, want %d", got, want)
	}
}

// recordWriter checks that each Write is one JSON record and that Writes
// do not overlap.
type recordWriter struct {
	t      *testing.T
	active atomic.Bool
	n      int // records written; guarded by the handler's lock
}

func (w *recordWriter) Write(p []byte) (int, error) {
	if !w.active.CompareAndSwap(false, true) {
		w.t.Error("overlapping Writes")
	}
	defer w.active.Store(false)
	line, ok := bytes.CutSuffix(p, []byte("\n"))
	if !ok || bytes.IndexByte(line, '\n') >= 0 || !json.Valid(line) {
		w.t.Errorf("Write of %q: not one record", p)
	}
	w.n++
	return len(p), nil
}

// TestAuditHandlerAllocs: writing a typical decision record allocates
// nothing.
func TestAuditHandlerAllocs(t *testing.T) {
	if raceBuild() {
		t.Skip("the race detector drops pooled buffers")
	}
	l, err := NewAuditLogger(io.Discard, "json")
	if err != nil {
		t.Fatal(err)
	}
	h := l.Handler()
	if _, ok := h.(*auditHandler); !ok {
		t.Fatalf("json audit handler %T", h)
	}
	ctx := context.Background()
	rec := typicalAuditRecord()
	_ = h.Handle(ctx, rec) // fill the pool
	if n := testing.AllocsPerRun(200, func() { _ = h.Handle(ctx, rec) }); n > 0 {
		t.Errorf("Handle of a decision record: %.0f allocations, want none", n)
	}
	// Building the record as well: slog.Record keeps 5 attributes inline,
	// the other 11 take one allocation.
	if n := testing.AllocsPerRun(200, func() { _ = h.Handle(ctx, typicalAuditRecord()) }); n > 1 {
		t.Errorf("building and handling a decision record: %.0f allocations, ceiling 1", n)
	}
}

func TestNewAuditLoggerText(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewAuditLogger(&buf, "text")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Handler().(*slog.TextHandler); !ok {
		t.Errorf("text audit handler %T", l.Handler())
	}
	l.Info("m", "k", "a b")
	if got := buf.String(); !strings.HasSuffix(got, ` level=INFO msg=m log=audit k="a b"`+"\n") {
		t.Errorf("text record %q", got)
	}
}

func BenchmarkAuditHandler(b *testing.B) {
	for _, bc := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog", slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})},
		{"audit", newAuditJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := bc.h.WithAttrs([]slog.Attr{slog.String(AuditKey, AuditValue)})
			ctx := context.Background()
			rec := typicalAuditRecord()
			b.ReportAllocs()
			for b.Loop() {
				_ = h.Handle(ctx, rec)
			}
		})
	}
}

// TestAppendSlogStringEveryByte is TestAppendJSONStringEveryByte against
// slog's escaping of a message.
func TestAppendSlogStringEveryByte(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, nil)
	for _, s := range escaperInputs() {
		buf.Reset()
		_ = h.Handle(context.Background(), slog.NewRecord(time.Time{}, slog.LevelInfo, s, 0))
		want := strings.TrimSuffix(strings.TrimPrefix(buf.String(), `{"level":"INFO","msg":`), "}\n")
		if got := appendSlogString(nil, s); string(got) != want {
			t.Fatalf("appendSlogString(%q) = %s, slog writes %s", s, got, want)
		}
	}
}
