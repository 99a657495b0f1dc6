package envoy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	mcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/mcp/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The tests here check the front door against Envoy's documented
// behaviour. Its peers are scripted: an authorization service and a rate
// limit service that answer what each test needs (they stand for any
// implementation of Envoy's APIs), and an upstream that records what it
// got. Portcullis itself behind the front door is tested in
// cmd/portcullis (the dev environment).

type scriptedAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	got    []*authv3.CheckRequest
	answer func(*authv3.CheckRequest) (*authv3.CheckResponse, error)
}

func (s *scriptedAuthz) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.got = append(s.got, r)
	s.mu.Unlock()
	if s.answer == nil {
		return okResponse(nil), nil
	}
	return s.answer(r)
}

func (s *scriptedAuthz) last(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		t.Fatal("no CheckRequest")
	}
	return s.got[len(s.got)-1]
}

type scriptedRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu     sync.Mutex
	got    []*rlsv3.RateLimitRequest
	answer func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error)
}

func (s *scriptedRLS) ShouldRateLimit(_ context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	s.got = append(s.got, r)
	s.mu.Unlock()
	if s.answer == nil {
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
	}
	return s.answer(r)
}

func (s *scriptedRLS) requests() []*rlsv3.RateLimitRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*rlsv3.RateLimitRequest(nil), s.got...)
}

// received is what the upstream got.
type received struct {
	method, uri, host string
	header            http.Header
	body              string
}

type upstream struct {
	mu   sync.Mutex
	got  []received
	srv  *httptest.Server
	next http.HandlerFunc // optional custom answer
}

func (u *upstream) last(t *testing.T) received {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		t.Fatal("the upstream got nothing")
	}
	return u.got[len(u.got)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.got)
}

type door struct {
	url   string
	authz *scriptedAuthz
	rls   *scriptedRLS
	up    *upstream
}

// startDoor runs a front door built from the shipped bootstrap, changed
// by edit, in front of scripted services and a recording upstream.
func startDoor(t *testing.T, edit func(b *bootstrapv3.Bootstrap)) *door {
	t.Helper()
	d := &door{authz: &scriptedAuthz{}, rls: &scriptedRLS{}, up: &upstream{}}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, d.authz)
	rlsv3.RegisterRateLimitServiceServer(gs, d.rls)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	d.up.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d.up.mu.Lock()
		d.up.got = append(d.up.got, received{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(body)})
		next := d.up.next
		d.up.mu.Unlock()
		if next != nil {
			next(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(d.up.srv.Close)

	b := loadShipped(t)
	if edit != nil {
		edit(b)
	}
	fd, err := New(b, &Options{Listen: "127.0.0.1:0", Clusters: map[string]string{
		"portcullis": lis.Addr().String(), "mcp_server": strings.TrimPrefix(d.up.srv.URL, "http://"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	srv := httptest.NewServer(fd)
	t.Cleanup(srv.Close)
	d.url = srv.URL
	return d
}

// editHCM changes the connection manager of the bootstrap in place.
func editHCM(t *testing.T, b *bootstrapv3.Bootstrap, f func(h *hcmv3.HttpConnectionManager)) {
	t.Helper()
	h := hcm(t, b)
	f(h)
	a, err := anypb.New(h)
	if err != nil {
		t.Fatal(err)
	}
	b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
}

// editFilter changes one HTTP filter's typed config.
func editFilter[M proto.Message](t *testing.T, b *bootstrapv3.Bootstrap, name string, m M, f func(M)) {
	t.Helper()
	editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
		for _, hf := range h.GetHttpFilters() {
			if hf.GetName() != name {
				continue
			}
			if err := hf.GetTypedConfig().UnmarshalTo(m); err != nil {
				t.Fatal(err)
			}
			f(m)
			a, err := anypb.New(m)
			if err != nil {
				t.Fatal(err)
			}
			hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
			return
		}
		t.Fatalf("no filter %s", name)
	})
}

func okResponse(md map[string]any, headers ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	r := &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: headers}},
	}
	if md != nil {
		r.DynamicMetadata, _ = structpb.NewStruct(md)
	}
	return r
}

