package extauthz

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

// mcpRefusal is the part of a requestError the tests assert.
type mcpRefusal struct {
	Status int
	Code   int
	Reason string
	ID     any
}

func mcpRefused(code int, reason string, id any) *mcpRefusal {
	return &mcpRefusal{Status: http.StatusBadRequest, Code: code, Reason: reason, ID: id}
}

func TestExtractMCP(t *testing.T) {
	num := func(s string) json.Number { return json.Number(s) }
	parseError := mcpRefused(CodeParseError, ReasonParseError, nil)
	invalid := func(id any) *mcpRefusal { return mcpRefused(CodeInvalidRequest, ReasonInvalidRequest, id) }
	headerMismatch := func(id any) *mcpRefusal { return mcpRefused(CodeHeaderMismatch, ReasonHeaderMismatch, id) }
	hdrs := func(kv ...string) map[string]string {
		h := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	const (
		toolsCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"x","n":3}}}`
		toolsList = `{"jsonrpc":"2.0","id":"list-1","method":"tools/list","params":{}}`
	)
	searchCall := func(src string) *policy.MCP {
		return &policy.MCP{Method: "tools/call", ID: num("7"), Name: "search", Tool: "search",
			Arguments: map[string]any{"q": "x", "n": num("3")}, Source: src}
	}
	mdToolsCall := map[string]any{"method": "tools/call", "id": float64(7),
		"params": map[string]any{"name": "search", "arguments": map[string]any{"q": "x", "n": float64(3)}}}

	tests := []struct {
		name    string
		req     mcpRequest
		want    *policy.MCP
		wantErr *mcpRefusal
		msgHas  string // a substring of the refusal's message
	}{
		// The body: ids.
		{name: "tools/call numeric id",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall)},
			want: searchCall(policy.SourceBody)},
		{name: "string id with session and protocol headers",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(toolsList),
				Headers: hdrs("mcp-session-id", "sess-1", "mcp-protocol-version", "2025-06-18")},
			want: &policy.MCP{Method: "tools/list", ID: "list-1", SessionID: "sess-1", ProtocolVersion: "2025-06-18", Source: policy.SourceBody}},
		{name: "id 0",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":0,"method":"ping"}`)},
			want: &policy.MCP{Method: "ping", ID: num("0"), Source: policy.SourceBody}},
		{name: "empty string id",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":"","method":"ping"}`)},
			want: &policy.MCP{Method: "ping", ID: "", Source: policy.SourceBody}},
		{name: "negative id",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":-12,"method":"ping"}`)},
			want: &policy.MCP{Method: "ping", ID: num("-12"), Source: policy.SourceBody}},
		{name: "huge id: max int64",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":9223372036854775807,"method":"ping"}`)},
			want: &policy.MCP{Method: "ping", ID: num("9223372036854775807"), Source: policy.SourceBody}},
		{name: "id beyond int64",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":9223372036854775808,"method":"ping"}`)},
			wantErr: invalid(nil), msgHas: "id"},
		{name: "fractional id",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1.5,"method":"ping"}`)},
			wantErr: invalid(nil)},
		{name: "integral value written with exponent",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1e3,"method":"ping"}`)},
			wantErr: invalid(nil)},
		{name: "null id",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":null,"method":"ping"}`)},
			wantErr: invalid(nil)},
		{name: "bool id",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":true,"method":"ping"}`)},
			wantErr: invalid(nil)},
		{name: "object id",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`)},
			wantErr: invalid(nil)},

		// The body: message kinds.
		{name: "notification",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)},
			want: &policy.MCP{Method: "notifications/initialized", Source: policy.SourceBody}},
		{name: "response with result",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":"srv-3","result":{"roots":[]}}`)},
			want: &policy.MCP{ID: "srv-3", Source: policy.SourceBody}},
		{name: "response with error",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"no"}}`)},
			want: &policy.MCP{ID: num("4"), Source: policy.SourceBody}},
		{name: "response with result and error",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":4,"result":{},"error":{}}`)},
			wantErr: invalid(num("4"))},
		{name: "neither request nor response",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":5}`)},
			wantErr: invalid(num("5")), msgHas: "neither"},
		{name: "response without id",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","result":{}}`)},
			wantErr: invalid(nil)},
		{name: "request carrying a result",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":6,"method":"ping","result":{}}`)},
			wantErr: invalid(num("6"))},
		{name: "batch",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`[` + toolsCall + `,` + toolsList + `]`)},
			wantErr: mcpRefused(CodeInvalidRequest, ReasonBatch, nil), msgHas: "batch requests are not supported"},
		{name: "empty batch",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`[]`)},
			wantErr: mcpRefused(CodeInvalidRequest, ReasonBatch, nil)},
		{name: "not an object",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`"tools/call"`)},
			wantErr: invalid(nil)},
		{name: "jsonrpc 1.0 echoes the id",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"1.0","id":"a","method":"ping"}`)},
			wantErr: invalid("a"), msgHas: "jsonrpc"},
		{name: "jsonrpc missing",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"id":8,"method":"ping"}`)},
			wantErr: invalid(num("8"))},
		{name: "jsonrpc as a number",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":2.0,"id":8,"method":"ping"}`)},
			wantErr: invalid(num("8"))},
		{name: "params is an array",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":["search"]}`)},
			wantErr: invalid(num("9")), msgHas: "params"},
		{name: "method is a number",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":9,"method":1}`)},
			wantErr: invalid(num("9"))},
		{name: "method is empty",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":9,"method":""}`)},
			wantErr: invalid(num("9"))},

		// The body: what decodeJSON refuses.
		{name: "duplicate method keys",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"rm"}}`)},
			wantErr: parseError, msgHas: `duplicate object key: "method"`},
		{name: "duplicate name keys inside params",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"rm_rf"}}`)},
			wantErr: parseError, msgHas: `"name"`},
		{name: "byte order mark",
			req:     mcpRequest{HTTPMethod: "POST", Body: append([]byte("\xef\xbb\xbf"), toolsCall...)},
			wantErr: parseError, msgHas: "byte order mark"},
		{name: "invalid UTF-8 in a tool name",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"ex\xffec\"}}")},
			wantErr: parseError, msgHas: "UTF-8"},
		{name: "unpaired surrogate in a tool name",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ex\udc00ec"}}`)},
			wantErr: parseError, msgHas: "surrogate"},
		{name: "nesting over the limit",
			req: mcpRequest{HTTPMethod: "POST", MaxDepth: 8,
				Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":` + nestedArrays(6) + `}}}`)},
			wantErr: parseError, msgHas: "nesting too deep: more than 8 levels"},
		{name: "nesting at the limit",
			req: mcpRequest{HTTPMethod: "POST", MaxDepth: 9,
				Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":` + nestedArrays(6) + `}}}`)},
			want: &policy.MCP{Method: "tools/call", ID: num("1"), Name: "t", Tool: "t", Source: policy.SourceBody,
				Arguments: map[string]any{"a": []any{[]any{[]any{[]any{[]any{[]any{num("1")}}}}}}}}},
		{name: "malformed JSON",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0",`)},
			wantErr: parseError},
		{name: "trailing data",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall + `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"rm"}}`)},
			wantErr: parseError, msgHas: "trailing"},
		{name: "not JSON at all",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`name=rm`)},
			wantErr: parseError},

		// Per method.
		{name: "tools/call without params",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call"}`)},
			wantErr: invalid(num("2")), msgHas: "params.name"},
		{name: "tools/call with an empty name",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":""}}`)},
			wantErr: invalid(num("2"))},
		{name: "tools/call with a numeric name",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":5}}`)},
			wantErr: invalid(num("2"))},
		{name: "tools/call with array arguments",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":[1]}}`)},
			wantErr: invalid(num("2")), msgHas: "arguments"},
		{name: "tools/call with null arguments",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":null}}`)},
			wantErr: invalid(num("2"))},
		{name: "tools/call without arguments",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t"}}`)},
			want: &policy.MCP{Method: "tools/call", ID: num("2"), Name: "t", Tool: "t", Source: policy.SourceBody}},
		{name: "prompts/get",
			req: mcpRequest{HTTPMethod: "POST",
				Body: []byte(`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"review","arguments":{"lang":"go"}}}`)},
			want: &policy.MCP{Method: "prompts/get", ID: num("3"), Name: "review", Prompt: "review",
				Arguments: map[string]any{"lang": "go"}, Source: policy.SourceBody}},
		{name: "resources/read",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}`)},
			want: &policy.MCP{Method: "resources/read", ID: num("4"), Name: "file:///etc/hosts", Resource: "file:///etc/hosts", Source: policy.SourceBody}},
		{name: "resources/subscribe",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"db://orders"}}`)},
			want: &policy.MCP{Method: "resources/subscribe", ID: num("4"), Name: "db://orders", Resource: "db://orders", Source: policy.SourceBody}},
		{name: "resources/unsubscribe without uri",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":4,"method":"resources/unsubscribe","params":{"name":"db://orders"}}`)},
			wantErr: invalid(num("4")), msgHas: "params.uri"},
		{name: "completion/complete for a prompt",
			req: mcpRequest{HTTPMethod: "POST",
				Body: []byte(`{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"review"},"argument":{"name":"lang","value":"g"}}}`)},
			want: &policy.MCP{Method: "completion/complete", ID: num("5"), Name: "review", Prompt: "review", Source: policy.SourceBody}},
		{name: "completion/complete for a resource, Mcp-Name matches",
			req: mcpRequest{HTTPMethod: "POST", Headers: hdrs("mcp-method", "completion/complete", "mcp-name", "file:///{path}"),
				Body: []byte(`{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{path}"},"argument":{"name":"path","value":"a"}}}`)},
			want: &policy.MCP{Method: "completion/complete", ID: num("5"), Name: "file:///{path}", Resource: "file:///{path}", Source: policy.SourceBody}},
		{name: "completion/complete with an unknown ref type",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}`)},
			wantErr: invalid(num("5")), msgHas: "params.ref"},
		{name: "initialize takes the protocol version from params",
			req: mcpRequest{HTTPMethod: "POST", Headers: hdrs("mcp-protocol-version", "2025-03-26"),
				Body: []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`)},
			want: &policy.MCP{Method: "initialize", ID: num("0"), ProtocolVersion: "2025-06-18", Source: policy.SourceBody}},
		{name: "initialize without a protocol version",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`)},
			wantErr: invalid(num("0")), msgHas: "protocolVersion"},

		// Headers against the body.
		{name: "headers match method and name",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall),
				Headers: hdrs("mcp-method", "tools/call", "mcp-name", "search", "mcp-session-id", "s")},
			want: func() *policy.MCP { c := searchCall(policy.SourceBody); c.SessionID = "s"; return c }()},
		{name: "method header differs",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Headers: hdrs("mcp-method", "tools/list")},
			wantErr: headerMismatch(num("7")), msgHas: "Mcp-Method"},
		{name: "method header differs in case",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Headers: hdrs("mcp-method", "Tools/Call")},
			wantErr: headerMismatch(num("7"))},
		{name: "name header differs",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Headers: hdrs("mcp-method", "tools/call", "mcp-name", "read_only")},
			wantErr: headerMismatch(num("7")), msgHas: "Mcp-Name"},
		{name: "repeated name headers joined by Envoy",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Headers: hdrs("mcp-name", "search,search")},
			wantErr: headerMismatch(num("7"))},
		{name: "mcp-name on tools/list",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsList), Headers: hdrs("mcp-method", "tools/list", "mcp-name", "search")},
			wantErr: headerMismatch("list-1")},
		{name: "mcp-method on a response",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":4,"result":{}}`), Headers: hdrs("mcp-method", "tools/call")},
			wantErr: headerMismatch(num("4"))},

		// Metadata.
		{name: "metadata only",
			req: mcpRequest{HTTPMethod: "POST", Metadata: mdToolsCall, Headers: hdrs("mcp-session-id", "s2")},
			want: &policy.MCP{Method: "tools/call", ID: num("7"), Name: "search", Tool: "search", SessionID: "s2",
				Arguments: map[string]any{"q": "x", "n": float64(3)}, Source: policy.SourceMetadata}},
		// The MCP filter read a prefix that ended before params.name (a
		// tools/call of 10 MB through Envoy): the call goes to the policy
		// as truncated, naming nothing — not a 400 saying the client sent
		// no name.
		{name: "metadata from a body over the MCP filter's limit names no tool",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"na`), Truncated: true,
				Metadata: map[string]any{"method": "tools/call", "id": float64(7), "is_exceeding_limit": true}},
			want: &policy.MCP{Method: "tools/call", ID: num("7"), Source: policy.SourceMetadata, Truncated: true}},
		{name: "metadata over the limit without the tool, named by Mcp-Name",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"na`), Truncated: true,
				Metadata: map[string]any{"method": "tools/call", "id": float64(7), "is_exceeding_limit": true},
				Headers:  hdrs("mcp-method", "tools/call", "mcp-name", "search")},
			want: &policy.MCP{Method: "tools/call", ID: num("7"), Name: "search", Tool: "search", Source: policy.SourceHeaders, Truncated: true}},
		{name: "metadata over the limit without the tool, Mcp-Method disagreeing",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"na`), Truncated: true,
				Metadata: map[string]any{"method": "tools/call", "id": float64(7), "is_exceeding_limit": true},
				Headers:  hdrs("mcp-method", "tools/list", "mcp-name", "search")},
			wantErr: headerMismatch(num("7"))},
		{name: "metadata over the limit with the tool",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"`), Truncated: true,
				Metadata: map[string]any{"method": "tools/call", "id": float64(7), "is_exceeding_limit": true, "params": map[string]any{"name": "search"}},
				Headers:  hdrs("mcp-name", "delete")},
			wantErr: headerMismatch(num("7"))},
		{name: "metadata over the limit with a tool name of the wrong type",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":1,"arguments":{"q":"`), Truncated: true,
				Metadata: map[string]any{"method": "tools/call", "id": float64(7), "is_exceeding_limit": true, "params": map[string]any{"name": float64(1)}}},
			wantErr: invalid(num("7")), msgHas: "name"},
		{name: "initialize over the limit without protocolVersion",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"capabilities":{"x":"`), Truncated: true,
				Metadata: map[string]any{"method": "initialize", "id": float64(7), "is_exceeding_limit": true}},
			want: &policy.MCP{Method: "initialize", ID: num("7"), Source: policy.SourceMetadata, Truncated: true}},
		{name: "metadata over the limit with a method that names nothing",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":7,"method":"ping","params":{"x`), Truncated: true,
				Metadata: map[string]any{"method": "ping", "id": float64(7), "is_exceeding_limit": true}},
			want: &policy.MCP{Method: "ping", ID: num("7"), Source: policy.SourceMetadata, Truncated: true}},
		{name: "metadata over the limit without a method is absent",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","params":{"x`), Truncated: true,
				Metadata: map[string]any{"is_exceeding_limit": true}},
			want: &policy.MCP{Source: policy.SourceBody, Truncated: true}},
		{name: "metadata and body agree",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Metadata: mdToolsCall},
			want: searchCall(policy.SourceBody)},
		{name: "metadata without params and body",
			req:  mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Metadata: map[string]any{"method": "tools/call", "id": float64(7)}},
			want: searchCall(policy.SourceBody)},
		{name: "metadata and body disagree on method",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Metadata: map[string]any{"method": "tools/list", "id": float64(7)}},
			wantErr: headerMismatch(num("7")), msgHas: "metadata"},
		{name: "metadata and body disagree on name",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall),
				Metadata: map[string]any{"method": "tools/call", "id": float64(7), "params": map[string]any{"name": "delete"}}},
			wantErr: headerMismatch(num("7"))},
		{name: "metadata name of the wrong type",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall),
				Metadata: map[string]any{"method": "tools/call", "params": map[string]any{"name": true}}},
			wantErr: headerMismatch(num("7"))},
		{name: "metadata response and body response agree",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":"time__42","result":{}}`),
				Metadata: map[string]any{"method": "__jsonrpc_response", "id": "time__42"}},
			want: &policy.MCP{ID: "time__42", Source: policy.SourceBody}},
		{name: "metadata says request, body is a response",
			req: mcpRequest{HTTPMethod: "POST", Body: []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`),
				Metadata: map[string]any{"method": "ping", "id": float64(1)}},
			wantErr: headerMismatch(num("1"))},
		{name: "metadata method of the wrong type",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte(toolsCall), Metadata: map[string]any{"method": float64(3)}},
			wantErr: invalid(nil), msgHas: "metadata"},
		{name: "metadata without method",
			req:     mcpRequest{HTTPMethod: "GET", Metadata: map[string]any{"id": "x"}},
			wantErr: invalid("x")},
		{name: "metadata fractional id",
			req:     mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "ping", "id": 1.5}},
			wantErr: invalid(nil)},
		{name: "metadata id beyond 2^53",
			req:     mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "ping", "id": float64(1 << 60)}},
			wantErr: invalid(nil)},
		{name: "metadata id 2^53 is ambiguous",
			req:     mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "ping", "id": float64(1 << 53)}},
			wantErr: invalid(nil)},
		{name: "metadata id 2^53-1",
			req:  mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "ping", "id": float64(1<<53 - 1)}},
			want: &policy.MCP{Method: "ping", ID: num("9007199254740991"), Source: policy.SourceMetadata}},
		{name: "metadata string id",
			req:  mcpRequest{HTTPMethod: "GET", Metadata: map[string]any{"method": "ping", "id": "p-1"}},
			want: &policy.MCP{Method: "ping", ID: "p-1", Source: policy.SourceMetadata}},
		{name: "metadata id of the wrong type",
			req:     mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "ping", "id": true}},
			wantErr: invalid(nil)},
		{name: "metadata params of the wrong type",
			req:     mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "tools/call", "id": float64(2), "params": "search"}},
			wantErr: invalid(num("2"))},
		{name: "metadata tools/call without a name",
			req:     mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "tools/call", "id": float64(2), "params": map[string]any{}}},
			wantErr: invalid(num("2")), msgHas: "params.name"},
		{name: "metadata response without body",
			req:  mcpRequest{HTTPMethod: "POST", Metadata: map[string]any{"method": "__jsonrpc_response", "id": float64(11)}},
			want: &policy.MCP{ID: num("11"), Source: policy.SourceMetadata}},
		{name: "metadata initialize",
			req: mcpRequest{HTTPMethod: "POST",
				Metadata: map[string]any{"method": "initialize", "id": float64(0), "params": map[string]any{"protocolVersion": "2025-06-18"}}},
			want: &policy.MCP{Method: "initialize", ID: num("0"), ProtocolVersion: "2025-06-18", Source: policy.SourceMetadata}},
		{name: "metadata and headers disagree",
			req:     mcpRequest{HTTPMethod: "POST", Metadata: mdToolsCall, Headers: hdrs("mcp-method", "tools/call", "mcp-name", "other")},
			wantErr: headerMismatch(num("7"))},
		{name: "empty metadata is absent",
			req:  mcpRequest{HTTPMethod: "GET", Metadata: map[string]any{}, Headers: hdrs("mcp-session-id", "s")},
			want: &policy.MCP{SessionID: "s", Source: policy.SourceHeaders}},

		// A truncated body.
		{name: "truncated with metadata",
			req: mcpRequest{HTTPMethod: "POST", Truncated: true, Body: []byte(toolsCall[:40]), Metadata: mdToolsCall,
				Headers: hdrs("mcp-method", "tools/call", "mcp-name", "search")},
			want: &policy.MCP{Method: "tools/call", ID: num("7"), Name: "search", Tool: "search",
				Arguments: map[string]any{"q": "x", "n": float64(3)}, Source: policy.SourceMetadata}},
		{name: "truncated with metadata and a mismatching header",
			req:     mcpRequest{HTTPMethod: "POST", Truncated: true, Body: []byte(toolsCall[:40]), Metadata: mdToolsCall, Headers: hdrs("mcp-method", "tools/list")},
			wantErr: headerMismatch(num("7"))},
		{name: "truncated with headers",
			req: mcpRequest{HTTPMethod: "POST", Truncated: true, Body: []byte(toolsCall[:40]),
				Headers: hdrs("mcp-method", "tools/call", "mcp-name", "search", "mcp-protocol-version", "2026-07-28")},
			want: &policy.MCP{Method: "tools/call", Name: "search", Tool: "search", ProtocolVersion: "2026-07-28",
				Source: policy.SourceHeaders, Truncated: true}},
		{name: "truncated with a resource header",
			req: mcpRequest{HTTPMethod: "POST", Truncated: true, Body: []byte(`{"jsonrpc":"2.0"`),
				Headers: hdrs("mcp-method", "resources/read", "mcp-name", "file:///a")},
			want: &policy.MCP{Method: "resources/read", Name: "file:///a", Resource: "file:///a", Source: policy.SourceHeaders, Truncated: true}},
		{name: "truncated with mcp-name on tools/list",
			req:     mcpRequest{HTTPMethod: "POST", Truncated: true, Body: []byte(`{"jsonrpc"`), Headers: hdrs("mcp-method", "tools/list", "mcp-name", "x")},
			wantErr: headerMismatch(nil)},
		{name: "truncated with nothing else",
			req:  mcpRequest{HTTPMethod: "POST", Truncated: true, Body: []byte(toolsCall[:40]), Headers: hdrs("mcp-name", "search")},
			want: &policy.MCP{Source: policy.SourceBody, Truncated: true}},

		// No body.
		{name: "GET with a session id",
			req:  mcpRequest{HTTPMethod: "GET", Headers: hdrs("mcp-session-id", "abc", "mcp-protocol-version", "2025-06-18", "accept", "text/event-stream")},
			want: &policy.MCP{SessionID: "abc", ProtocolVersion: "2025-06-18", Source: policy.SourceHeaders}},
		{name: "DELETE ends a session",
			req:  mcpRequest{HTTPMethod: "DELETE", Headers: hdrs("mcp-session-id", "abc")},
			want: &policy.MCP{SessionID: "abc", Source: policy.SourceHeaders}},
		{name: "empty POST",
			req:     mcpRequest{HTTPMethod: "POST", Body: []byte{}},
			wantErr: invalid(nil), msgHas: "empty body"},
		// The headers cannot stand in for a POST's missing message (found
		// by FuzzCheck: the policy allowed a tools/call nobody sent).
		{name: "empty POST with headers",
			req:     mcpRequest{HTTPMethod: "POST", Headers: hdrs("mcp-method", "prompts/get", "mcp-name", "review")},
			wantErr: invalid(nil), msgHas: "empty body"},
		// Nor for a GET or DELETE, which carry no message at all.
		{name: "GET with headers",
			req:     mcpRequest{HTTPMethod: "GET", Headers: hdrs("mcp-method", "prompts/get", "mcp-name", "review")},
			wantErr: headerMismatch(nil)},
		{name: "DELETE with a name header",
			req:     mcpRequest{HTTPMethod: "DELETE", Headers: hdrs("mcp-session-id", "abc", "mcp-name", "review")},
			wantErr: headerMismatch(nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, body, rerr := extractMCP(&tc.req)
			if tc.wantErr != nil {
				if rerr == nil {
					t.Fatalf("extractMCP succeeded, want a mcpRefusal: %+v", got)
				}
				if got != nil || body != nil {
					t.Errorf("extractMCP returned a call or body with a refusal")
				}
				gotErr := &mcpRefusal{Status: rerr.status, Code: rerr.code, Reason: rerr.reason, ID: rerr.id}
				if diff := cmp.Diff(tc.wantErr, gotErr); diff != "" {
					t.Errorf("refusal mismatch (-want +got):\n%s\nmessage: %s", diff, rerr.message)
				}
				if !strings.Contains(rerr.message, tc.msgHas) {
					t.Errorf("message %q does not contain %q", rerr.message, tc.msgHas)
				}
				if rerr.message == "" || len(rerr.message) > 200 {
					t.Errorf("message %q: want short and non-empty", rerr.message)
				}
				return
			}
			if rerr != nil {
				t.Fatalf("extractMCP refused: %v", rerr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("call mismatch (-want +got):\n%s", diff)
			}
			if got.Source == policy.SourceBody && !got.Truncated {
				want, err := stdDecodeJSON(tc.req.Body)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(want, body) {
					t.Errorf("body mismatch (-want +got):\n%s", cmp.Diff(want, body))
				}
			} else if body != nil {
				t.Errorf("body = %v, want nil for source %q", body, got.Source)
			}
		})
	}
}

func BenchmarkExtractMCP(b *testing.B) {
	req := &mcpRequest{
		HTTPMethod: "POST",
		Headers: map[string]string{
			"mcp-method": "tools/call", "mcp-name": "search_issues",
			"mcp-session-id": "3f2a9c", "mcp-protocol-version": "2025-06-18",
		},
		Body:     []byte(typicalToolsCall),
		MaxDepth: 64,
	}
	b.SetBytes(int64(len(req.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := extractMCP(req); err != nil {
			b.Fatal(err)
		}
	}
}
