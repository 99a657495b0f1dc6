package extauthz

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

// fuzzSeedBodies are realistic bodies shared by the fuzzers' seeds; more
// seeds, including every regression found, are in testdata/fuzz.
var fuzzSeedBodies = []string{
	typicalToolsCall,
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`,
	`{"jsonrpc":"2.0","id":"a-1","method":"tools/list","params":{"cursor":"eyJwIjoyfQ=="}}`,
	`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"roots":{"listChanged":true}},"clientInfo":{"name":"c","version":"1.0"}}}`,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"review","arguments":{"lang":"go"}}}`,
	`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}`,
	`{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{p}"},"argument":{"name":"p","value":"a"}}}`,
	`{"jsonrpc":"2.0","id":"srv-1","result":{"roots":[{"uri":"file:///home"}]}}`,
	`{"jsonrpc":"2.0","id":9,"error":{"code":-32601,"message":"Method not found"}}`,
	`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
	`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"rm"}}`,
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}`,
	"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"r\xffm\"}}",
	`{"jsonrpc":"2.0","id":1.0,"method":"ping"}`,
	`{"jsonrpc":"2.0","id":-0,"method":"ping"}`,
	`{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}`,
	`"\ud83d\ude00\u00e9\\\/\b\f\n\r\t"`,
	"\xef\xbb\xbf{}",
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
}

// FuzzDecodeJSON cross-checks decodeJSON against encoding/json: whatever
// decodeJSON accepts, encoding/json (UseNumber) accepts with a deeply equal
// value; whatever encoding/json refuses, decodeJSON refuses; and decodeJSON
// refuses what encoding/json accepts only for the strict reasons.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range fuzzSeedBodies {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxDepth = 32
		got, err := decodeJSON(data, maxDepth)
		want, stdErr := stdDecodeJSON(data)
		if err != nil {
			if got != nil {
				t.Fatalf("value %v returned with error %v", got, err)
			}
			var jerr *jsonError
			if !errors.As(err, &jerr) {
				t.Fatalf("error %v (%T) is not a *jsonError", err, err)
			}
			if len(err.Error()) > 2*maxEchoBytes+80 {
				t.Fatalf("error message too long (%d bytes): %v", len(err.Error()), err)
			}
			if stdErr == nil && !errors.Is(err, errDuplicateKey) && !errors.Is(err, errInvalidUTF8) && !errors.Is(err, errTooDeep) {
				t.Fatalf("decodeJSON refused valid JSON %q: %v", data, err)
			}
			return
		}
		if stdErr != nil {
			t.Fatalf("decodeJSON accepted %q, encoding/json refused it: %v", data, stdErr)
		}
		if !reflect.DeepEqual(want, got) {
			// Not cmp.Diff: it is exponential on deep nesting.
			t.Fatalf("decodeJSON(%q) differs from encoding/json:\nstd: %#v\ngot: %#v", data, want, got)
		}
	})
}