func post(t *testing.T, url, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const toolsCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}`

func TestFrontDoorBuildsCheckRequest(t *testing.T) {
	d := startDoor(t, nil)
	resp := post(t, d.url+"/mcp?b=2&a=1", toolsCall, "X-Envoy-Original-Path", "/admin", "X-Forwarded-For", "203.0.113.9",
		"Authorization", "Bearer t", "X-Dup", "1", "X-Dup", "2")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cr := d.authz.last(t)
	hr := cr.GetAttributes().GetRequest().GetHttp()
	host := strings.TrimPrefix(d.url, "http://")
	if hr.GetMethod() != "POST" || hr.GetPath() != "/mcp?b=2&a=1" || hr.GetHost() != host || hr.GetScheme() != "http" ||
		hr.GetProtocol() != "HTTP/1.1" || hr.GetId() == "" || hr.GetSize() != int64(len(toolsCall)) {
		t.Errorf("http request attributes: %v", hr)
	}
	if string(hr.GetRawBody()) != toolsCall || hr.GetBody() != "" {
		t.Errorf("raw_body %q body %q, want the body packed as bytes", hr.GetRawBody(), hr.GetBody())
	}
	h := hr.GetHeaders()
	for k, want := range map[string]string{
		":authority": host, ":method": "POST", ":path": "/mcp?b=2&a=1", ":scheme": "http",
		"authorization": "Bearer t", "x-dup": "1,2", "content-type": "application/json",
		headerPartialBody: "false", "x-forwarded-for": "203.0.113.9,127.0.0.1", "x-forwarded-proto": "http",
	} {
		if h[k] != want {
			t.Errorf("header %s = %q, want %q", k, h[k], want)
		}
	}
	if _, ok := h["x-envoy-original-path"]; ok {
		t.Error("an x-envoy-* header from the client reached the authorization service")
	}
	if len(h["x-request-id"]) != 36 {
		t.Errorf("x-request-id %q", h["x-request-id"])
	}
	if a := cr.GetAttributes().GetSource().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() == 0 {
		t.Errorf("source %v", a)
	}
	if a := cr.GetAttributes().GetDestination().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" {
		t.Errorf("destination %v", a)
	}
	md := cr.GetAttributes().GetMetadataContext().GetFilterMetadata()[filterMCP].AsMap()
	want := map[string]any{"method": "tools/call", "id": float64(7), "params": map[string]any{"name": "search"}}
	if diff := cmp.Diff(want, md); diff != "" {
		t.Errorf("MCP filter metadata (-want +got):\n%s", diff)
	}
	up := d.up.last(t)
	if up.body != toolsCall || up.uri != "/mcp?b=2&a=1" || up.host != host {
		t.Errorf("upstream got %s %s host %s body %q", up.method, up.uri, up.host, up.body)
	}
}

func TestFrontDoorPartialBody(t *testing.T) {
	d := startDoor(t, func(b *bootstrapv3.Bootstrap) {
		editFilter(t, b, filterExtAuthz, &extauthzv3.ExtAuthz{}, func(c *extauthzv3.ExtAuthz) { c.WithRequestBody.MaxRequestBytes = 40 })
		editFilter(t, b, filterMCP, &mcpv3.Mcp{}, func(c *mcpv3.Mcp) { c.MaxRequestBodySize = wrapperspb.UInt32(50) })
	})
	resp := post(t, d.url+"/mcp", toolsCall)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	hr := d.authz.last(t).GetAttributes().GetRequest().GetHttp()
	if string(hr.GetRawBody()) != toolsCall[:40] || hr.GetHeaders()[headerPartialBody] != "true" {
		t.Errorf("raw_body %q partial %q, want the first 40 bytes and true", hr.GetRawBody(), hr.GetHeaders()[headerPartialBody])
	}
	md := d.authz.last(t).GetAttributes().GetMetadataContext().GetFilterMetadata()[filterMCP].AsMap()
	want := map[string]any{"is_exceeding_limit": true, "method": "tools/call", "id": float64(7)}
	if diff := cmp.Diff(want, md); diff != "" {
		t.Errorf("MCP filter metadata of a long body (-want +got):\n%s", diff)
	}
	if got := d.up.last(t).body; got != toolsCall {
		t.Errorf("the upstream got %q, want the whole body", got)
	}

	// Without allow_partial_message the filter answers 413 itself.
	d = startDoor(t, func(b *bootstrapv3.Bootstrap) {
		editFilter(t, b, filterExtAuthz, &extauthzv3.ExtAuthz{}, func(c *extauthzv3.ExtAuthz) {
			c.WithRequestBody.MaxRequestBytes, c.WithRequestBody.AllowPartialMessage = 40, false
		})
	})
	if resp := post(t, d.url+"/mcp", toolsCall); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
	if len(d.authz.got) != 0 || d.up.count() != 0 {
		t.Error("a body over the limit was checked or proxied")
	}
}

func TestFrontDoorAppliesOkResponse(t *testing.T) {
	d := startDoor(t, nil)
	opt := func(k, v string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: a}
	}
	d.authz.answer = func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		r := okResponse(map[string]any{"subject": "alice"},
			opt("x-portcullis-subject", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			opt("x-added", "2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
			opt("x-if-absent", "new", corev3.HeaderValueOption_ADD_IF_ABSENT),
			opt("x-kept", "no", corev3.HeaderValueOption_ADD_IF_ABSENT),
			opt("x-only-if-present", "no", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			//lint:ignore SA1019 the deprecated flag is what this case is about.
			&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-legacy", Value: "set"}, Append: wrapperspb.Bool(false)},
		)
		ok := r.GetOkResponse()
		ok.HeadersToRemove = []string{"authorization", "host", ":path", "x-portcullis-roles"}
		ok.QueryParametersToSet = []*corev3.QueryParameter{{Key: "a", Value: "one two"}, {Key: "c", Value: "3"}}
		ok.QueryParametersToRemove = []string{"b"}
		ok.ResponseHeadersToAdd = []*corev3.HeaderValueOption{opt("x-decision", "d-1", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)}
		return r, nil
	}
	resp := post(t, d.url+"/mcp?a=1&b=2&a=9", toolsCall, "x-portcullis-subject", "mallory", "x-portcullis-roles", "admin",
		"x-added", "1", "x-kept", "yes", "x-legacy", "old", "authorization", "Bearer t")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Decision") != "d-1" {
		t.Fatalf("status %d, x-decision %q", resp.StatusCode, resp.Header.Get("X-Decision"))
	}
	up := d.up.last(t)
	for k, want := range map[string][]string{
		"X-Portcullis-Subject": {"alice"}, "X-Portcullis-Roles": nil, "X-Added": {"1", "2"}, "X-If-Absent": {"new"},
		"X-Kept": {"yes"}, "X-Only-If-Present": nil, "X-Legacy": {"set"}, "Authorization": nil,
	} {
		if got := up.header.Values(k); !cmp.Equal(got, want, cmpopts.EquateEmpty()) {
			t.Errorf("upstream header %s = %q, want %q", k, got, want)
		}
	}
	if up.uri != "/mcp?a=one+two&c=3" || up.host == "" {
		t.Errorf("upstream uri %q host %q", up.uri, up.host)
	}
}

func TestFrontDoorDenialsAndErrors(t *testing.T) {
	d := startDoor(t, nil)
	d.authz.answer = func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "www-authenticate", Value: `Bearer resource_metadata="x"`},
					AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
				Body: `{"jsonrpc":"2.0","id":7,"error":{"code":-32001,"message":"no"}}`,
			}},
		}, nil
	}
	resp := post(t, d.url+"/mcp", toolsCall)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="x"` ||
		!strings.Contains(readAll(t, resp.Body), `"code":-32001`) {
		t.Errorf("denial: status %d, www-authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A denial without a DeniedHttpResponse is 403.
	d.authz.answer = func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
	}
	if resp := post(t, d.url+"/mcp", toolsCall); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bare denial: status %d, want 403", resp.StatusCode)
	}
	// An error of the authorization service: status_on_error (503 in the
	// shipped bootstrap), never an allow.
	d.authz.answer = func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return nil, status.Error(codes.Internal, "boom")
	}
	if resp := post(t, d.url+"/mcp", toolsCall); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("error: status %d, want 503", resp.StatusCode)
	}
	if d.up.count() != 0 {
		t.Errorf("the upstream got %d requests, want none", d.up.count())
	}

	// failure_mode_allow lets it through, marked.
	d = startDoor(t, func(b *bootstrapv3.Bootstrap) {
		editFilter(t, b, filterExtAuthz, &extauthzv3.ExtAuthz{}, func(c *extauthzv3.ExtAuthz) {
			c.FailureModeAllow, c.FailureModeAllowHeaderAdd = true, true
		})
	})
	d.authz.answer = func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	}
	if resp := post(t, d.url+"/mcp", toolsCall); resp.StatusCode != http.StatusOK {
		t.Errorf("failure_mode_allow: status %d", resp.StatusCode)
	}
	if got := d.up.last(t).header.Get("X-Envoy-Auth-Failure-Mode-Allowed"); got != "true" {
		t.Errorf("x-envoy-auth-failure-mode-allowed %q", got)
	}
}

