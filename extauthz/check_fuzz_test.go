package extauthz

import (
	"context"
	"encoding/json"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/portcullis-mcp/portcullis/policy"
)

// echoOnly allows tools/call of the tool "echo" and nothing else.
type echoOnly struct{}

func (echoOnly) Eval(_ context.Context, in *policy.Input) (policy.Decision, error) {
	ok := in.MCP != nil && in.MCP.Method == "tools/call" && in.MCP.Tool == "echo" && !in.MCP.Truncated
	return policy.Decision{Allowed: ok, Cost: 1}, nil
}

// FuzzCheck sends arbitrary paths, headers and bodies through Check with a
// policy that allows only tools/call of "echo". Properties: Check never
// panics or returns an error; every response is either OK or a denial with
// a documented status; and whenever Check allows a body, a lenient reader
// of the same body (encoding/json, last duplicate key wins, invalid UTF-8
// replaced) also sees a call of "echo" — a different tool cannot be
// smuggled past the policy.
func FuzzCheck(f *testing.F) {
	f.Add("/mcp", "POST", "application/json", "", "", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`)
	f.Add("/mcp", "POST", "application/json", "tools/call", "echo", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"rm"}}`)
	f.Add("/mcp", "POST", "application/json", "tools/call", "echo", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}}`)
	f.Add("//mcp/./", "POST", "application/json; charset=utf-8", "", "", "\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}")
	f.Add("/mcp", "POST", "application/json", "", "", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}]`)
	f.Add("/mcp", "GET", "", "", "", "")
	f.Add("/api/x", "POST", "application/json", "", "", `{"a":`)
	f.Add("/mcp%2f..", "POST", "text/plain", "", "", "x")
	f.Add("/mcp", "POST", "application/json", "", "", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"ech\xffo\"}}")
	s := New(echoOnly{}, &Options{MaxBodyBytes: 4096, MaxJSONDepth: 32})
	documented := map[int]bool{400: true, 403: true, 413: true, 415: true}
	f.Fuzz(func(t *testing.T, path, method, contentType, mcpMethod, mcpName, body string) {
		headers := map[string]string{"content-type": contentType}
		if mcpMethod != "" {
			headers["mcp-method"] = mcpMethod
		}
		if mcpName != "" {
			headers["mcp-name"] = mcpName
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: headers, RawBody: []byte(body)},
		}}}
		resp, err := s.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("Check returned an error: %v", err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			if st := int(resp.GetDeniedResponse().GetStatus().GetCode()); !documented[st] {
				t.Fatalf("undocumented denial status %d", st)
			}
			return
		}
		if resp.GetOkResponse() == nil {
			t.Fatal("OK status without OkHttpResponse")
		}
		// Only a body can name the call: whatever the HTTP method, the body
		// is what was checked and what the upstream gets (found by
		// FuzzCheck: a POST without one, and a GET whose Mcp-Method /
		// Mcp-Name headers named echo, were allowed).
		if body == "" {
			t.Fatalf("allowed a %s without body", method)
		}
		var lenient struct {
			Method string `json:"method"`
			Params struct {
				Name string `json:"name"`
			} `json:"params"`
		}
		if err := json.Unmarshal([]byte(body), &lenient); err != nil {
			t.Fatalf("allowed a body encoding/json rejects: %v", err)
		}
		if lenient.Method != "tools/call" || lenient.Params.Name != "echo" {
			t.Fatalf("allowed, but a lenient reader sees %q %q", lenient.Method, lenient.Params.Name)
		}
	})
}
