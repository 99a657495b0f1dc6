package extauthz

// This file reads the MCP call a request carries: extractMCP. Its rules are
// the contract; the tests in mcp_test.go follow them one by one.
//
// Sources, most trusted first:
//
//  1. the body, parsed here with decodeJSON, when Envoy sent all of it;
//  2. Envoy's MCP filter metadata (filterMetadata["envoy.filters.http.mcp"]):
//     Envoy parsed the whole body. Fields: method (a string;
//     "__jsonrpc_response" for a JSON-RPC response), id (number or string),
//     params (struct). An empty namespace counts as absent; so does
//     metadata marked is_exceeding_limit (the filter read only a prefix of
//     the body) that names no method;
//  3. the Mcp-Method / Mcp-Name headers (MCP 2026-07-28, SEP-2243): asserted
//     by the client, never checked against anything when they are all there
//     is.
//
// call.Source names the one used (policy.SourceBody, SourceMetadata,
// SourceHeaders). SessionID is always the Mcp-Session-Id header.
//
// A complete, non-empty body:
//   - decodeJSON fails (malformed, invalid UTF-8, duplicate key at any level,
//     BOM, trailing data, nesting over MaxDepth) → 400, -32700 parse_error;
//   - a JSON array (a batch; removed in MCP 2025-06-18) → 400, -32600
//     batch_not_supported;
//   - otherwise 400, -32600 invalid_request when: it is not an object;
//     jsonrpc is not "2.0"; id is present but not a string or an integer
//     (no fraction, no exponent) within int64 (null, bool, object, 1.5, 1e3,
//     2^63 are refused); params is present but not an object; method is
//     present but not a non-empty string; a request (method) also carries
//     result or error; a message without method is not a response (an id
//     and exactly one of result and error).
//   - A refusal echoes the id whenever a valid one was read.
//
// Per method (the same rules for the body and for metadata params):
//   - tools/call: Name = Tool = params.name, a non-empty string;
//     Arguments = params.arguments, an object when present;
//   - prompts/get: Name = Prompt = params.name (same rules), Arguments too;
//   - resources/read, resources/subscribe, resources/unsubscribe:
//     Name = Resource = params.uri, a non-empty string;
//   - completion/complete: params.ref is an object: {type: "ref/prompt",
//     name} gives Name = Prompt, {type: "ref/resource", uri} gives
//     Name = Resource (non-empty strings); any other ref is refused;
//   - initialize: ProtocolVersion = params.protocolVersion, a string;
//     every other method: ProtocolVersion = the Mcp-Protocol-Version header;
//   - a response: Method "" and ID set.
//
// Anything required that is missing or of the wrong type → 400, -32600.
//
// Consistency (never guess which reader is right):
//   - Mcp-Method present and not exactly the method (case-sensitive; a
//     response has method "") → 400, -32020 header_mismatch;
//   - Mcp-Name present and not exactly Name, or present for a method that
//     names nothing (tools/list, a response, ...) → 400, -32020;
//   - with a body, metadata whose method (or response-ness) differs, or
//     whose params name a different target (or one of the wrong type) →
//     400, -32020. Metadata that names no target does not disagree.
//   - When the metadata is the source (truncated or no body), the headers
//     are checked against it the same way.
//   - Envoy joins repeated headers with ","; such a value simply differs.
//
// A truncated body is never read:
//   - metadata present → the call from metadata (Truncated false, or true
//     when the metadata is marked is_exceeding_limit). Metadata so marked
//     was read from a prefix that may end before the params naming the
//     target (or protocolVersion): their absence is then not an error; the
//     call names the target of the Mcp-Name header when there is one
//     (Source headers: only the client names it), else none;
//   - else Mcp-Method present → Method and Name from the headers (Tool,
//     Prompt or Resource set by the method), Source headers, Truncated true;
//   - else → Method "", Source body, Truncated true.
//
// No body (an SSE GET, a session DELETE, an empty POST):
//   - metadata present → the call from metadata;
//   - else an empty POST → 400, -32600 invalid_request ("empty body");
//   - else Mcp-Method or Mcp-Name present → 400, -32020 header_mismatch:
//     the headers mirror a JSON-RPC message and there is none, so they
//     would have the policy decide a call nobody made (a GET is no tool
//     call, whatever its headers say);
//   - else → Method "", Source headers.
//
// Metadata values are checked, never asserted: method must be a non-empty
// string, id a string or an integral number with |id| < 2^53 (beyond, the
// float64 Envoy uses may hold another id than the client's), params an
// object; otherwise 400, -32600 (even when a body is there too).
//
// The body returned is the decoded body when the call was read from it, nil
// otherwise. Messages are short and quote at most 64 bytes of input.