// FuzzExtractMCP checks extractMCP on arbitrary bodies and headers:
//   - it never panics; a refusal is a 400 with -32700, -32600 or -32020 and a
//     short message, and comes with no call and no body;
//   - a call read from the body has the method encoding/json reads there;
//   - headers that disagree with the body's method or name are refused;
//   - the same message given as Envoy metadata (alongside the body, or alone
//     with a truncated body) never changes a successful result: it gives the
//     same call or a refusal.
func FuzzExtractMCP(f *testing.F) {
	for _, s := range fuzzSeedBodies {
		f.Add([]byte(s), "", "", false)
	}
	f.Add([]byte(fuzzSeedBodies[1]), "tools/call", "echo", false)
	f.Add([]byte(fuzzSeedBodies[1]), "tools/call", "rm", false)
	f.Add([]byte(fuzzSeedBodies[1]), "tools/list", "", false)
	f.Add([]byte(fuzzSeedBodies[2]), "tools/list", "x", false)
	f.Add([]byte(fuzzSeedBodies[1][:30]), "tools/call", "echo", true)
	f.Add([]byte(fuzzSeedBodies[1][:30]), "", "", true)
	f.Add([]byte{}, "", "", false)
	f.Add([]byte{}, "resources/read", "file:///a", false)

	f.Fuzz(func(t *testing.T, body []byte, methodHeader, nameHeader string, truncated bool) {
		headers := map[string]string{"mcp-session-id": "s"}
		if methodHeader != "" {
			headers["mcp-method"] = methodHeader
		}
		if nameHeader != "" {
			headers["mcp-name"] = nameHeader
		}
		req := &mcpRequest{HTTPMethod: "POST", Headers: headers, Body: body, Truncated: truncated, MaxDepth: 32}
		call, parsed, rerr := extractMCP(req)
		checkExtractResult(t, call, parsed, rerr)

		// What encoding/json reads in the body (when it reads an object).
		var std map[string]any
		stdOK := json.Unmarshal(body, &std) == nil && std != nil
		complete := len(body) > 0 && !truncated

		if rerr == nil {
			switch {
			case call.Source == policy.SourceBody && !call.Truncated:
				if !complete || !stdOK {
					t.Fatalf("call from a body encoding/json cannot read: %+v", call)
				}
				stdMethod, _ := std["method"].(string)
				if stdMethod != call.Method {
					t.Fatalf("method %q, encoding/json reads %q", call.Method, stdMethod)
				}
				if want, _ := stdDecodeJSON(body); !reflect.DeepEqual(want, parsed) {
					t.Fatalf("body differs from encoding/json's")
				}
			case complete:
				t.Fatalf("complete body, call from %q", call.Source)
			case truncated && call.Source == policy.SourceHeaders:
				if !call.Truncated || call.Method != methodHeader {
					t.Fatalf("truncated body: %+v", call)
				}
			}
		}
		if complete && stdOK {
			stdMethod, isRequest := std["method"].(string)
			if methodHeader != "" && methodHeader != stdMethod && rerr == nil {
				t.Fatalf("Mcp-Method %q, body method %q: accepted", methodHeader, stdMethod)
			}
			if !isRequest && nameHeader != "" && rerr == nil {
				t.Fatalf("Mcp-Name on a message without method: accepted")
			}
			if isRequest && nameHeader != "" && rerr == nil {
				if params, ok := std["params"].(map[string]any); ok {
					var name any
					switch methodTarget(stdMethod) {
					case targetTool, targetPrompt:
						name = params["name"]
					case targetResource:
						name = params["uri"]
					case targetNone:
						t.Fatalf("Mcp-Name on %q: accepted", stdMethod)
					}
					if name != nil && name != nameHeader {
						t.Fatalf("Mcp-Name %q, body name %v: accepted", nameHeader, name)
					}
				}
			}
		}

		// The same message as Envoy's metadata.
		if !stdOK || !complete {
			return
		}
		md := envoyMetadata(body)
		withMD := *req
		withMD.Metadata = md
		call2, parsed2, rerr2 := extractMCP(&withMD)
		checkExtractResult(t, call2, parsed2, rerr2)
		truncMD := withMD
		truncMD.Body = body[:len(body)/2]
		truncMD.Truncated = true
		call3, parsed3, rerr3 := extractMCP(&truncMD)
		checkExtractResult(t, call3, parsed3, rerr3)
		if rerr != nil || !idRepresentable(call.ID) || call.Method == metadataResponseMethod {
			// Refused anyway; or an id metadata cannot carry exactly; or a
			// request whose method is the metadata's name for responses.
			return
		}
		if rerr2 != nil {
			t.Fatalf("consistent metadata refused: %v (call %+v)", rerr2, call)
		}
		if diff := cmp.Diff(call, call2); diff != "" {
			t.Fatalf("metadata changed the call (-body +body and metadata):\n%s", diff)
		}
		if rerr3 != nil {
			t.Fatalf("metadata alone refused: %v (call %+v)", rerr3, call)
		}
		if call3.Source != policy.SourceMetadata || call3.Truncated {
			t.Fatalf("metadata alone: %+v", call3)
		}
		// Numbers in metadata are float64: compare everything else.
		c1, c3 := *call, *call3
		c1.Arguments, c3.Arguments = nil, nil
		c1.Source, c3.Source = "", ""
		c1.ID, c3.ID = normalizeMCPID(c1.ID), normalizeMCPID(c3.ID)
		if diff := cmp.Diff(c1, c3); diff != "" {
			t.Fatalf("metadata alone differs from the body (-body +metadata):\n%s", diff)
		}
	})
}

// checkExtractResult checks what every extractMCP result must satisfy.
func checkExtractResult(t *testing.T, call *policy.MCP, body any, rerr *requestError) {
	t.Helper()
	if rerr != nil {
		if call != nil || body != nil {
			t.Fatalf("refusal %v with a call or a body", rerr)
		}
		if rerr.status != 400 {
			t.Fatalf("refusal status %d", rerr.status)
		}
		switch rerr.code {
		case CodeParseError, CodeInvalidRequest, CodeHeaderMismatch:
		default:
			t.Fatalf("refusal code %d", rerr.code)
		}
		switch rerr.reason {
		case ReasonParseError, ReasonInvalidRequest, ReasonBatch, ReasonHeaderMismatch:
		default:
			t.Fatalf("refusal reason %q", rerr.reason)
		}
		if rerr.message == "" || len(rerr.message) > 2*maxEchoBytes+80 {
			t.Fatalf("refusal message %q", rerr.message)
		}
		switch rerr.id.(type) {
		case nil, string, json.Number:
		default:
			t.Fatalf("refusal id %v (%T)", rerr.id, rerr.id)
		}
		return
	}
	if call == nil {
		t.Fatal("no call and no refusal")
	}
	switch call.Source {
	case policy.SourceBody, policy.SourceMetadata, policy.SourceHeaders:
	default:
		t.Fatalf("source %q", call.Source)
	}
	switch call.ID.(type) {
	case nil, string, json.Number:
	default:
		t.Fatalf("id %v (%T)", call.ID, call.ID)
	}
	if (body != nil) != (call.Source == policy.SourceBody && !call.Truncated) {
		t.Fatalf("body %v with source %q", body, call.Source)
	}
}

// envoyMetadata builds what Envoy's MCP filter would record for a body:
// method ("__jsonrpc_response" for a response), id and params, with
// numbers as float64.
func envoyMetadata(body []byte) map[string]any {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil || m == nil {
		return nil
	}
	md := map[string]any{}
	for _, k := range []string{"method", "id", "params"} {
		if v, ok := m[k]; ok {
			md[k] = v
		}
	}
	if _, ok := m["method"]; !ok {
		_, hasResult := m["result"]
		_, hasError := m["error"]
		if hasResult || hasError {
			md["method"] = metadataResponseMethod
		}
	}
	return md
}

// idRepresentable reports that a body id survives the float64 of metadata.
func idRepresentable(id any) bool {
	n, ok := id.(json.Number)
	if !ok {
		return true
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return err == nil && i >= -maxExactFloatInt && i <= maxExactFloatInt
}

func normalizeMCPID(id any) any {
	if n, ok := id.(json.Number); ok {
		if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
	}
	return id
}
