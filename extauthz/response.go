package extauthz

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/portcullis-mcp/portcullis/policy"
)

// Headers Portcullis sets on an allowed request for the upstream. Any
// header with the x-portcullis- prefix that the client sent is removed, so
// the upstream can trust them.
const (
	identityHeaderPrefix = "x-portcullis-"
	HeaderSubject        = "x-portcullis-subject"
	HeaderClientID       = "x-portcullis-client-id"
	HeaderRoles          = "x-portcullis-roles"
	HeaderScopes         = "x-portcullis-scopes"
	HeaderProvider       = "x-portcullis-provider"
	HeaderIdentity       = "x-portcullis-identity"
	// HeaderDecisionID names the decision that let the request through,
	// for joining the MCP server's audit records to the gateway's. The
	// identity token is reused across requests (identity.Signer.Token), so
	// the id travels beside it.
	HeaderDecisionID = "x-portcullis-decision-id"
)

// Dynamic metadata keys, under the ext_authz filter's namespace: the
// rate-limit filter and access logs read them.
const (
	MetaSubject    = "subject"
	MetaClientID   = "client_id"
	MetaProvider   = "provider"
	MetaMCPMethod  = "mcp_method"
	MetaMCPName    = "mcp_name"
	MetaDecisionID = "decision_id"
	MetaCost       = "cost"
)

// okResponse maps an allow onto an OkHttpResponse.
func (s *Server) okResponse(r *request, d *policy.Decision, decisionID string) *authv3.CheckResponse {
	id := r.in.Identity
	identity := [...]struct{ key, val string }{
		{HeaderSubject, id.Subject},
		{HeaderClientID, id.ClientID},
		{HeaderRoles, strings.Join(id.Roles, ",")},
		{HeaderScopes, strings.Join(id.Scopes, " ")},
		{HeaderProvider, id.Provider},
	}
	n := len(d.Headers)
	for _, h := range identity {
		if h.val != "" {
			n++
		}
	}
	if s.opts.Signer != nil {
		n += 2
	}
	block := make(headerBlock, 0, n)
	ok := &authv3.OkHttpResponse{Headers: make([]*corev3.HeaderValueOption, 0, n)}
	for _, h := range d.Headers {
		ok.Headers = append(ok.Headers, block.option(h.Key, h.Value, h.Append))
	}
	for _, h := range identity {
		if h.val != "" {
			ok.Headers = append(ok.Headers, block.option(h.key, h.val, false))
		}
	}
	if s.opts.Signer != nil { // anonymous callers the policy allowed too: the token says the gateway let this call through
		var method, name string
		if c := r.in.MCP; c != nil {
			method, name = c.Method, c.Name
		}
		if tok, err := s.opts.Signer.Token(&r.in.Identity, method, name); err == nil {
			ok.Headers = append(ok.Headers, block.option(HeaderIdentity, tok, false),
				block.option(HeaderDecisionID, decisionID, false))
		}
	}
	// Envoy applies headers_to_remove after the headers above: remove only
	// what nothing sets.
	ok.HeadersToRemove = append(ok.HeadersToRemove, d.RequestHeadersToRemove...)
	if r.credentialHeader != "" && !s.opts.ForwardCredentials && !setsHeader(ok.Headers, r.credentialHeader) {
		ok.HeadersToRemove = append(ok.HeadersToRemove, r.credentialHeader)
	}
	for k := range r.headers {
		if strings.HasPrefix(k, identityHeaderPrefix) && !setsHeader(ok.Headers, k) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, k)
		}
	}
	for _, q := range d.QueryParametersToSet {
		ok.QueryParametersToSet = append(ok.QueryParametersToSet, &corev3.QueryParameter{Key: q.Key, Value: q.Value})
	}
	ok.QueryParametersToRemove = d.QueryParametersToRemove
	for _, h := range d.ResponseHeadersToAdd {
		ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, headerOption(h.Key, h.Value, h.Append))
	}
	resp := &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
	setDynamicMetadata(resp, r, d, decisionID)
	return resp
}

// deniedResponse maps a policy denial onto a DeniedHttpResponse.
func (s *Server) deniedResponse(r *request, d *policy.Decision, decisionID string) *authv3.CheckResponse {
	status := d.HTTPStatus
	if status == 0 {
		status = http.StatusForbidden
	}
	reason := d.Reason
	if reason == "" {
		reason = "denied by policy"
	}
	// The policy's headers, then perhaps a challenge and a content type.
	block := make(headerBlock, 0, len(d.Headers)+2)
	headers := make([]*corev3.HeaderValueOption, 0, len(d.Headers)+2)
	for _, h := range d.Headers {
		headers = append(headers, block.option(h.Key, h.Value, h.Append))
	}
	switch {
	case hasHeader(d.Headers, "www-authenticate"):
		// The policy wrote its own challenge.
	case status == http.StatusUnauthorized:
		headers = append(headers, block.option("www-authenticate", s.challenge(""), false))
	case status == http.StatusForbidden && len(d.Scopes) > 0:
		headers = append(headers, block.option("www-authenticate", s.challenge(`error="insufficient_scope", scope=`+quote(strings.Join(d.Scopes, " "))), false))
	}
	body := d.Body
	if body == "" {
		body = errorBody(mcpID(r), codeForStatus(status), reason)
		headers = append(headers, block.option("content-type", "application/json", false))
	}
	resp := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCodeForStatus(status)), Message: reason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: headers,
			Body:    body,
		}},
	}
	setDynamicMetadata(resp, r, d, decisionID)
	return resp
}

