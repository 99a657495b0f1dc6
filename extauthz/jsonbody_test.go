package extauthz

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// typicalToolsCall is a realistic tools/call body of about 500 bytes.
const typicalToolsCall = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{` +
	`"name":"search_issues","arguments":{"repository":"portcullis-mcp/portcullis",` +
	`"query":"is:open label:bug sort:updated-desc","limit":25,"include_closed":false,` +
	`"fields":["title","number","labels","assignees","updated_at"],` +
	`"filters":{"author":"octocat","since":"2025-06-01T00:00:00Z","milestone":"v1.2"},` +
	`"note":"find the \"flaky\" tests\nand their owners"},` +
	`"_meta":{"progressToken":"c2b1d3e4-5f60-4a7b-8c9d-0e1f2a3b4c5d",` +
	`"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}}`

// nestedArrays returns depth nested arrays around 1: nestedArrays(2) is [[1]].
func nestedArrays(depth int) string {
	return strings.Repeat("[", depth) + "1" + strings.Repeat("]", depth)
}

// nestedObjects returns depth nested objects: nestedObjects(2) is {"a":{"a":1}}.
func nestedObjects(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

func TestDecodeJSON(t *testing.T) {
	longKey := strings.Repeat("k", 100)
	tests := []struct {
		name     string
		in       string
		maxDepth int
		want     any
		wantErr  error  // a sentinel; nil for success
		errHas   string // a substring of the error message
	}{
		{name: "object", in: `{"a":1,"b":"x","c":true,"d":false,"e":null}`,
			want: map[string]any{"a": json.Number("1"), "b": "x", "c": true, "d": false, "e": nil}},
		{name: "nested", in: `{"a":{"b":[1,{"c":[]}]},"d":{}}`,
			want: map[string]any{"a": map[string]any{"b": []any{json.Number("1"), map[string]any{"c": []any{}}}}, "d": map[string]any{}}},
		{name: "whitespace", in: " \t\r\n{ \"a\" :\n[ 1 , 2 ] } \n",
			want: map[string]any{"a": []any{json.Number("1"), json.Number("2")}}},
		{name: "empty array", in: `[]`, want: []any{}},
		{name: "scalars string", in: `"x"`, want: "x"},
		{name: "scalar true", in: `true`, want: true},
		{name: "scalar null", in: `null`, want: nil},
		{name: "numbers", in: `[0,-0,12,-3.25,1e10,1E+2,-1e-2,0.5,123456789012345678901234567890]`,
			want: []any{json.Number("0"), json.Number("-0"), json.Number("12"), json.Number("-3.25"), json.Number("1e10"),
				json.Number("1E+2"), json.Number("-1e-2"), json.Number("0.5"), json.Number("123456789012345678901234567890")}},
		{name: "escapes", in: `"a\"b\\c\/d\b\f\n\r\t\u00e9\u20AC\ud83d\ude00"`,
			want: "a\"b\\c/d\b\f\n\r\t\u00e9\u20ac\U0001F600"},
		{name: "escape NUL", in: `"\u0000"`, want: "\x00"},
		{name: "utf-8 raw", in: `{"名前":"値 😀"}`, want: map[string]any{"名前": "値 😀"}},
		{name: "replacement char is valid", in: "\"\xef\xbf\xbd\"", want: "\ufffd"},
		{name: "escaped key", in: `{"\u0061":1}`, want: map[string]any{"a": json.Number("1")}},
		{name: "depth at limit", in: nestedArrays(3), maxDepth: 3, want: []any{[]any{[]any{json.Number("1")}}}},
		{name: "default depth 64 ok", in: nestedArrays(64), maxDepth: 0, want: func() any {
			var v any = json.Number("1")
			for range 64 {
				v = []any{v}
			}
			return v
		}()},
		{name: "typical tools/call", in: typicalToolsCall, want: map[string]any{
			"jsonrpc": "2.0", "id": json.Number("42"), "method": "tools/call",
			"params": map[string]any{
				"name": "search_issues",
				"arguments": map[string]any{
					"repository": "portcullis-mcp/portcullis", "query": "is:open label:bug sort:updated-desc",
					"limit": json.Number("25"), "include_closed": false,
					"fields":  []any{"title", "number", "labels", "assignees", "updated_at"},
					"filters": map[string]any{"author": "octocat", "since": "2025-06-01T00:00:00Z", "milestone": "v1.2"},
					"note":    "find the \"flaky\" tests\nand their owners",
				},
				"_meta": map[string]any{"progressToken": "c2b1d3e4-5f60-4a7b-8c9d-0e1f2a3b4c5d",
					"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			},
		}},

		// Refusals.
		{name: "empty", in: ``, wantErr: errSyntax, errHas: "end of input"},
		{name: "only space", in: "  \n", wantErr: errSyntax},
		{name: "bom", in: "\xef\xbb\xbf{}", wantErr: errBOM, errHas: "byte order mark"},
		{name: "trailing value", in: `{} {}`, wantErr: errTrailingData, errHas: "offset 3"},
		{name: "trailing garbage", in: `{"a":1}x`, wantErr: errTrailingData},
		{name: "trailing after number", in: `01`, wantErr: errTrailingData},
		{name: "trailing NUL", in: "{}\x00", wantErr: errTrailingData},
		{name: "duplicate key", in: `{"method":"a","method":"b"}`, wantErr: errDuplicateKey, errHas: `"method" at offset 14`},
		{name: "duplicate nested key", in: `{"params":{"name":"a","x":1,"name":"b"}}`, wantErr: errDuplicateKey, errHas: `"name"`},
		{name: "duplicate in array element", in: `[{"a":1},{"a":1,"a":1}]`, wantErr: errDuplicateKey},
		{name: "duplicate after unescaping", in: `{"name":1,"n\u0061me":2}`, wantErr: errDuplicateKey, errHas: `"name"`},
		{name: "duplicate long key clipped", in: `{"` + longKey + `":1,"` + longKey + `":2}`, wantErr: errDuplicateKey,
			errHas: `"` + strings.Repeat("k", 64) + `..."`},
		{name: "invalid utf-8 in string", in: "{\"name\":\"to\xffol\"}", wantErr: errInvalidUTF8, errHas: "offset 11"},
		{name: "invalid utf-8 in key", in: "{\"n\xc3\":1}", wantErr: errInvalidUTF8},
		{name: "invalid utf-8 after escape", in: "\"\\n\xff\"", wantErr: errInvalidUTF8},
		{name: "overlong encoding", in: "\"\xc0\xaf\"", wantErr: errInvalidUTF8},
		{name: "encoded surrogate", in: "\"\xed\xa0\x80\"", wantErr: errInvalidUTF8},
		{name: "truncated multibyte", in: "\"\xe2\x82\"", wantErr: errInvalidUTF8},
		{name: "invalid utf-8 outside string", in: "[\xff]", wantErr: errInvalidUTF8},
		{name: "lone high surrogate", in: `"\ud800"`, wantErr: errInvalidUTF8, errHas: "surrogate"},
		{name: "high surrogate then letter", in: `"\ud800\u0041"`, wantErr: errInvalidUTF8},
		{name: "high surrogate then text", in: `"\ud800abcdef"`, wantErr: errInvalidUTF8},
		{name: "lone low surrogate", in: `"\udc00"`, wantErr: errInvalidUTF8},
		{name: "too deep arrays", in: nestedArrays(4), maxDepth: 3, wantErr: errTooDeep, errHas: "more than 3 levels"},
		{name: "too deep objects", in: nestedObjects(4), maxDepth: 3, wantErr: errTooDeep},
		{name: "too deep default", in: nestedArrays(65), wantErr: errTooDeep, errHas: "more than 64 levels"},
		{name: "too deep unterminated", in: strings.Repeat("[", 100000), maxDepth: 50, wantErr: errTooDeep},
		{name: "control char in string", in: "\"a\tb\"", wantErr: errSyntax, errHas: "control character"},
		{name: "invalid escape", in: `"\x41"`, wantErr: errSyntax, errHas: "invalid escape"},
		{name: "bad unicode escape", in: `"\u12g4"`, wantErr: errSyntax},
		{name: "short unicode escape", in: `"\u12"`, wantErr: errSyntax},
		{name: "unterminated string", in: `{"a":"b`, wantErr: errSyntax, errHas: "end of input"},
		{name: "unterminated escape", in: `"\`, wantErr: errSyntax},
		{name: "unterminated object", in: `{"a":1`, wantErr: errSyntax},
		{name: "trailing comma array", in: `[1,]`, wantErr: errSyntax},
		{name: "trailing comma object", in: `{"a":1,}`, wantErr: errSyntax},
		{name: "missing colon", in: `{"a" 1}`, wantErr: errSyntax, errHas: "':'"},
		{name: "unquoted key", in: `{a:1}`, wantErr: errSyntax},
		{name: "single quotes", in: `{'a':1}`, wantErr: errSyntax},
		{name: "bare minus", in: `-`, wantErr: errSyntax},
		{name: "leading plus", in: `+1`, wantErr: errSyntax},
		{name: "leading dot", in: `.5`, wantErr: errSyntax},
		{name: "dot without digits", in: `1.`, wantErr: errSyntax},
		{name: "exponent without digits", in: `1e+`, wantErr: errSyntax},
		{name: "NaN", in: `NaN`, wantErr: errSyntax},
		{name: "bad literal", in: `tru`, wantErr: errSyntax},
		{name: "misspelled literal", in: `[nul]`, wantErr: errSyntax},
		{name: "comment", in: `{"a":1 /* c */}`, wantErr: errSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeJSON([]byte(tc.in), tc.maxDepth)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("decodeJSON error = %v, want %v", err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("decodeJSON returned %v with an error", got)
				}
				if !strings.Contains(err.Error(), tc.errHas) {
					t.Errorf("error %q does not contain %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeJSON: %v", err)
			}
			// reflect.DeepEqual first: cmp.Diff is slow on deep nesting.
			if !reflect.DeepEqual(tc.want, got) {
				t.Errorf("decodeJSON mismatch (-want +got):\n%s", cmp.Diff(tc.want, got))
			}
			// encoding/json agrees.
			if std, err := stdDecodeJSON([]byte(tc.in)); err != nil {
				t.Errorf("encoding/json: %v", err)
			} else if !reflect.DeepEqual(std, got) {
				t.Errorf("differs from encoding/json (-std +got):\n%s", cmp.Diff(std, got))
			}
		})
	}
}

// TestDecodeJSONErrorEcho checks that no error quotes more than 64 bytes of
// input.
func TestDecodeJSONErrorEcho(t *testing.T) {
	secret := strings.Repeat("S", 200)
	for _, in := range []string{
		`{"` + secret + `":1,"` + secret + `":1}`,
		`{"a":"` + secret + "\xff\"}",
		`{"` + secret + `" 1}`,
		`"` + secret,
		`{"a":1}` + secret,
	} {
		_, err := decodeJSON([]byte(in), 0)
		if err == nil {
			t.Fatalf("decodeJSON(%.20q...) succeeded", in)
		}
		if strings.Contains(err.Error(), strings.Repeat("S", maxEchoBytes+1)) {
			t.Errorf("error echoes more than %d bytes: %v", maxEchoBytes, err)
		}
	}
}

// TestDecodeJSONMaxDepthCap checks that limits above encoding/json's are
// capped to it.
func TestDecodeJSONMaxDepthCap(t *testing.T) {
	if _, err := decodeJSON([]byte(nestedArrays(maxJSONDepth)), 1<<30); err != nil {
		t.Errorf("depth %d refused: %v", maxJSONDepth, err)
	}
	if _, err := decodeJSON([]byte(nestedArrays(maxJSONDepth+1)), 1<<30); !errors.Is(err, errTooDeep) {
		t.Errorf("depth %d: error %v, want errTooDeep", maxJSONDepth+1, err)
	}
}

// TestDecodeJSONPoolIsolation checks that reused decoders leak nothing from
// one call into the next, including after errors.
func TestDecodeJSONPoolIsolation(t *testing.T) {
	for range 3 {
		if _, err := decodeJSON([]byte(`[[1,2,{"a":[3,4`), 0); err == nil {
			t.Fatal("unterminated input accepted")
		}
		got, err := decodeJSON([]byte(`[{"b":[5]}]`), 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []any{map[string]any{"b": []any{json.Number("5")}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("mismatch (-want +got):\n%s", diff)
		}
	}
}

// stdDecodeJSON is decodeJSON's reference: what json.Unmarshal accepts
// (json.Valid), decoded by encoding/json with UseNumber.
func stdDecodeJSON(data []byte) (any, error) {
	if !json.Valid(data) {
		return nil, errors.New("encoding/json: invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func BenchmarkDecodeJSON(b *testing.B) {
	data := []byte(typicalToolsCall)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeJSON(data, 64); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJSONStdlib is the reference: encoding/json with UseNumber.
func BenchmarkDecodeJSONStdlib(b *testing.B) {
	data := []byte(typicalToolsCall)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			b.Fatal(err)
		}
	}
}