import (
	"encoding/json"
	"strconv"

	"github.com/portcullis-mcp/portcullis/policy"
)

// mcpRequest is what extractMCP reads from a CheckRequest.
type mcpRequest struct {
	HTTPMethod string            // "POST", "GET", ...
	Headers    map[string]string // lower-cased header names, as Envoy sends them
	Body       []byte            // the request body as Envoy sent it (may be empty)
	Truncated  bool              // Envoy sent only part of the body
	Metadata   map[string]any    // metadataContext.filterMetadata["envoy.filters.http.mcp"] as JSON-like values (map[string]any, []any, string, float64, bool, nil); nil when absent
	MaxDepth   int               // JSON nesting limit
}

// MCP header names (lower case, as Envoy sends them).
const (
	headerMCPMethod          = "mcp-method"
	headerMCPName            = "mcp-name"
	headerMCPSessionID       = "mcp-session-id"
	headerMCPProtocolVersion = "mcp-protocol-version"
)

// metadataResponseMethod is the method Envoy's MCP filter records for a
// JSON-RPC response.
const metadataResponseMethod = "__jsonrpc_response"

// metadataExceedingLimit marks metadata the MCP filter read from the
// first max_request_body_size bytes of a longer body.
const metadataExceedingLimit = "is_exceeding_limit"

// maxExactFloatInt is 2^53-1: every integer up to it is a float64 that no
// other integer rounds to, so a metadata id within it is the id the client
// sent.
const maxExactFloatInt = 1<<53 - 1

// mcpTarget says which kind of thing a method names.
type mcpTarget uint8

const (
	targetNone       mcpTarget = iota
	targetTool                 // params.name
	targetPrompt               // params.name
	targetResource             // params.uri
	targetCompletion           // params.ref: a prompt or a resource
)

func methodTarget(method string) mcpTarget {
	switch method {
	case "tools/call":
		return targetTool
	case "prompts/get":
		return targetPrompt
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return targetResource
	case "completion/complete":
		return targetCompletion
	}
	return targetNone
}

// mcpMessage is a JSON-RPC message read from the body or from metadata.
type mcpMessage struct {
	method   string // "" for a response
	response bool
	id       any // string or json.Number; nil when absent
	params   map[string]any
	partial  bool // metadata from a body over the MCP filter's limit
}

// mcpHeaders are the MCP headers of the request.
type mcpHeaders struct {
	method, name               string
	hasMethod, hasName         bool
	sessionID, protocolVersion string
}

func readMCPHeaders(h map[string]string) mcpHeaders {
	var m mcpHeaders
	m.method, m.hasMethod = h[headerMCPMethod]
	m.name, m.hasName = h[headerMCPName]
	m.sessionID = h[headerMCPSessionID]
	m.protocolVersion = h[headerMCPProtocolVersion]
	return m
}

