package extauthz

import "net/http"

// JSON-RPC error codes carried in the body of a denial. The standard codes
// come from JSON-RPC 2.0, -32020 from MCP 2026-07-28 (header mismatch); the
// others are ours, in the range JSON-RPC reserves for servers.
const (
	CodeParseError     = -32700 // the body is not JSON
	CodeInvalidRequest = -32600 // JSON, but not a valid JSON-RPC request
	CodeInternalError  = -32603 // the decision could not be made (503)
	CodeHeaderMismatch = -32020 // Mcp-Method / Mcp-Name disagree with the body
	CodeUnauthorized   = -32001 // no or bad credential (401)
	CodeForbidden      = -32003 // the policy said no (403)
	CodeRateLimited    = -32029 // locked out or over limit (429)
)

// Reasons: stable machine codes for refusals made before policy runs. They
// appear in logs, in metrics as the reason label, and in error bodies.
const (
	ReasonParseError      = "parse_error"
	ReasonInvalidRequest  = "invalid_request"
	ReasonBatch           = "batch_not_supported"
	ReasonHeaderMismatch  = "header_mismatch"
	ReasonBodyTooLarge    = "body_too_large"
	ReasonHeadersTooLarge = "headers_too_large"
	ReasonNoHTTP          = "no_http_attributes"
	ReasonPolicyError     = "policy_error"
	ReasonPolicyUndefined = "policy_undefined"

	ReasonNoCredential      = "no_credential"
	ReasonInvalidCredential = "invalid_credential"
	ReasonAuthnUnavailable  = "authn_unavailable"
	ReasonLockedOut         = "locked_out"
)

// requestError is a refusal decided before the policy runs: the request is
// malformed in a way Portcullis answers itself.
type requestError struct {
	status  int    // HTTP status of the denial
	code    int    // JSON-RPC error code
	reason  string // one of the Reason constants
	message string // client-visible message; never holds secrets
	id      any    // the JSON-RPC id when it could be read, else nil

	challenge  string // WWW-Authenticate, when set
	retryAfter string // Retry-After, when set
}

func (e *requestError) Error() string { return e.reason + ": " + e.message }

func badRequest(code int, reason, message string, id any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: code, reason: reason, message: message, id: id}
}