// refusal answers a request refused before or instead of a policy
// decision: malformed input (4xx) or a decision that could not be made
// (503).
func (s *Server) refusal(e *requestError, decisionID string) *authv3.CheckResponse {
	headers := []*corev3.HeaderValueOption{headerOption("content-type", "application/json", false)}
	if e.challenge != "" {
		headers = append(headers, headerOption("www-authenticate", e.challenge, false))
	}
	if e.retryAfter != "" {
		headers = append(headers, headerOption("retry-after", e.retryAfter, false))
	}
	resp := &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCodeForStatus(e.status)), Message: e.reason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(e.status)},
			Headers: headers,
			Body:    errorBody(e.id, e.code, e.message),
		}},
	}
	setMetadataEntries(resp, []metaEntry{{key: MetaDecisionID, str: decisionID}})
	return resp
}

// challenge builds a WWW-Authenticate Bearer challenge (RFC 6750) with the
// resource metadata URL (RFC 9728) when one is configured.
func (s *Server) challenge(params string) string {
	switch {
	case params == "" && s.resourceMetadata == "":
		return "Bearer"
	case params == "":
		return "Bearer " + s.resourceMetadata
	case s.resourceMetadata == "":
		return "Bearer " + params
	}
	return "Bearer " + params + ", " + s.resourceMetadata
}

func hasHeader(hs []policy.Header, key string) bool {
	for _, h := range hs {
		if h.Key == key {
			return true
		}
	}
	return false
}

// quote writes s as an RFC 9110 quoted-string: backslashes and double
// quotes escaped, and control characters, which a quoted-string cannot
// hold and which would end a header value early, written as spaces. It
// runs on every denial with a challenge, in one allocation.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 && c != '\t' || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// headerPair holds an option and its header in one allocation.
type headerPair struct {
	opt corev3.HeaderValueOption
	hdr corev3.HeaderValue
}

func headerOption(k, v string, appendValue bool) *corev3.HeaderValueOption {
	return fillHeader(&headerPair{}, k, v, appendValue)
}

// headerBlock allocates a response's headers together: one allocation
// for all the headers a response is known to need, where each took its
// own. The options handed out point into the block, so it never grows in
// place: a full block is replaced by a new one and the old stays where the
// options already handed out point.
type headerBlock []headerPair

func (b *headerBlock) option(k, v string, appendValue bool) *corev3.HeaderValueOption {
	if len(*b) == cap(*b) {
		*b = make(headerBlock, 0, 4)
	}
	*b = (*b)[:len(*b)+1]
	return fillHeader(&(*b)[len(*b)-1], k, v, appendValue)
}

func fillHeader(p *headerPair, k, v string, appendValue bool) *corev3.HeaderValueOption {
	p.hdr.Key, p.hdr.Value = k, v
	p.opt.Header = &p.hdr
	p.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	if appendValue {
		p.opt.AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	}
	return &p.opt
}

// setsHeader reports whether hs sets the header k.
func setsHeader(hs []*corev3.HeaderValueOption, k string) bool {
	for _, h := range hs {
		if h.GetHeader().GetKey() == k {
			return true
		}
	}
	return false
}

func mcpID(r *request) any {
	if r.in.MCP != nil {
		return r.in.MCP.ID
	}
	return nil
}

// errorBody is a JSON-RPC error response echoing the request id.
func errorBody(id any, code int, message string) string {
	type rpcError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	b, err := json.Marshal(struct {
		JSONRPC string   `json:"jsonrpc"`
		ID      any      `json:"id"`
		Error   rpcError `json:"error"`
	}{"2.0", id, rpcError{code, message}})
	if err != nil {
		return `{"jsonrpc":"2.0","id":null,"error":{"code":` + strconv.Itoa(code) + `,"message":"error"}}`
	}
	return string(b)
}

func codeForStatus(status int) int {
	switch status {
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable, http.StatusInternalServerError:
		return CodeInternalError
	case http.StatusBadRequest:
		return CodeInvalidRequest
	default:
		return CodeForbidden
	}
}

func grpcCodeForStatus(status int) codes.Code {
	switch status {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable, http.StatusInternalServerError:
		return codes.Unavailable
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusRequestHeaderFieldsTooLarge:
		return codes.InvalidArgument
	default:
		return codes.PermissionDenied
	}
}
