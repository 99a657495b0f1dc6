package envoy

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// headerPartialBody tells the authorization service whether the body it
// got is all of it (with allow_partial_message).
const headerPartialBody = "x-envoy-auth-partial-body"

// extAuthzFilter asks the authorization service about the request and
// applies its answer, as envoy.filters.http.ext_authz does.
func (st *stream) extAuthzFilter(c *extauthzv3.ExtAuthz) bool {
	var per extauthzv3.ExtAuthzPerRoute
	if a, ok := st.route.GetTypedPerFilterConfig()[filterExtAuthz]; ok {
		_ = a.UnmarshalTo(&per) // checked by New
	}
	if per.GetDisabled() {
		return true
	}
	req, ok := st.checkRequest(c, per.GetCheckSettings().GetContextExtensions())
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(st.r.Context(), durationOr(c.GetGrpcService().GetTimeout(), defaultExtAuthzTimeout))
	defer cancel()
	resp, err := st.f.authz[c.GetGrpcService().GetEnvoyGrpc().GetClusterName()].Check(ctx, req)
	if err != nil {
		if c.GetFailureModeAllow() {
			if c.GetFailureModeAllowHeaderAdd() {
				st.headers.Set("X-Envoy-Auth-Failure-Mode-Allowed", "true")
			}
			return true
		}
		status := http.StatusForbidden
		if code := int(c.GetStatusOnError().GetCode()); code != 0 {
			status = code
		}
		st.localReply(status, nil, "")
		return false
	}
	if md := resp.GetDynamicMetadata(); md != nil {
		st.mergeMetadata(filterExtAuthz, md)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		d := resp.GetDeniedResponse()
		status := int(d.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden
		}
		h := http.Header{}
		applyHeaderOptions(h, d.GetHeaders())
		st.localReply(status, h, d.GetBody())
		return false
	}
	if ok := resp.GetOkResponse(); ok != nil {
		applyHeaderOptions(st.headers, ok.GetHeaders())
		for _, k := range ok.GetHeadersToRemove() {
			if !strings.HasPrefix(k, ":") && !strings.EqualFold(k, "host") {
				st.headers.Del(k)
			}
		}
		st.query = mutateQuery(st.query, ok.GetQueryParametersToSet(), ok.GetQueryParametersToRemove())
		applyHeaderOptions(st.respHeader, ok.GetResponseHeadersToAdd())
	}
	return true
}

// checkRequest builds the CheckRequest Envoy sends for this request. It
// answers 413 itself, as Envoy does, when the body is over
// max_request_bytes and partial messages are not allowed.
func (st *stream) checkRequest(c *extauthzv3.ExtAuthz, ext map[string]string) (*authv3.CheckRequest, bool) {
	headers := make(map[string]string, len(st.headers)+5)
	for k, vs := range st.headers {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	pathQuery := st.pathWithQuery()
	headers[":authority"] = st.host
	headers[":method"] = st.r.Method
	headers[":path"] = pathQuery
	headers[":scheme"] = "http"
	hr := &authv3.AttributeContext_HttpRequest{
		Id:       st.id,
		Method:   st.r.Method,
		Headers:  headers,
		Path:     pathQuery,
		Host:     st.host,
		Scheme:   "http",
		Size:     st.r.ContentLength,
		Protocol: st.r.Proto,
	}
	if wb := c.GetWithRequestBody(); wb != nil {
		limit := int(wb.GetMaxRequestBytes())
		complete := st.readBody(limit)
		if st.bodyErr != nil {
			st.localReply(http.StatusBadRequest, nil, "")
			return nil, false
		}
		body := st.body
		if !complete {
			if !wb.GetAllowPartialMessage() {
				st.localReply(http.StatusRequestEntityTooLarge, nil, "")
				return nil, false
			}
			body = body[:limit]
		}
		if wb.GetAllowPartialMessage() {
			headers[headerPartialBody] = strconv.FormatBool(!complete)
		}
		if wb.GetPackAsBytes() {
			hr.RawBody = body
		} else {
			hr.Body = string(body)
		}
		if complete {
			hr.Size = int64(len(st.body))
		}
	}
	attrs := &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: peerAddress(st.remote)},
		Destination:       &authv3.AttributeContext_Peer{Address: peerAddress(st.local)},
		Request:           &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: hr},
		ContextExtensions: ext,
	}
	if ns := c.GetMetadataContextNamespaces(); len(ns) > 0 {
		md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
		for _, n := range ns {
			if s, ok := st.metadata[n]; ok {
				md.FilterMetadata[n] = s
			}
		}
		attrs.MetadataContext = md
	}
	return &authv3.CheckRequest{Attributes: attrs}, true
}

func (st *stream) pathWithQuery() string {
	if st.query == "" {
		return st.path
	}
	return st.path + "?" + st.query
}

// mergeMetadata adds md's fields to the namespace, as Envoy's
// setDynamicMetadata merges.
func (st *stream) mergeMetadata(ns string, md *structpb.Struct) {
	cur, ok := st.metadata[ns]
	if !ok {
		cur = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		st.metadata[ns] = cur
	}
	for k, v := range md.GetFields() {
		cur.Fields[k] = v
	}
}

func peerAddress(a *net.TCPAddr) *corev3.Address {
	if a == nil {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       a.IP.String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(a.Port)},
	}}}
}

// applyHeaderOptions applies header mutations as ext_authz does. The
// deprecated append flag, when set, decides: true adds a value, false
// replaces. Otherwise append_action does: APPEND_IF_EXISTS_OR_ADD (the
// zero value) adds a value, ADD_IF_ABSENT adds only a missing header,
// OVERWRITE_IF_EXISTS_OR_ADD replaces, OVERWRITE_IF_EXISTS replaces only
// a present header.
func applyHeaderOptions(h http.Header, opts []*corev3.HeaderValueOption) {
	for _, o := range opts {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if k == "" || strings.HasPrefix(k, ":") {
			continue
		}
		action := o.GetAppendAction()
		//lint:ignore SA1019 Envoy still honours the deprecated flag, and so must the front door.
		if a := o.GetAppend(); a != nil {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
			if a.GetValue() {
				action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
			}
		}
		present := len(h.Values(k)) > 0
		switch action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.Add(k, v)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !present {
				h.Set(k, v)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.Set(k, v)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if present {
				h.Set(k, v)
			}
		}
	}
}

// mutateQuery sets and removes query parameters, keeping the order of
// the others. A set parameter replaces every value of its key in place
// of the first, or is appended.
func mutateQuery(raw string, set []*corev3.QueryParameter, remove []string) string {
	if len(set) == 0 && len(remove) == 0 {
		return raw
	}
	type pair struct{ key, raw string }
	var pairs []pair
	if raw != "" {
		for _, p := range strings.Split(raw, "&") {
			k, _, _ := strings.Cut(p, "=")
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
			pairs = append(pairs, pair{k, p})
		}
	}
	drop := map[string]bool{}
	for _, k := range remove {
		drop[k] = true
	}
	for _, q := range set {
		enc := url.QueryEscape(q.GetKey()) + "=" + url.QueryEscape(q.GetValue())
		done := false
		kept := pairs[:0]
		for _, p := range pairs {
			if p.key == q.GetKey() {
				if !done {
					kept = append(kept, pair{p.key, enc})
					done = true
				}
				continue
			}
			kept = append(kept, p)
		}
		pairs = kept
		if !done {
			pairs = append(pairs, pair{q.GetKey(), enc})
		}
	}
	var out []string
	for _, p := range pairs {
		if !drop[p.key] {
			out = append(out, p.raw)
		}
	}
	return strings.Join(out, "&")
}
