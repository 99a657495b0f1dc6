package extauthz

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis-mcp/portcullis/policy"
)

// mcpFilterNamespace is the dynamic metadata namespace of Envoy's MCP filter.
const mcpFilterNamespace = "envoy.filters.http.mcp"

// partialBodyHeader is the header Envoy's ext_authz filter adds to the
// CheckRequest when it sends only part of the body (allow_partial_message).
const partialBodyHeader = "x-envoy-auth-partial-body"

// request is what Check reads from a CheckRequest.
type request struct {
	in      *policy.Input
	headers map[string]string // lower-cased names; repeated headers joined with ","
	path    string            // normalized path, "/" + parsed_path joined

	credentialHeader string // the header that carried the credential
}

// buildInput turns a CheckRequest into the policy input, or refuses it with
// a documented status. It does not authenticate: input.identity is left for
// the caller.
func (s *Server) buildInput(req *authv3.CheckRequest) (*request, *requestError) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return nil, badRequest(CodeInvalidRequest, ReasonNoHTTP, "the check request has no HTTP attributes", nil)
	}
	headers, rerr := s.headerMap(h)
	if rerr != nil {
		return nil, rerr
	}
	r := &request{in: &policy.Input{}, headers: headers}

	rawPath, rawQuery, _ := strings.Cut(h.GetPath(), "?")
	segs, err := parsePath(rawPath)
	if err != nil {
		return nil, badRequest(CodeInvalidRequest, ReasonInvalidRequest, err.Error(), nil)
	}
	r.in.ParsedPath = segs
	r.path = "/" + strings.Join(segs, "/")
	if r.in.ParsedQuery, err = parseQuery(rawQuery); err != nil {
		return nil, badRequest(CodeInvalidRequest, ReasonInvalidRequest, err.Error(), nil)
	}

	body := h.GetRawBody()
	if len(body) == 0 && h.GetBody() != "" {
		body = []byte(h.GetBody())
	}
	if len(body) > s.opts.MaxBodyBytes {
		return nil, &requestError{status: http.StatusRequestEntityTooLarge, code: CodeInvalidRequest, reason: ReasonBodyTooLarge,
			message: fmt.Sprintf("request body exceeds %d bytes", s.opts.MaxBodyBytes)}
	}
	truncated := r.headers[partialBodyHeader] == "true"
	r.in.TruncatedBody = truncated

	metadata := attrs.GetMetadataContext().GetFilterMetadata()[mcpFilterNamespace]
	_, hasMethodHeader := r.headers["mcp-method"]
	if s.isMCPPath(r.path) || metadata != nil || hasMethodHeader {
		if len(body) > 0 && h.GetMethod() == http.MethodPost && !isJSON(r.headers["content-type"]) {
			return nil, &requestError{status: http.StatusUnsupportedMediaType, code: CodeInvalidRequest, reason: ReasonInvalidRequest,
				message: "MCP requests must have content type application/json"}
		}
		mr := &mcpRequest{
			HTTPMethod: h.GetMethod(),
			Headers:    r.headers,
			Body:       body,
			Truncated:  truncated,
			MaxDepth:   s.opts.MaxJSONDepth,
		}
		if metadata != nil {
			mr.Metadata = metadata.AsMap()
		}
		call, parsed, rerr := extractMCP(mr)
		if rerr != nil {
			return nil, rerr
		}
		r.in.MCP, r.in.ParsedBody = call, parsed
	} else if len(body) > 0 && !truncated {
		if r.in.ParsedBody, err = parseBody(r.headers["content-type"], body, s.opts.MaxJSONDepth); err != nil {
			return nil, badRequest(CodeParseError, ReasonParseError, err.Error(), nil)
		}
	}

	if len(h.GetHeaders()) > 0 && len(attrs.GetMetadataContext().GetTypedFilterMetadata()) == 0 &&
		len(attrs.GetRouteMetadataContext().GetTypedFilterMetadata()) == 0 {
		// The usual request: the attributes are converted when the policy
		// reads them, and only what it reads when the decision comes from
		// the cache. (Typed metadata holds Any values whose conversion can
		// fail: those requests are converted now, to refuse them early.)
		r.in.AttributesFunc = func() map[string]any {
			m, _ := attributesMap(attrs) // cannot fail without typed metadata
			return m
		}
		r.in.AttributeAt = func(path []string) (any, bool) { return attributeAt(attrs, path) }
		return r, nil
	}
	if r.in.Attributes, err = attributesMap(attrs); err != nil {
		return nil, badRequest(CodeInvalidRequest, ReasonInvalidRequest, "the check request cannot be encoded", nil)
	}
	if len(h.GetHeaders()) == 0 && len(headers) > 0 {
		// Envoy sent header_map (encode_raw_headers): give policies the
		// headers map they read with opa-envoy-plugin too.
		hm := make(map[string]any, len(headers))
		for k, v := range headers {
			hm[k] = v
		}
		if req, ok := r.in.Attributes["request"].(map[string]any); ok {
			if hr, ok := req["http"].(map[string]any); ok {
				hr["headers"] = hm
			}
		}
	}
	return r, nil
}

