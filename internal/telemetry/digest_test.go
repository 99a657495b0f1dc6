package telemetry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// referenceJSON is the canonical JSON of v as encoding/json writes it, the
// definition ArgumentsDigest hashes; ok is false if encoding/json refuses v.
func referenceJSON(v any) (_ []byte, ok bool) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return nil, false
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
}

// canonicalJSON is the appender's encoding of v; ok is false where it
// leaves v to encoding/json.
func canonicalJSON(v any) (_ []byte, ok bool) {
	s := new(digestState)
	return s.appendValue(nil, v, 0)
}

// checkDigest fails t unless ArgumentsDigest(v) is digestJSON(v) and,
// where the appender encodes v itself, its bytes are encoding/json's. It
// reports whether the appender encoded v.
func checkDigest(t *testing.T, v any) bool {
	t.Helper()
	got, ok := canonicalJSON(v)
	if ok {
		want, wantOK := referenceJSON(v)
		if !wantOK {
			t.Fatalf("appender encoded %#v as %q; encoding/json refuses it", v, got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("canonical JSON of %#v:\n%s", v, cmp.Diff(string(want), string(got)))
		}
	}
	if got, want := ArgumentsDigest(v), digestJSON(v); got != want {
		t.Fatalf("ArgumentsDigest(%#v) = %s, encoding/json gives %s", v, got, want)
	}
	return ok
}

type namedString string

type point struct{ X, Y int }

func TestArgumentsDigestCases(t *testing.T) {
	deep := any("leaf")
	for range maxDigestDepth + 10 {
		deep = []any{deep}
	}
	large := func(prefix string, inner any) map[string]any {
		m := make(map[string]any)
		for i := range 30 {
			m[fmt.Sprintf("%s%02d", prefix, (i*7)%30)] = inner
		}
		return m
	}
	cyclic := []any{nil}
	cyclic[0] = cyclic
	tests := []struct {
		name string
		v    any
		fast bool // the appender encodes it
	}{
		{"nil map", map[string]any(nil), true},
		{"nil slice", []any(nil), true},
		{"empty", map[string]any{}, true},
		{"empty array", []any{}, true},
		{"large objects nested", large("a", []any{large("b", large("c", "x")), map[string]any{"k": large("d", 1.5)}}), true},
		{"nested nil", map[string]any{"a": nil, "b": []any{nil, map[string]any(nil)}}, true},
		{"keys in byte order", map[string]any{"b": 1, "a": 2, "B": 3, "é": 4, "": 5, "a\x00": 6, "\xff": 7}, true},
		{"escapes", "\"\\/\b\f\n\r\t\x00\x1f\x7f<>&\u2028\u2029\xff\xc3(\xed\xa0\x80", true},
		{"number zero value", json.Number(""), true},
		{"numbers as written", []any{json.Number("-0"), json.Number("1.50"), json.Number("1E+2"), json.Number("12345678901234567890")}, true},
		{"invalid number", json.Number("01"), false},
		{"invalid number nested", map[string]any{"n": json.Number("1.")}, false},
		{"floats", []any{0.0, math.Copysign(0, -1), 1e20, 1e21, 1e-6, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, -2.5e-9}, true},
		{"float32", []any{float32(1e21), float32(1e-7), float32(3.14159), float32(1e20)}, true},
		{"NaN", map[string]any{"x": math.NaN()}, false},
		{"infinity", []any{math.Inf(-1)}, false},
		{"integers", []any{int(-1), int8(-128), int16(300), int32(-70000), int64(math.MinInt64), uint(7), uint8(255), uint16(65535), uint32(1 << 31), uint64(math.MaxUint64)}, true},
		{"named string", namedString("<x>"), false},
		{"bytes", []byte("base64"), false},
		{"raw message", json.RawMessage(`{"b":1, "a":2}`), false},
		{"struct", point{1, 2}, false},
		{"pointer", &point{1, 2}, false},
		{"typed map", map[string]string{"b": "1", "a": "2"}, false},
		{"string slice", []string{"a"}, false},
		{"unsupported", map[string]any{"c": make(chan int)}, false},
		{"deep", deep, false},
		{"cycle", cyclic, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if fast := checkDigest(t, tc.v); fast != tc.fast {
				t.Errorf("appender encoded it: %v, want %v", fast, tc.fast)
			}
		})
	}
}

