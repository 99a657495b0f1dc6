package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// fuzzDecisionSeeds are realistic and hostile decisions; more are in
// testdata/fuzz/FuzzDecisionFromValue.
var fuzzDecisionSeeds = []string{
	`true`,
	`false`,
	`{"allowed":true}`,
	`{"allowed":false,"reason":"no","http_status":429,"body":"slow down"}`,
	`{"allowed":true,"headers":{"x-user":"alice","X-Roles":["a","b"]},"cost":3}`,
	`{"allowed":true,"headers":[{"x-a":"1"},{"x-a":{"value":"2","append":true}}],"response_headers_to_add":{"x-r":"v"}}`,
	`{"allowed":true,"request_headers_to_remove":["authorization"],"query_parameters_to_set":{"a":["1","2"]},"query_parameters_to_remove":["b"]}`,
	`{"allowed":false,"scopes":"read write","dynamic_metadata":{"k":{"n":1}}}`,
	`{"allowed":true,"scopes":["a"],"cost":0}`,
	`{"allowed":"true"}`,
	`{"allowed":1}`,
	`{"allowed":null}`,
	`{"Allowed":true}`,
	`{"allowed":true,"allowed":false}`,
	`{"allowed":false,"allowed":true}`,
	`{"allow":true}`,
	`[true]`,
	`"true"`,
	`null`,
	`1`,
	`{"allowed":true,"cost":1000001}`,
	`{"allowed":true,"cost":-1}`,
	`{"allowed":true,"cost":1e3}`,
	`{"allowed":true,"cost":9223372036854775808}`,
	`{"allowed":true,"http_status":99}`,
	`{"allowed":true,"headers":{"x-a":"v\r\nx-b: injected"}}`,
	`{"allowed":true,"headers":{"x-a":"v\u0000"}}`,
	`{"allowed":true,"headers":{":authority":"evil"}}`,
	`{"allowed":true,"headers":{"x a":"v"}}`,
	`{"allowed":true,"headers":{"":"v"}}`,
	`{"allowed":true,"headers":{"X-\u00c5":"v"}}`,
	`{"allowed":true,"headers":{"x-a":{"value":1}}}`,
	`{"allowed":true,"headers":[1]}`,
	`{"allowed":true,"reason":7}`,
	`{"allowed":true,"dynamic_metadata":[]}`,
	"{\"allowed\":true}\n",
	"\ufeff{\"allowed\":true}",
}

// FuzzDecisionFromValue decodes arbitrary JSON (encoding/json, UseNumber)
// and reads a decision from it. Properties:
//   - it never panics, and an error comes with the zero Decision;
//   - it never allows what does not say allowed: true — the value is the
//     boolean true, or an object whose "allowed" is the boolean true;
//   - an allowed decision always follows from such a value, and the boolean
//     true always allows;
//   - on success every header key is a lower-case HTTP token, no header
//     value holds CR, LF or NUL, the cost is in [0, 1000000] and the status
//     is 0 or in [100, 599].
func FuzzDecisionFromValue(f *testing.F) {
	for _, s := range fuzzDecisionSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return
		}
		var extra any
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			return // not exactly one JSON value
		}

		saysAllowed := false
		switch v := v.(type) {
		case bool:
			saysAllowed = v
		case map[string]any:
			b, ok := v["allowed"].(bool)
			saysAllowed = ok && b
		}

		d, err := DecisionFromValue(v)
		if err != nil {
			if !reflect.DeepEqual(d, Decision{}) {
				t.Fatalf("error %v came with a non-zero decision %+v", err, d)
			}
			if b, ok := v.(bool); ok {
				t.Fatalf("boolean %v refused: %v", b, err)
			}
			return
		}
		if d.Allowed && !saysAllowed {
			t.Fatalf("%q allowed, but it does not say allowed: true", data)
		}
		if !d.Allowed && saysAllowed {
			t.Fatalf("%q says allowed: true and was read without error, but denied", data)
		}
		if d.Cost < 0 || d.Cost > 1_000_000 {
			t.Fatalf("cost %d out of range", d.Cost)
		}
		if d.HTTPStatus != 0 && (d.HTTPStatus < 100 || d.HTTPStatus > 599) {
			t.Fatalf("http status %d out of range", d.HTTPStatus)
		}
		for _, hs := range [][]Header{d.Headers, d.ResponseHeadersToAdd} {
			for _, h := range hs {
				if !fuzzLowerToken(h.Key) {
					t.Fatalf("header key %q is not a lower-case token", h.Key)
				}
				if strings.ContainsAny(h.Value, "\r\n\x00") {
					t.Fatalf("header %q: value %q holds CR, LF or NUL", h.Key, h.Value)
				}
			}
		}
	})
}

// fuzzLowerToken reports whether s is an RFC 9110 token without upper-case
// letters.
func fuzzLowerToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