// headerMap returns the request headers by lower-cased name. Envoy sends
// either headers (values of repeated headers joined with ",") or, with
// encode_raw_headers, header_map; both are read the same way. Headers over
// MaxHeaderBytes in all are refused with 431, values that are not UTF-8
// with 400.
func (s *Server) headerMap(h *authv3.AttributeContext_HttpRequest) (map[string]string, *requestError) {
	size := 0
	tooLarge := func() *requestError {
		return &requestError{status: http.StatusRequestHeaderFieldsTooLarge, code: CodeInvalidRequest, reason: ReasonHeadersTooLarge,
			message: fmt.Sprintf("request headers exceed %d bytes", s.opts.MaxHeaderBytes)}
	}
	if hm := h.GetHeaderMap(); hm != nil && len(hm.GetHeaders()) > 0 {
		out := make(map[string]string, len(hm.GetHeaders()))
		for _, hv := range hm.GetHeaders() {
			k := strings.ToLower(hv.GetKey())
			v := hv.GetValue()
			if v == "" {
				v = string(hv.GetRawValue())
			}
			if size += len(k) + len(v); size > s.opts.MaxHeaderBytes {
				return nil, tooLarge()
			}
			if !utf8.ValidString(v) {
				return nil, badRequest(CodeInvalidRequest, ReasonInvalidRequest, fmt.Sprintf("header %q is not valid UTF-8", clipEcho(k)), nil)
			}
			if prev, ok := out[k]; ok {
				v = prev + "," + v
			}
			out[k] = v
		}
		return out, nil
	}
	src := h.GetHeaders()
	lower := true
	for k, v := range src {
		if size += len(k) + len(v); size > s.opts.MaxHeaderBytes {
			return nil, tooLarge()
		}
		lower = lower && !hasUpper(k)
	}
	if lower { // as Envoy sends them: the request's own map, read only
		return src, nil
	}
	out := make(map[string]string, len(src))
	for k, v := range src {
		out[strings.ToLower(k)] = v
	}
	return out, nil
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// parsePath splits a path on "/", percent-decodes each segment and removes
// dot segments (RFC 3986 section 5.2.4), so the policy sees the path the
// upstream will route on: "/mcp/../admin" and "/mcp/%2e%2e/admin" are
// ["admin"], "/a%2Fb" is ["a/b"] (one segment, as Envoy keeps escaped
// slashes by default). Leading slashes are dropped, as in opa-envoy-plugin:
// "//mcp" is ["mcp"].
func parsePath(p string) ([]string, error) {
	p = strings.TrimLeft(p, "/")
	raw := strings.Split(p, "/")
	out := make([]string, 0, len(raw))
	for i, seg := range raw {
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return nil, fmt.Errorf("invalid escape in path segment %d", i)
		}
		if !utf8.ValidString(dec) || strings.IndexByte(dec, 0) >= 0 {
			return nil, fmt.Errorf("path segment %d is not valid UTF-8 or holds NUL", i)
		}
		last := i == len(raw)-1
		switch dec { // after decoding: "%2e%2e" is a dot segment too (RFC 3986 decodes unreserved characters first)
		case ".":
			if last {
				out = append(out, "")
			}
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
			continue
		}
		out = append(out, dec)
	}
	// Dot removal can bring an empty segment to the front ("/.//admin"):
	// drop it, as leading slashes are, so that the path is the one
	// "//admin" and "/admin" give.
	for len(out) > 1 && out[0] == "" {
		out = out[1:]
	}
	if len(out) == 0 {
		out = append(out, "")
	}
	return out, nil
}

// parseQuery parses a raw query string; a malformed one is refused rather
// than half-read.
func parseQuery(q string) (map[string][]string, error) {
	if q == "" {
		return map[string][]string{}, nil
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return nil, fmt.Errorf("invalid query string")
	}
	return v, nil
}

// parseBody decodes a JSON or form body for input.parsed_body; other
// content types are not parsed.
func parseBody(contentType string, body []byte, maxDepth int) (any, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case isJSON(contentType):
		v, err := decodeJSON(body, maxDepth)
		if err != nil {
			return nil, fmt.Errorf("invalid JSON body: %w", err)
		}
		return v, nil
	case mt == "application/x-www-form-urlencoded":
		if !utf8.Valid(body) {
			return nil, fmt.Errorf("form body is not valid UTF-8")
		}
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("invalid form body")
		}
		m := make(map[string]any, len(v))
		for k, vs := range v {
			a := make([]any, len(vs))
			for i, s := range vs {
				a[i] = s
			}
			m[k] = a
		}
		return m, nil
	}
	return nil, nil
}

// isJSON reports whether a content type is JSON: application/json or a
// +json suffix type.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

func (s *Server) isMCPPath(path string) bool {
	for _, p := range s.opts.MCPPaths {
		if path == p || strings.TrimSuffix(path, "/") == p {
			return true
		}
	}
	return false
}
