package envoy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
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
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fuzzDoor is a front door built from the shipped bootstrap, with a
// catch-all route added (so that every path is checked and proxied, not
// only /mcp), failure_mode_deny on the rate-limit filter and generous
// timeouts (so that a slow answer is an error, never a decision the front
// door did not see), in front of services that decide by a hash of what
// they are asked and remember their decisions by x-request-id.
type fuzzDoor struct {
	fd *FrontDoor

	mu       sync.Mutex
	checked  map[string]*authv3.CheckRequest // by x-request-id
	allowed  map[string]bool                 // Check answered OK
	limited  map[string]bool                 // ShouldRateLimit answered OVER_LIMIT
	proxied  []proxied                       // what the upstream got
	upstream *httptest.Server
}

type proxied struct {
	id, uri string
}

// verdict is a deterministic choice from the request: 0, 1, 2, ...
func verdict(n int, parts ...string) int {
	h := sha256.New()
	for _, p := range parts {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	return int(h.Sum(nil)[0]) % n
}

type fuzzAuthz struct {
	authv3.UnimplementedAuthorizationServer
	d *fuzzDoor
}

func (a fuzzAuthz) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	hr := r.GetAttributes().GetRequest().GetHttp()
	id := hr.GetHeaders()["x-request-id"]
	v := verdict(3, hr.GetPath(), string(hr.GetRawBody()), hr.GetMethod())
	a.d.mu.Lock()
	a.d.checked[id] = r
	a.d.allowed[id] = v == 0
	a.d.mu.Unlock()
	switch v {
	case 0:
		resp := okResponse(map[string]any{"subject": id})
		resp.GetOkResponse().HeadersToRemove = []string{"authorization", ":path", "host"}
		return resp, nil
	case 1:
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: "no"}},
		}, nil
	default:
		return nil, status.Error(codes.Internal, "scripted failure")
	}
}

type fuzzRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	d *fuzzDoor
}

