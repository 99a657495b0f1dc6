// Package extauthz implements Envoy's external authorization service
// (envoy.service.auth.v3.Authorization) for MCP traffic.
//
// One Check reads the HTTP attributes of the CheckRequest, extracts the MCP
// call (from Envoy's MCP filter metadata, the Mcp-Method and Mcp-Name
// headers, or the JSON-RPC body), builds the policy input — a superset of
// opa-envoy-plugin's v3 input — asks a [Decider], and maps the decision onto
// a CheckResponse: headers for the upstream and dynamic metadata on allow,
// a status with a JSON-RPC error body on denial.
//
// # Refusals
//
// Requests Portcullis cannot read are refused before the policy runs:
//
//	400  no HTTP attributes, malformed path or query, a header value that is
//	     not UTF-8, malformed JSON-RPC
//	     (-32700 parse error, -32600 invalid request), batch requests,
//	     Mcp-Method/Mcp-Name headers that disagree with the body (-32020)
//	413  a body larger than Options.MaxBodyBytes
//	415  an MCP POST whose content type is not JSON
//	431  request headers larger than Options.MaxHeaderBytes in all
//	503  the policy could not decide (error, not loaded): never an allow
//
// A policy denial is 403 unless the policy sets http_status.
package extauthz