// extractMCP returns the MCP call, the decoded JSON body (nil when there is
// none or it was not decoded), or a refusal. The rules are at the top of
// this file.
func extractMCP(r *mcpRequest) (call *policy.MCP, body any, err *requestError) {
	hdr := readMCPHeaders(r.Headers)
	md, err := messageFromMetadata(r.Metadata)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case len(r.Body) > 0 && !r.Truncated:
		return callFromBody(r, &hdr, md)
	case md != nil:
		call, err := buildCall(md, policy.SourceMetadata, &hdr)
		if err == nil && md.partial && call.Name == "" && hdr.hasName && methodTarget(call.Method) != targetNone {
			// The prefix ended before the target: only the client's
			// header names it.
			setMCPTarget(call, methodTarget(call.Method), hdr.name)
			call.Source = policy.SourceHeaders
		}
		if err == nil {
			err = checkHeaders(call, &hdr)
		}
		if err != nil {
			return nil, nil, err
		}
		// Parsed from a prefix: a later duplicate key could say otherwise.
		call.Truncated = md.partial
		return call, nil, nil
	case hdr.hasMethod && r.Truncated:
		call, err := callFromHeaders(&hdr)
		if err != nil {
			return nil, nil, err
		}
		call.Truncated = r.Truncated
		return call, nil, nil
	case r.Truncated:
		return &policy.MCP{
			Source:          policy.SourceBody,
			Truncated:       true,
			SessionID:       hdr.sessionID,
			ProtocolVersion: hdr.protocolVersion,
		}, nil, nil
	case r.HTTPMethod == "POST":
		return nil, nil, badRequest(CodeInvalidRequest, ReasonInvalidRequest, "empty body", nil)
	case hdr.hasMethod || hdr.hasName:
		return nil, nil, mcpMismatch("Mcp-Method or Mcp-Name header on a request without a JSON-RPC message", nil)
	default:
		return &policy.MCP{
			Source:          policy.SourceHeaders,
			SessionID:       hdr.sessionID,
			ProtocolVersion: hdr.protocolVersion,
		}, nil, nil
	}
}

func mcpInvalid(message string, id any) *requestError {
	return badRequest(CodeInvalidRequest, ReasonInvalidRequest, message, id)
}

func mcpMismatch(message string, id any) *requestError {
	return badRequest(CodeHeaderMismatch, ReasonHeaderMismatch, message, id)
}

// callFromBody reads the call from a complete body and checks the metadata
// and the headers against it.
func callFromBody(r *mcpRequest, hdr *mcpHeaders, md *mcpMessage) (*policy.MCP, any, *requestError) {
	v, jerr := decodeJSON(r.Body, r.MaxDepth)
	if jerr != nil {
		return nil, nil, badRequest(CodeParseError, ReasonParseError, jerr.Error(), nil)
	}
	msg, err := messageFromBody(v)
	if err != nil {
		return nil, nil, err
	}
	call, err := buildCall(msg, policy.SourceBody, hdr)
	if err != nil {
		return nil, nil, err
	}
	if md != nil {
		if err := checkMetadata(call, msg, md); err != nil {
			return nil, nil, err
		}
	}
	if err := checkHeaders(call, hdr); err != nil {
		return nil, nil, err
	}
	return call, v, nil
}

// messageFromBody checks the JSON-RPC envelope of a decoded body.
func messageFromBody(v any) (*mcpMessage, *requestError) {
	obj, ok := v.(map[string]any)
	if !ok {
		if _, batch := v.([]any); batch {
			return nil, badRequest(CodeInvalidRequest, ReasonBatch, "batch requests are not supported", nil)
		}
		return nil, mcpInvalid("the body is not a JSON-RPC object", nil)
	}
	msg := &mcpMessage{}
	idv, hasID := obj["id"]
	if hasID {
		if msg.id, ok = bodyID(idv); !ok {
			return nil, mcpInvalid("id must be a string or an integer", nil)
		}
	}
	if s, ok := obj["jsonrpc"].(string); !ok || s != "2.0" {
		return nil, mcpInvalid(`jsonrpc must be "2.0"`, msg.id)
	}
	if p, has := obj["params"]; has {
		if msg.params, ok = p.(map[string]any); !ok {
			return nil, mcpInvalid("params must be an object", msg.id)
		}
	}
	_, hasResult := obj["result"]
	_, hasError := obj["error"]
	if mv, has := obj["method"]; has {
		if msg.method, ok = mv.(string); !ok || msg.method == "" {
			return nil, mcpInvalid("method must be a non-empty string", msg.id)
		}
		if hasResult || hasError {
			return nil, mcpInvalid("a request cannot carry result or error", msg.id)
		}
		return msg, nil
	}
	if !hasID || hasResult == hasError {
		return nil, mcpInvalid("neither a request nor a response", msg.id)
	}
	msg.response = true
	return msg, nil
}