func TestFrontDoorRateLimit(t *testing.T) {
	d := startDoor(t, nil)
	d.authz.answer = func(r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		md := map[string]any{"subject": "alice", "client_id": "app", "cost": float64(3)}
		if r.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-tool"] != "" {
			md["mcp_name"] = "search"
		}
		return okResponse(md), nil
	}
	limit := func(n uint32, unit rlsv3.RateLimitResponse_RateLimit_Unit, name string) *rlsv3.RateLimitResponse_RateLimit {
		return &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: n, Unit: unit, Name: name}
	}
	d.rls.answer = func(r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		return &rlsv3.RateLimitResponse{
			OverallCode: rlsv3.RateLimitResponse_OK,
			Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
				{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: limit(600, rlsv3.RateLimitResponse_RateLimit_MINUTE, ""), LimitRemaining: 500,
					DurationUntilReset: durationpb.New(30 * time.Second)},
				{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: limit(10, rlsv3.RateLimitResponse_RateLimit_HOUR, "per_tool"), LimitRemaining: 4,
					DurationUntilReset: durationpb.New(1200 * time.Second)},
				{Code: rlsv3.RateLimitResponse_OK},
			},
			RequestHeadersToAdd: []*corev3.HeaderValue{{Key: "x-quota", Value: "ok"}},
		}, nil
	}
	resp := post(t, d.url+"/mcp", toolsCall, "x-tool", "1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	entries := func(kv ...string) []*ratelimitcommonv3.RateLimitDescriptor_Entry {
		var es []*ratelimitcommonv3.RateLimitDescriptor_Entry
		for i := 0; i < len(kv); i += 2 {
			es = append(es, &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
		}
		return es
	}
	want := &rlsv3.RateLimitRequest{Domain: "mcp", Descriptors: []*ratelimitcommonv3.RateLimitDescriptor{
		{Entries: entries("subject", "alice")},
		{Entries: entries("subject", "alice", "tool", "search")},
		{Entries: entries("client_id", "app")},
		{Entries: entries("weighted_subject", "alice"), HitsAddend: wrapperspb.UInt64(3)},
	}}
	if diff := cmp.Diff(want, d.rls.requests()[0], protocmp.Transform()); diff != "" {
		t.Errorf("RateLimitRequest (-want +got):\n%s", diff)
	}
	for k, v := range map[string]string{
		headerXRateLimitLimit: `10, 600;w=60, 10;w=3600;name="per_tool"`, headerXRateLimitRemaining: "4", headerXRateLimitReset: "1200",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := d.up.last(t).header.Get("X-Quota"); got != "ok" {
		t.Errorf("request_headers_to_add: x-quota %q", got)
	}

	// No tool name: the (subject, tool) descriptor is not sent.
	post(t, d.url+"/mcp", toolsCall)
	if got := len(d.rls.requests()[1].GetDescriptors()); got != 3 {
		t.Errorf("without mcp_name: %d descriptors, want 3", got)
	}

	// Over the limit: 429 with x-envoy-ratelimited, the upstream untouched.
	before := d.up.count()
	d.rls.answer = func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: limit(5, rlsv3.RateLimitResponse_RateLimit_MINUTE, ""),
				DurationUntilReset: durationpb.New(42 * time.Second)},
		}}, nil
	}
	resp = post(t, d.url+"/mcp", toolsCall)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(headerRateLimited) != "true" ||
		resp.Header.Get(headerXRateLimitRemaining) != "0" || resp.Header.Get(headerXRateLimitReset) != "42" {
		t.Errorf("over limit: status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if d.up.count() != before {
		t.Error("an over-limit request reached the upstream")
	}

	// The service failing: failure_mode_deny is false in the shipped
	// bootstrap, so the request goes on.
	d.rls.answer = func(*rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) { return nil, errors.New("down") }
	if resp := post(t, d.url+"/mcp", toolsCall); resp.StatusCode != http.StatusOK {
		t.Errorf("rate limit service down: status %d, want 200", resp.StatusCode)
	}
}

