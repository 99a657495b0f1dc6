package mcpserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// WhoamiOutput is the result of the whoami tool.
type WhoamiOutput struct {
	Authenticated bool     `json:"authenticated" jsonschema:"whether the caller presented a verified identity"`
	Subject       string   `json:"subject" jsonschema:"the caller's subject"`
	Kind          string   `json:"kind" jsonschema:"how the gateway authenticated the caller (jwt, api_key, mtls, ...)"`
	Provider      string   `json:"provider" jsonschema:"the identity provider that recognized the caller"`
	ClientID      string   `json:"client_id" jsonschema:"the OAuth client id"`
	Roles         []string `json:"roles" jsonschema:"the caller's roles"`
	Scopes        []string `json:"scopes" jsonschema:"the caller's scopes"`
	Transport     string   `json:"transport" jsonschema:"http or stdio"`
	SignedMethod  string   `json:"signed_mcp_method,omitempty" jsonschema:"the MCP method the gateway signed the identity for"`
	SignedName    string   `json:"signed_mcp_name,omitempty" jsonschema:"the MCP name the gateway signed the identity for"`
	Expires       string   `json:"expires,omitempty" jsonschema:"when the identity token expires (RFC 3339)"`
}

// EchoInput is the input of the echo tool.
type EchoInput struct {
	Text string `json:"text" jsonschema:"the text to return"`
}

// EchoOutput is the result of the echo tool.
type EchoOutput struct {
	Text string `json:"text" jsonschema:"the text that was sent"`
}

// TimeInput is the input of the time tool.
type TimeInput struct {
	Zone string `json:"zone,omitempty" jsonschema:"an IANA time zone such as Europe/Paris; default UTC"`
}

// TimeOutput is the result of the time tool.
type TimeOutput struct {
	Time string `json:"time" jsonschema:"the current time, RFC 3339"`
	Zone string `json:"zone" jsonschema:"the time zone"`
	Unix int64  `json:"unix" jsonschema:"seconds since the Unix epoch"`
}

// HashInput is the input of the hash tool.
type HashInput struct {
	Text string `json:"text" jsonschema:"the text to hash (UTF-8)"`
}

// HashOutput is the result of the hash tool.
type HashOutput struct {
	SHA256 string `json:"sha256" jsonschema:"hex SHA-256 of the text, as in an API-key file entry"`
}

// builtinTools are the names of the tools addTools adds.
func builtinTools() map[string]struct{} {
	return map[string]struct{}{"whoami": {}, "echo": {}, "time": {}, "hash": {}}
}

// addTools adds the built-in tools.
func (s *Server) addTools() {
	s.builtin = builtinTools()
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "whoami",
		Description: "Return the identity this server sees for the caller (subject, roles, scopes, provider) and the MCP call the gateway signed. Useful when debugging policy.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, s.whoami)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "echo",
		Description: "Return the given text unchanged.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in EchoInput) (*mcp.CallToolResult, EchoOutput, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, EchoOutput(in), nil
	})
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "time",
		Description: "Return the current time, in UTC or in the given IANA time zone.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}, s.timeTool)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "hash",
		Description: "Return the hex SHA-256 of a text, e.g. to write an API-key file entry.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in HashInput) (*mcp.CallToolResult, HashOutput, error) {
		sum := sha256.Sum256([]byte(in.Text))
		return nil, HashOutput{SHA256: hex.EncodeToString(sum[:])}, nil
	})
}

func (s *Server) whoami(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, WhoamiOutput, error) {
	id, transport := s.requestIdentity(ctx, req)
	out := WhoamiOutput{
		Authenticated: id.Authenticated, Subject: id.Subject, Kind: id.Kind, Provider: id.Provider,
		ClientID: id.ClientID, Roles: id.Roles, Scopes: id.Scopes, Transport: transport,
	}
	if out.Roles == nil {
		out.Roles = []string{}
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	if req.Extra != nil && req.Extra.TokenInfo != nil {
		ti := req.Extra.TokenInfo
		out.SignedMethod, _ = ti.Extra[ExtraMCPMethod].(string)
		out.SignedName, _ = ti.Extra[ExtraMCPName].(string)
		if !ti.Expiration.IsZero() {
			out.Expires = ti.Expiration.UTC().Format(time.RFC3339)
		}
	}
	return nil, out, nil
}

func (s *Server) timeTool(_ context.Context, _ *mcp.CallToolRequest, in TimeInput) (*mcp.CallToolResult, TimeOutput, error) {
	zone := in.Zone
	if zone == "" {
		zone = "UTC"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, TimeOutput{}, fmt.Errorf("unknown time zone %q", zone)
	}
	now := s.now().In(loc)
	return nil, TimeOutput{Time: now.Format(time.RFC3339), Zone: zone, Unix: now.Unix()}, nil
}