func (s fuzzRLS) ShouldRateLimit(_ context.Context, r *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	var id string
	for _, d := range r.GetDescriptors() {
		for _, e := range d.GetEntries() {
			if e.GetKey() == "subject" {
				id = e.GetValue()
			}
		}
	}
	over := verdict(4, id) == 0
	s.d.mu.Lock()
	s.d.limited[id] = over
	s.d.mu.Unlock()
	code := rlsv3.RateLimitResponse_OK
	if over {
		code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	return &rlsv3.RateLimitResponse{OverallCode: code}, nil
}

func newFuzzDoor(f *testing.F) *fuzzDoor {
	d := &fuzzDoor{checked: map[string]*authv3.CheckRequest{}, allowed: map[string]bool{}, limited: map[string]bool{}}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, fuzzAuthz{d: d})
	rlsv3.RegisterRateLimitServiceServer(gs, fuzzRLS{d: d})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	f.Cleanup(gs.Stop)
	d.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.proxied = append(d.proxied, proxied{r.Header.Get("X-Request-Id"), r.RequestURI})
		d.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	f.Cleanup(d.upstream.Close)

	b, err := Shipped()
	if err != nil {
		f.Fatal(err)
	}
	if err := fuzzBootstrap(b); err != nil {
		f.Fatal(err)
	}
	d.fd, err = New(b, &Options{Listen: "127.0.0.1:0", Clusters: map[string]string{
		"portcullis": lis.Addr().String(), "mcp_server": strings.TrimPrefix(d.upstream.URL, "http://"),
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.fd.Close() })
	return d
}

// fuzzBootstrap adds a catch-all route to mcp_server after the shipped
// ones (with the /mcp route's rate limits), sets failure_mode_deny and
// raises the ext_authz and rate-limit timeouts.
func fuzzBootstrap(b *bootstrapv3.Bootstrap) error {
	f := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
	var h hcmv3.HttpConnectionManager
	if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
		return err
	}
	vh := h.GetRouteConfig().GetVirtualHosts()[0]
	all := proto.Clone(vh.GetRoutes()[0]).(*routev3.Route)
	all.Name, all.Match = "all", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	vh.Routes = append(vh.Routes, all)
	for _, hf := range h.GetHttpFilters() {
		var m proto.Message
		switch hf.GetName() {
		case filterExtAuthz:
			c := &extauthzv3.ExtAuthz{}
			if err := hf.GetTypedConfig().UnmarshalTo(c); err != nil {
				return err
			}
			c.GetGrpcService().Timeout = durationpb.New(10 * time.Second)
			m = c
		case filterRateLimit:
			c := &ratelimitfilterv3.RateLimit{}
			if err := hf.GetTypedConfig().UnmarshalTo(c); err != nil {
				return err
			}
			c.Timeout, c.FailureModeDeny = durationpb.New(10*time.Second), true
			m = c
		default:
			continue
		}
		a, err := anypb.New(m)
		if err != nil {
			return err
		}
		hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
	}
	a, err := anypb.New(&h)
	if err != nil {
		return err
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	return nil
}

// FuzzFrontDoor sends arbitrary requests (method, request target, header
// lines "Name: value", body), as Go's HTTP server parses them, through the
// front door's ServeHTTP. Properties: it never panics; the upstream never
// gets a request that the authorization service denied or failed on, or
// that the rate limit service answered OVER_LIMIT (only the public
// metadata route skips the check); the path the authorization service sees
// is normalized — no "//", no "." or ".." segment, no backslash, no escaped
// slash — and is the path the upstream gets.
func FuzzFrontDoor(f *testing.F) {
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}`
	for _, s := range []struct{ method, target, headers, body string }{
		{"POST", "/mcp", "Content-Type: application/json\nAuthorization: Bearer t", call},
		{"POST", "//mcp", "Content-Type: application/json", call},
		{"POST", "/a/../mcp", "Content-Type: application/json", call},
		{"POST", "/%2e%2e/%6dcp", "Content-Type: application/json", call},
		{"POST", "/mcp%2F..%2Fadmin", "Content-Type: application/json", call},
		{"POST", `/x\..\mcp`, "Content-Type: application/json", call},
		{"POST", "/.well-known/oauth-protected-resource/../../mcp", "", call},
		{"GET", "/.well-known/oauth-protected-resource/mcp", "", ""},
		{"POST", "/mcp/./?a=1&b=%zz", "Content-Type: application/json; charset=utf-8\nX-Envoy-Auth-Partial-Body: true", call},
		{"POST", "/mcp", "Content-Type: application/json\nTransfer-Encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"},
		{"GET", "/mcp", "Accept: text/event-stream\nX-Forwarded-For: 10.0.0.1\nMcp-Method: tools/call\nMcp-Name: x", ""},
		{"DELETE", "/mcp;x=1", "x_underscore: 1", ""},
		{"POST", "/mcp", "Content-Type: application/json", "[" + call + "]"},
	} {
		f.Add(s.method, s.target, s.headers, []byte(s.body))
	}
	d := newFuzzDoor(f)
	f.Fuzz(func(t *testing.T, method, target, headers string, body []byte) {
		if len(body) > 1<<20 {
			return
		}
		var raw bytes.Buffer
		raw.WriteString(method + " " + target + " HTTP/1.1\r\nHost: mcp.test\r\n")
		for _, line := range strings.Split(headers, "\n") {
			if line != "" {
				raw.WriteString(line + "\r\n")
			}
		}
		if !strings.Contains(strings.ToLower(headers), "transfer-encoding") {
			raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
		}
		raw.WriteString("\r\n")
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return // Go's HTTP server answers 400 itself
		}
		req.RemoteAddr = "192.0.2.1:1234"
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req = req.WithContext(ctx)

		d.mu.Lock()
		before := len(d.proxied)
		d.mu.Unlock()
		rec := httptest.NewRecorder()
		d.fd.ServeHTTP(rec, req)

		d.mu.Lock()
		defer d.mu.Unlock()
		for _, p := range d.proxied[before:] {
			path, _, _ := strings.Cut(p.uri, "?")
			if strings.HasPrefix(path, "/.well-known/oauth-protected-resource") {
				continue // ext_authz is off for this route, by the bootstrap
			}
			cr, ok := d.checked[p.id]
			switch {
			case !ok:
				t.Fatalf("%s %q reached the upstream (%s) unchecked", method, target, p.uri)
			case !d.allowed[p.id]:
				t.Fatalf("%s %q reached the upstream (%s) after a denial", method, target, p.uri)
			case d.limited[p.id]:
				t.Fatalf("%s %q reached the upstream (%s) over the limit", method, target, p.uri)
			}
			checkedPath, _, _ := strings.Cut(cr.GetAttributes().GetRequest().GetHttp().GetPath(), "?")
			if checkedPath != path {
				t.Errorf("%s %q: checked path %q, the upstream got %q", method, target, checkedPath, path)
			}
		}
		for id, cr := range d.checked {
			p, _, _ := strings.Cut(cr.GetAttributes().GetRequest().GetHttp().GetPath(), "?")
			if msg := notNormalized(p); msg != "" {
				t.Errorf("%s %q: the authorization service saw %q: %s", method, target, p, msg)
			}
			delete(d.checked, id)
			delete(d.allowed, id)
			delete(d.limited, id)
		}
		d.proxied = d.proxied[:0]
	})
}

// notNormalized says why a path is not what normalize_path, merge_slashes
// and path_with_escaped_slashes_action: REJECT_REQUEST leave; "" when it is.
func notNormalized(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "not absolute"
	case strings.Contains(p, "//"):
		return `holds "//"`
	case strings.Contains(p, `\`):
		return "holds a backslash"
	case hasEscapedSlash(p):
		return "holds an escaped slash"
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return "holds a dot segment"
		}
	}
	return ""
}