// TestArgumentsDigestGenerated compares the appender with encoding/json
// over many generated values: those made only of what JSON decoders
// produce must be encoded by the appender, byte for byte; the others must
// give encoding/json's digest all the same.
func TestArgumentsDigestGenerated(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		plain := i%4 != 0
		g := valueGen{r: r, exotic: !plain}
		v := g.value(0)
		if fast := checkDigest(t, v); plain && !fast {
			t.Fatalf("appender left %#v to encoding/json", v)
		}
	}
}

// valueGen generates argument values: what a JSON decoder produces, and
// with exotic set also floats, integer types, NaN, invalid numbers and Go
// types the appender leaves to encoding/json.
type valueGen struct {
	r      *rand.Rand
	exotic bool
}

func (g valueGen) value(depth int) any {
	kinds := 10
	if depth >= 5 {
		kinds = 6 // no more containers
	}
	switch g.r.IntN(kinds) {
	case 0:
		return nil
	case 1:
		return g.r.IntN(2) == 0
	case 2, 3:
		return g.string()
	case 4:
		return g.number()
	case 5:
		return g.scalar()
	case 6, 7:
		if g.r.IntN(20) == 0 {
			return map[string]any(nil)
		}
		m := make(map[string]any)
		size := g.r.IntN(8)
		if g.r.IntN(8) == 0 {
			size = g.r.IntN(40) // past the appender's stack array
		}
		for range size {
			m[g.string()] = g.value(depth + 1)
		}
		return m
	default:
		if g.r.IntN(20) == 0 {
			return []any(nil)
		}
		s := make([]any, g.r.IntN(6))
		for i := range s {
			s[i] = g.value(depth + 1)
		}
		return s
	}
}

// scalar is a float64 (as a decoder without UseNumber produces), or with
// exotic set one of the other types ArgumentsDigest may be given.
func (g valueGen) scalar() any {
	if !g.exotic || g.r.IntN(2) == 0 {
		f := g.float()
		for math.IsNaN(f) || math.IsInf(f, 0) {
			f = g.float()
		}
		return f
	}
	x := g.r.Uint64()
	switch g.r.IntN(16) {
	case 0:
		return int(x)
	case 1:
		return int8(x)
	case 2:
		return int16(x)
	case 3:
		return int32(x)
	case 4:
		return int64(x)
	case 5:
		return uint(x)
	case 6:
		return uint8(x)
	case 7:
		return uint16(x)
	case 8:
		return uint32(x)
	case 9:
		return x
	case 10:
		return float32(g.float())
	case 11:
		return g.float() // NaN and infinities included
	case 12:
		return []any{json.Number(g.pick("", "01", "1.", "+1", "1e", "1e+", ".5", "-", "0x1", " 1", "1 ", "NaN", "١"))}
	case 13:
		return namedString(g.string())
	case 14:
		return []byte(g.string())
	default:
		return map[string]int{g.string(): int(x % 100)}
	}
}

func (g valueGen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g valueGen) float() float64 {
	switch g.r.IntN(6) {
	case 0:
		return math.Float64frombits(g.r.Uint64())
	case 1:
		return []float64{0, math.Copysign(0, -1), 1e21, 1e-6, 9.999999999999999e20, 1e-7, 0.000001234, math.MaxFloat64,
			-math.SmallestNonzeroFloat64, 1 << 53, 1<<53 + 1, 0.1, 100, math.NaN(), math.Inf(1)}[g.r.IntN(15)]
	case 2:
		return float64(g.r.Int64N(1<<40) - 1<<39)
	default:
		return g.r.NormFloat64() * math.Pow(10, float64(g.r.IntN(61)-30))
	}
}

// number is a valid JSON number literal as a json.Number.
func (g valueGen) number() json.Number {
	if g.r.IntN(4) == 0 {
		return json.Number(strconv.FormatFloat(g.r.NormFloat64()*math.Pow(10, float64(g.r.IntN(41)-20)), 'g', -1, 64))
	}
	var b strings.Builder
	if g.r.IntN(3) == 0 {
		b.WriteByte('-')
	}
	if g.r.IntN(4) == 0 {
		b.WriteByte('0')
	} else {
		b.WriteString(strconv.FormatUint(g.r.Uint64()>>g.r.IntN(64)|1, 10))
	}
	if g.r.IntN(2) == 0 {
		fmt.Fprintf(&b, ".%0*d", 1+g.r.IntN(5), g.r.IntN(1000))
	}
	if g.r.IntN(3) == 0 {
		fmt.Fprintf(&b, "%s%s%d", g.pick("e", "E"), g.pick("", "+", "-"), g.r.IntN(400))
	}
	if g.r.IntN(30) == 0 {
		return ""
	}
	return json.Number(b.String())
}

