package identity

import "encoding/json"

// ResourceMetadata is the OAuth 2.0 Protected Resource Metadata document
// (RFC 9728) that MCP clients read to find the authorization server.
type ResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers,omitempty"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

// JSON returns the document.
func (m ResourceMetadata) JSON() []byte {
	if m.BearerMethodsSupported == nil {
		m.BearerMethodsSupported = []string{"header"}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}