// bodyID validates a decoded id: a string, or a json.Number written as an
// integer that fits in int64.
func bodyID(v any) (any, bool) {
	switch id := v.(type) {
	case string:
		return id, true
	case json.Number:
		if !isIntegerLiteral(string(id)) {
			return nil, false
		}
		if _, err := strconv.ParseInt(string(id), 10, 64); err != nil {
			return nil, false
		}
		return id, true
	}
	return nil, false
}

func isIntegerLiteral(s string) bool {
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// messageFromMetadata checks Envoy's MCP filter metadata; nil when absent.
func messageFromMetadata(md map[string]any) (*mcpMessage, *requestError) {
	if len(md) == 0 {
		return nil, nil
	}
	msg := &mcpMessage{}
	var ok bool
	if msg.partial, _ = md[metadataExceedingLimit].(bool); msg.partial {
		if _, has := md["method"]; !has {
			return nil, nil // the prefix named no method: as if absent
		}
	}
	idv, hasID := md["id"]
	if hasID {
		if msg.id, ok = metadataID(idv); !ok {
			return nil, mcpInvalid("MCP metadata: invalid id", nil)
		}
	}
	if msg.method, ok = md["method"].(string); !ok || msg.method == "" {
		return nil, mcpInvalid("MCP metadata: method must be a non-empty string", msg.id)
	}
	if p, has := md["params"]; has {
		if msg.params, ok = p.(map[string]any); !ok {
			return nil, mcpInvalid("MCP metadata: params must be an object", msg.id)
		}
	}
	if msg.method == metadataResponseMethod {
		if !hasID {
			return nil, mcpInvalid("MCP metadata: response without id", nil)
		}
		msg.method, msg.response = "", true
	}
	return msg, nil
}

// metadataID validates an id from metadata: a string, or an integral number
// exactly representable as a float64 (protobuf Struct numbers are doubles).
func metadataID(v any) (any, bool) {
	switch id := v.(type) {
	case string:
		return id, true
	case float64:
		if id != id || id < -maxExactFloatInt || id > maxExactFloatInt || id != float64(int64(id)) {
			return nil, false
		}
		return json.Number(strconv.FormatInt(int64(id), 10)), true
	case int:
		return metadataID(int64(id))
	case int64:
		if id < -maxExactFloatInt || id > maxExactFloatInt {
			return nil, false
		}
		return json.Number(strconv.FormatInt(id, 10)), true
	case json.Number:
		return bodyID(id)
	}
	return nil, false
}

// mcpParamString looks up params[key]. present reports that the key is there;
// ok that its value is a non-empty string.
func mcpParamString(params map[string]any, key string) (s string, present, ok bool) {
	v, present := params[key]
	if !present {
		return "", false, false
	}
	s, ok = v.(string)
	return s, true, ok && s != ""
}

// mcpTargetName finds what a message names. kind is targetTool, targetPrompt
// or targetResource (a completion resolves to prompt or resource); present
// reports that params hold the key at all; ok that it is valid.
func mcpTargetName(t mcpTarget, params map[string]any) (kind mcpTarget, name string, present, ok bool) {
	switch t {
	case targetTool, targetPrompt:
		name, present, ok = mcpParamString(params, "name")
		return t, name, present, ok
	case targetResource:
		name, present, ok = mcpParamString(params, "uri")
		return t, name, present, ok
	case targetCompletion:
		rv, present := params["ref"]
		if !present {
			return targetNone, "", false, false
		}
		ref, isObj := rv.(map[string]any)
		if !isObj {
			return targetNone, "", true, false
		}
		switch ref["type"] {
		case "ref/prompt":
			name, _, ok = mcpParamString(ref, "name")
			return targetPrompt, name, true, ok
		case "ref/resource":
			name, _, ok = mcpParamString(ref, "uri")
			return targetResource, name, true, ok
		}
		return targetNone, "", true, false
	}
	return targetNone, "", false, true
}

// buildCall applies the per-method rules to a message.
func buildCall(msg *mcpMessage, source string, hdr *mcpHeaders) (*policy.MCP, *requestError) {
	call := &policy.MCP{
		Method:          msg.method,
		ID:              msg.id,
		SessionID:       hdr.sessionID,
		ProtocolVersion: hdr.protocolVersion,
		Source:          source,
	}
	prefix := ""
	if source == policy.SourceMetadata {
		prefix = "MCP metadata: "
	}
	t := methodTarget(msg.method)
	if t != targetNone {
		kind, name, present, ok := mcpTargetName(t, msg.params)
		switch {
		case !ok && msg.partial && !present:
			// Metadata from a prefix that ended before the target.
		case !ok:
			switch t {
			case targetTool, targetPrompt:
				return nil, mcpInvalid(prefix+"params.name must be a non-empty string", msg.id)
			case targetResource:
				return nil, mcpInvalid(prefix+"params.uri must be a non-empty string", msg.id)
			default:
				return nil, mcpInvalid(prefix+"params.ref must be a prompt or resource reference", msg.id)
			}
		default:
			setMCPTarget(call, kind, name)
		}
		if t == targetTool || t == targetPrompt {
			if a, has := msg.params["arguments"]; has {
				args, isObj := a.(map[string]any)
				if !isObj {
					return nil, mcpInvalid(prefix+"params.arguments must be an object", msg.id)
				}
				call.Arguments = args
			}
		}
	}
	if msg.method == "initialize" {
		pv, ok := msg.params["protocolVersion"].(string)
		if _, present := msg.params["protocolVersion"]; !ok && !(msg.partial && !present) {
			return nil, mcpInvalid(prefix+"params.protocolVersion must be a string", msg.id)
		}
		if ok {
			call.ProtocolVersion = pv
		}
	}
	return call, nil
}

func setMCPTarget(call *policy.MCP, kind mcpTarget, name string) {
	call.Name = name
	switch kind {
	case targetTool:
		call.Tool = name
	case targetPrompt:
		call.Prompt = name
	case targetResource:
		call.Resource = name
	}
}

// callFromHeaders builds the call from Mcp-Method and Mcp-Name alone.
func callFromHeaders(hdr *mcpHeaders) (*policy.MCP, *requestError) {
	call := &policy.MCP{
		Method:          hdr.method,
		SessionID:       hdr.sessionID,
		ProtocolVersion: hdr.protocolVersion,
		Source:          policy.SourceHeaders,
	}
	if hdr.hasName {
		t := methodTarget(hdr.method)
		if t == targetNone {
			return nil, mcpMismatch("Mcp-Name header on a method that names nothing", nil)
		}
		// A completion may name a prompt or a resource: the headers do not
		// say which, so only Name is set.
		setMCPTarget(call, t, hdr.name)
	}
	return call, nil
}

// checkHeaders refuses Mcp-Method / Mcp-Name headers that disagree with the
// call read from the body or the metadata.
func checkHeaders(call *policy.MCP, hdr *mcpHeaders) *requestError {
	if hdr.hasMethod && hdr.method != call.Method {
		return mcpMismatch("Mcp-Method header does not match the request", call.ID)
	}
	if hdr.hasName {
		if methodTarget(call.Method) == targetNone {
			return mcpMismatch("Mcp-Name header on a method that names nothing", call.ID)
		}
		if hdr.name != call.Name {
			return mcpMismatch("Mcp-Name header does not match the request", call.ID)
		}
	}
	return nil
}

// checkMetadata refuses Envoy metadata that disagrees with the body.
func checkMetadata(call *policy.MCP, msg, md *mcpMessage) *requestError {
	if md.method != msg.method || md.response != msg.response {
		return mcpMismatch("Envoy MCP metadata does not match the body", call.ID)
	}
	t := methodTarget(msg.method)
	if t == targetNone {
		return nil
	}
	kind, name, present, ok := mcpTargetName(t, md.params)
	if !present {
		return nil
	}
	callKind, _, _, _ := mcpTargetName(t, msg.params)
	if !ok || kind != callKind || name != call.Name {
		return mcpMismatch("Envoy MCP metadata does not match the body", call.ID)
	}
	return nil
}