// stringPieces are what generated strings are made of: plain text, each
// character encoding/json escapes, multi-byte UTF-8 and invalid UTF-8.
var stringPieces = []string{
	"a", "path", " ", "/etc/hosts", "Zz09", "~", "\x7f", "<", ">", "&", "'", "\"", "\\", "/",
	"\x00", "\x01", "\b", "\t", "\n", "\v", "\f", "\r", "\x1b", "\x1f",
	"é", "中文", "😀", "\u00a0", "\u2027", "\u2028", "\u2029", "\u202a", "\ufeff", "\ufffd", "\U0010ffff",
	"\xff", "\xfe", "\x80", "\xc0\xaf", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf0\x9f\x98",
}

func (g valueGen) string() string {
	var b strings.Builder
	for range g.r.IntN(8) {
		if g.r.IntN(3) == 0 {
			b.WriteRune(rune(g.r.IntN(0x800)))
		} else {
			b.WriteString(stringPieces[g.r.IntN(len(stringPieces))])
		}
	}
	return b.String()
}

// FuzzArgumentsDigest decodes the input as an MCP server does (UseNumber)
// and compares the appender with encoding/json on the value.
func FuzzArgumentsDigest(f *testing.F) {
	for _, s := range []string{
		`{"path":"/etc/hosts","limit":10}`,
		`{"b":[1,2.50,-0,1e400],"a":{"z":null,"y":true}}`,
		`"\u2028\u0000\ud800<&>"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if d.Decode(&v) != nil {
			return
		}
		if !checkDigest(t, v) {
			t.Fatalf("appender left decoded %#v to encoding/json", v)
		}
	})
}

// TestArgumentsDigestAllocs: the digest string is the only allocation for
// arguments of JSON decoder types.
func TestArgumentsDigestAllocs(t *testing.T) {
	if raceBuild() {
		t.Skip("the race detector drops pooled buffers")
	}
	args := typicalArguments(t)
	ArgumentsDigest(args) // fill the pool
	if n := testing.AllocsPerRun(200, func() { ArgumentsDigest(args) }); n > 1 {
		t.Errorf("ArgumentsDigest: %.0f allocations, ceiling 1", n)
	}
	if n := testing.AllocsPerRun(200, func() { ArgumentsDigest(nil) }); n > 0 {
		t.Errorf("ArgumentsDigest(nil): %.0f allocations, want none", n)
	}
}

// typicalArguments are the arguments of a tools/call as decoded with
// UseNumber.
func typicalArguments(tb testing.TB) any {
	tb.Helper()
	d := json.NewDecoder(strings.NewReader(`{"owner":"portcullis-mcp","repo":"portcullis","query":"is:open label:\"bug\" ext_authz",
		"per_page":30,"page":1,"sort":"updated","labels":["bug","p1"],"filters":{"state":"open","since":"2025-06-18T00:00:00Z","draft":false}}`))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		tb.Fatal(err)
	}
	return v
}

// raceBuild reports whether the test binary was built with -race.
func raceBuild() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

func BenchmarkArgumentsDigest(b *testing.B) {
	args := typicalArguments(b)
	for _, bc := range []struct {
		name   string
		digest func(any) string
	}{
		{"encoding-json", digestJSON},
		{"appender", ArgumentsDigest},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.digest(args)
			}
		})
	}
}

// TestAppendJSONStringEveryByte puts each byte value, and U+2028, at each
// position of strings of up to 19 bytes, across the eight-byte steps of
// the escaper's scan.
func TestAppendJSONStringEveryByte(t *testing.T) {
	for _, s := range escaperInputs() {
		want, _ := referenceJSON(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	}
}

func escaperInputs() []string {
	var in []string
	for n := range 20 {
		plain := strings.Repeat("abcdefgh", 3)[:n]
		for pos := range n {
			for c := range 256 {
				in = append(in, plain[:pos]+string(byte(c))+plain[pos+1:])
			}
			in = append(in, plain[:pos]+"\u2028"+plain[pos:], plain[:pos]+"é"+plain[pos:], plain[:pos]+"\xe2\x80"+plain[pos:])
		}
	}
	return in
}