func TestFrontDoorHitsAddend(t *testing.T) {
	st := &stream{metadata: map[string]*structpb.Struct{}}
	ha := func(v any) (uint64, bool) {
		s, _ := structpb.NewStruct(map[string]any{"cost": v})
		st.metadata[filterExtAuthz] = s
		return st.hitsAddend(&routev3.RateLimit_HitsAddend{Format: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:cost)%"})
	}
	for _, tc := range []struct {
		v    any
		want uint64
		ok   bool
	}{
		{float64(0), 0, true}, {float64(5), 5, true}, {"7", 7, true}, {float64(1e9), 1e9, true},
		{float64(1e9 + 1), 0, false}, {float64(-1), 0, false}, {1.5, 0, false}, {"x", 0, false}, {true, 0, false},
	} {
		if got, ok := ha(tc.v); got != tc.want || ok != tc.ok {
			t.Errorf("cost %v: %d %v, want %d %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
	delete(st.metadata, filterExtAuthz)
	if _, ok := st.hitsAddend(&routev3.RateLimit_HitsAddend{Format: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:cost)%"}); ok {
		t.Error("absent metadata gave a hits addend")
	}
}

func TestFrontDoorConnectionManager(t *testing.T) {
	d := startDoor(t, nil)
	for _, tc := range []struct {
		path   string
		status int
		uri    string // what the upstream gets
	}{
		{"/mcp", 200, "/mcp"},
		{"//mcp", 200, "/mcp"},
		{"/x/../mcp", 200, "/mcp"},
		{"/%6Dcp", 200, "/mcp"},
		{"/mcp/./", 404, ""},
		{"/mcp%2F", 400, ""},
		{"/x%2f..%2fmcp", 400, ""},
		{"/admin", 404, ""},
		// ext_authz is disabled on this route.
		{"/.well-known/oauth-protected-resource/mcp", 200, "/.well-known/oauth-protected-resource/mcp"},
		{"/mcp%ZZ", 400, ""},
	} {
		before, checks := d.up.count(), len(d.authz.got)
		conn, err := net.Dial("tcp", strings.TrimPrefix(d.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, "POST "+tc.path+" HTTP/1.1\r\nHost: mcp.test\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(toolsCall))+"\r\nConnection: close\r\n\r\n"+toolsCall)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.uri != "" {
			if got := d.up.last(t).uri; got != tc.uri {
				t.Errorf("%s: upstream got %s, want %s", tc.path, got, tc.uri)
			}
			public := strings.HasPrefix(tc.uri, "/.well-known/")
			if public != (len(d.authz.got) == checks) {
				t.Errorf("%s: checked %d times", tc.path, len(d.authz.got)-checks)
			} else if got := d.authz.last(t).GetAttributes().GetRequest().GetHttp().GetPath(); !public && got != tc.uri {
				t.Errorf("%s: the authorization service saw %s, want %s", tc.path, got, tc.uri)
			}
		} else if d.up.count() != before {
			t.Errorf("%s: refused but proxied", tc.path)
		}
	}
	// headers_with_underscores_action: REJECT_REQUEST.
	if resp := post(t, d.url+"/mcp", toolsCall, "x_portcullis_subject", "alice"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("header with an underscore: status %d, want 400", resp.StatusCode)
	}
}

func TestFrontDoorStreamsSSE(t *testing.T) {
	d := startDoor(t, nil)
	release := make(chan struct{})
	d.up.next = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "event: message\ndata: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "event: message\ndata: second\n\n")
	}
	defer close(release)
	resp := post(t, d.url+"/mcp", toolsCall, "Accept", "text/event-stream")
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	// The first event arrives while the upstream still holds the stream
	// open: nothing is buffered.
	if err != nil || line != "event: message\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
}

func TestFrontDoorRefusesWhatItDoesNotImplement(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, b *bootstrapv3.Bootstrap)
		want string
	}{
		{"connection manager option", func(t *testing.T, b *bootstrapv3.Bootstrap) {
			editHCM(t, b, func(h *hcmv3.HttpConnectionManager) { h.XffNumTrustedHops = 1 })
		}, "xff_num_trusted_hops: not implemented"},
		{"ext_authz option", func(t *testing.T, b *bootstrapv3.Bootstrap) {
			editFilter(t, b, filterExtAuthz, &extauthzv3.ExtAuthz{}, func(c *extauthzv3.ExtAuthz) { c.ClearRouteCache = true })
		}, "clear_route_cache: not implemented"},
		{"rate limit option", func(t *testing.T, b *bootstrapv3.Bootstrap) {
			editFilter(t, b, filterRateLimit, &ratelimitfilterv3.RateLimit{}, func(c *ratelimitfilterv3.RateLimit) { c.RequestType = "internal" })
		}, "request_type: not implemented"},
		{"MCP filter option", func(t *testing.T, b *bootstrapv3.Bootstrap) {
			editFilter(t, b, filterMCP, &mcpv3.Mcp{}, func(c *mcpv3.Mcp) { c.ClearRouteCache = true })
		}, "clear_route_cache: not implemented"},
		{"unknown filter", func(t *testing.T, b *bootstrapv3.Bootstrap) {
			editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
				f := proto.Clone(h.HttpFilters[0]).(*hcmv3.HttpFilter)
				f.Name = "envoy.filters.http.lua"
				h.HttpFilters = append([]*hcmv3.HttpFilter{f}, h.HttpFilters...)
			})
		}, "envoy.filters.http.lua: not implemented"},
		{"regex route", func(t *testing.T, b *bootstrapv3.Bootstrap) {
			editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
				h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetMatch().CaseSensitive = wrapperspb.Bool(false)
			})
		}, "case_sensitive: not implemented"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := loadShipped(t)
			tc.edit(t, b)
			_, err := New(b, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(loadShipped(t), &Options{Clusters: map[string]string{"nope": "127.0.0.1:1"}}); err == nil {
		t.Error("an override of an unknown cluster was accepted")
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/mcp": "/mcp", "/a/./b": "/a/b", "/a/../b": "/b", "/../../mcp": "/mcp", "/a/b/..": "/a/",
		"/%6d%63%70": "/mcp", "/a%2fb": "/a%2Fb", `/a\..\mcp`: "/mcp", "/%2e%2e/mcp": "/mcp", "/a/%2E": "/a/",
		// Bytes a path cannot hold as they are: encoded, so the path the
		// authorization service checks is the one sent upstream (found by
		// FuzzFrontDoor: "/a/\"x" was checked, "/a/%22x" proxied).
		`/a/"x`: "/a/%22x", "/{x}": "/%7Bx%7D", "/\x01\x7f\xc3\xa9": "/%01%7F%C3%A9", "/a:b@c!$&'()*+,;=": "/a:b@c!$&'()*+,;=",
	} {
		if got, ok := normalizePath(in); !ok || got != want {
			t.Errorf("normalizePath(%q) = %q, %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"/%", "/%4", "/%zz"} {
		if _, ok := normalizePath(in); ok {
			t.Errorf("normalizePath(%q) accepted a malformed escape", in)
		}
	}
	if got := mergeSlashes("//a///b/"); got != "/a/b/" {
		t.Errorf("mergeSlashes: %q", got)
	}
}

func TestDomainMatch(t *testing.T) {
	for _, tc := range []struct {
		domains []string
		host    string
		want    bool
	}{
		{[]string{"*"}, "x", true}, {[]string{"mcp.example.com"}, "MCP.example.com", true},
		{[]string{"*.example.com"}, "a.example.com", true}, {[]string{"*.example.com"}, "example.com", false},
		{[]string{"mcp.*"}, "mcp.local", true}, {[]string{"a"}, "b", false},
	} {
		if got := domainMatch(tc.domains, tc.host); got != tc.want {
			t.Errorf("domainMatch(%v, %q) = %v", tc.domains, tc.host, got)
		}
	}
}

func TestFrontDoorDescriptorActionsAndContextExtensions(t *testing.T) {
	d := startDoor(t, func(b *bootstrapv3.Bootstrap) {
		editHCM(t, b, func(h *hcmv3.HttpConnectionManager) {
			r := h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
			per, _ := anypb.New(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
				CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: map[string]string{"tenant": "blue"}}}})
			r.TypedPerFilterConfig = map[string]*anypb.Any{filterExtAuthz: per}
			r.GetRoute().RateLimits = []*routev3.RateLimit{
				{Actions: []*routev3.RateLimit_Action{
					&routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RemoteAddress_{RemoteAddress: &routev3.RateLimit_Action_RemoteAddress{}}},
					&routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{DescriptorValue: "mcp"}}},
					&routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
						HeaderName: "x-team", DescriptorKey: "team"}}},
				}, HitsAddend: &routev3.RateLimit_HitsAddend{Number: wrapperspb.UInt64(2)}},
				// A header that must match (prefix), and one that must not be there.
				{Actions: []*routev3.RateLimit_Action{
					&routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
						DescriptorValue: "beta-client", Headers: []*routev3.HeaderMatcher{
							{Name: "user-agent", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
								MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "beta/"}}}},
							{Name: "x-internal", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true},
						}}}},
				}},
				// A missing header without skip_if_absent drops the descriptor.
				{Actions: []*routev3.RateLimit_Action{
					&routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
						HeaderName: "x-absent", DescriptorKey: "absent"}}},
				}},
			}
		})
	})
	post(t, d.url+"/mcp", toolsCall, "x-team", "core", "User-Agent", "beta/1.0")
	if got := d.authz.last(t).GetAttributes().GetContextExtensions(); got["tenant"] != "blue" {
		t.Errorf("context extensions %v", got)
	}
	entry := func(k, v string) *ratelimitcommonv3.RateLimitDescriptor_Entry {
		return &ratelimitcommonv3.RateLimitDescriptor_Entry{Key: k, Value: v}
	}
	want := []*ratelimitcommonv3.RateLimitDescriptor{
		{Entries: []*ratelimitcommonv3.RateLimitDescriptor_Entry{entry("remote_address", "127.0.0.1"), entry("generic_key", "mcp"), entry("team", "core")},
			HitsAddend: wrapperspb.UInt64(2)},
		{Entries: []*ratelimitcommonv3.RateLimitDescriptor_Entry{entry("header_match", "beta-client")}},
	}
	if diff := cmp.Diff(want, d.rls.requests()[0].GetDescriptors(), protocmp.Transform()); diff != "" {
		t.Errorf("descriptors (-want +got):\n%s", diff)
	}
	// x-internal present: the header_value_match descriptor is dropped.
	post(t, d.url+"/mcp", toolsCall, "x-team", "core", "User-Agent", "beta/1.0", "x-internal", "1")
	if got := len(d.rls.requests()[1].GetDescriptors()); got != 1 {
		t.Errorf("with x-internal: %d descriptors, want 1", got)
	}
}

func TestFrontDoorExtAuthzDisabledPerRoute(t *testing.T) {
	d := startDoor(t, nil)
	d.authz.answer = func(*authv3.CheckRequest) (*authv3.CheckResponse, error) {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
	}
	resp, err := http.Get(d.url + "/.well-known/oauth-protected-resource")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(d.authz.got) != 0 {
		t.Errorf("metadata route: status %d after %d checks; want 200 without a check", resp.StatusCode, len(d.authz.got))
	}
	if resp := post(t, d.url+"/mcp", toolsCall); resp.StatusCode != http.StatusForbidden {
		t.Errorf("/mcp: status %d, want 403", resp.StatusCode)
	}
}
