package policy

// Input is the document a policy sees as input. Its JSON form is the
// contract in DESIGN.md: a superset of opa-envoy-plugin's v3 input, so
// policies written for that plugin run unchanged.
//
// The zero Input is valid: it describes a request about which nothing is
// known, made by an anonymous caller.
type Input struct {
	// Attributes is envoy.service.auth.v3.AttributeContext in protojson
	// form with lowerCamel names: request.http.headers, source.principal,
	// contextExtensions, metadataContext, ...
	Attributes map[string]any `json:"attributes"`
	// AttributesFunc, when Attributes is nil, builds Attributes the first
	// time a policy evaluation needs it whole (Eval then stores it in
	// Attributes); AttributeAt reads one value at a path under attributes
	// (lowerCamel keys) without building the rest, for the decision cache
	// key. ext_authz sets both, so a decision answered from the cache never
	// converts the whole CheckRequest. They must agree with each other.
	AttributesFunc func() map[string]any           `json:"-"`
	AttributeAt    func(path []string) (any, bool) `json:"-"`
	// ParsedPath is the request path without its query, split on "/" and
	// percent-decoded segment by segment: "/mcp" is ["mcp"].
	ParsedPath []string `json:"parsed_path"`
	// ParsedQuery maps each query parameter to its values.
	ParsedQuery map[string][]string `json:"parsed_query"`
	// ParsedBody is the decoded JSON body, or nil when the body is absent,
	// not JSON, or truncated.
	ParsedBody any `json:"parsed_body,omitempty"`
	// TruncatedBody reports that Envoy sent only part of the body.
	TruncatedBody bool `json:"truncated_body"`
	// Identity is who is calling.
	Identity Identity `json:"identity"`
	// MCP is the MCP call the request carries; nil when the request is not
	// an MCP request.
	MCP *MCP `json:"mcp,omitempty"`
}

// Version is input.version: fixed, as in opa-envoy-plugin.
type Version struct {
	ExtAuthz string `json:"ext_authz"`
	Encoding string `json:"encoding"`
}

// InputVersion is the value of input.version.
var InputVersion = Version{ExtAuthz: "v3", Encoding: "protojson"}

// Identity kinds, the values of input.identity.kind.
const (
	KindJWT           = "jwt"
	KindAPIKey        = "api_key"
	KindIntrospection = "introspection"
	KindMTLS          = "mtls"
	KindBasic         = "basic"
	KindAnonymous     = "anonymous"
	// KindLocal is the operator-configured caller of the MCP server on
	// stdio, where no gateway authenticates anyone.
	KindLocal = "local"
)

// Identity is input.identity: the caller as the identity providers found it.
// The zero Identity is not authenticated; [Anonymous] returns the form a
// policy sees for an anonymous caller.
type Identity struct {
	Authenticated bool   `json:"authenticated"`
	Provider      string `json:"provider"`
	// Kind is one of the Kind constants.
	Kind     string         `json:"kind"`
	Subject  string         `json:"subject"`
	ClientID string         `json:"client_id"`
	Roles    []string       `json:"roles"`
	Scopes   []string       `json:"scopes"`
	Claims   map[string]any `json:"claims"`
}

// Anonymous returns the identity of a caller that presented no credential.
func Anonymous() Identity {
	return Identity{Kind: KindAnonymous}
}

// MCP sources, the values of input.mcp.source.
const (
	SourceMetadata = "metadata" // Envoy's MCP filter (envoy.filters.http.mcp)
	SourceHeaders  = "headers"  // Mcp-Method / Mcp-Name headers
	SourceBody     = "body"     // the JSON-RPC body
)

// MCP is input.mcp: the MCP call a request carries.
type MCP struct {
	// Method is the JSON-RPC method ("tools/call"). It is empty for a
	// JSON-RPC response sent by the client and for requests without a
	// JSON-RPC message (an SSE GET, a session DELETE).
	Method string `json:"method,omitempty"`
	// ID is the JSON-RPC id: a string or a json.Number; nil for a
	// notification.
	ID any `json:"id,omitempty"`
	// Name is the target of the call: the tool name for tools/call, the
	// prompt name for prompts/get, the resource URI for resources/*.
	Name string `json:"name,omitempty"`
	// Tool, Resource and Prompt are Name again, set only for their methods.
	Tool     string `json:"tool,omitempty"`
	Resource string `json:"resource,omitempty"`
	Prompt   string `json:"prompt,omitempty"`
	// Arguments are params.arguments of tools/call and prompts/get.
	Arguments       any    `json:"arguments,omitempty"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	SessionID       string `json:"session_id,omitempty"`
	// Source says where the call was read from: one of the Source
	// constants.
	Source string `json:"source"`
	// Truncated reports that the body was cut by Envoy and nothing more
	// trustworthy named the call: Method and Name, when set, come from
	// client-supplied headers that could not be checked against the body.
	Truncated bool `json:"truncated,omitempty"`
}
