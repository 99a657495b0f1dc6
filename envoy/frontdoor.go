package envoy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Envoy's defaults for settings the bootstrap leaves out.
const (
	defaultExtAuthzTimeout  = 200 * time.Millisecond
	defaultRateLimitTimeout = 20 * time.Millisecond
	defaultRouteTimeout     = 15 * time.Second
	defaultStreamIdle       = 5 * time.Minute
	defaultMCPBodyLimit     = 8192
	maxMCPBodyLimit         = 10 << 20 // Envoy's ceiling for max_request_body_size
)

// Options adjust a front door to where its peers run.
type Options struct {
	// Listen overrides the listener's address ("host:port").
	Listen string
	// Clusters overrides the endpoint of the named clusters ("host:port"),
	// e.g. to point the bootstrap's clusters at test servers.
	Clusters map[string]string
	// Logger receives one line per request (debug) and per upstream error.
	Logger *slog.Logger
}

// FrontDoor is an HTTP handler that does to each request what Envoy does
// with the bootstrap it was built from; see the package documentation.
// It is safe for concurrent use.
type FrontDoor struct {
	s         *settings
	logger    *slog.Logger
	conns     []*grpc.ClientConn
	authz     map[string]authv3.AuthorizationClient   // by cluster
	rls       map[string]rlsv3.RateLimitServiceClient // by cluster
	upstreams map[string]*httputil.ReverseProxy       // by cluster
}

// New builds a front door from b. It fails, naming the field, on any
// listener, filter or option it does not implement.
func New(b *bootstrapv3.Bootstrap, opts *Options) (*FrontDoor, error) {
	if opts == nil {
		opts = &Options{}
	}
	if err := Validate(b); err != nil {
		return nil, err
	}
	s, err := readSettings(b)
	if err != nil {
		return nil, err
	}
	if opts.Listen != "" {
		s.listen = opts.Listen
	}
	for name, addr := range opts.Clusters {
		if _, ok := s.clusters[name]; !ok {
			return nil, fmt.Errorf("options: no cluster %q in the bootstrap", name)
		}
		s.clusters[name] = addr
	}
	f := &FrontDoor{
		s:         s,
		logger:    opts.Logger,
		authz:     map[string]authv3.AuthorizationClient{},
		rls:       map[string]rlsv3.RateLimitServiceClient{},
		upstreams: map[string]*httputil.ReverseProxy{},
	}
	if f.logger == nil {
		f.logger = slog.New(slog.DiscardHandler)
	}
	grpcConn := map[string]*grpc.ClientConn{}
	dial := func(cluster string) (*grpc.ClientConn, error) {
		if c, ok := grpcConn[cluster]; ok {
			return c, nil
		}
		c, err := grpc.NewClient("passthrough:///"+s.clusters[cluster], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", cluster, err)
		}
		grpcConn[cluster] = c
		f.conns = append(f.conns, c)
		return c, nil
	}
	for _, fc := range s.filters {
		switch {
		case fc.extAuthz != nil:
			name := fc.extAuthz.GetGrpcService().GetEnvoyGrpc().GetClusterName()
			c, err := dial(name)
			if err != nil {
				f.Close()
				return nil, err
			}
			f.authz[name] = authv3.NewAuthorizationClient(c)
		case fc.rateLimit != nil:
			name := fc.rateLimit.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
			c, err := dial(name)
			if err != nil {
				f.Close()
				return nil, err
			}
			f.rls[name] = rlsv3.NewRateLimitServiceClient(c)
		}
	}
	for _, vh := range s.vhosts {
		for _, r := range vh.GetRoutes() {
			name := r.GetRoute().GetCluster()
			if _, ok := f.upstreams[name]; !ok {
				f.upstreams[name] = f.proxy(s.clusters[name])
			}
		}
	}
	return f, nil
}

// Addr is the address the bootstrap's listener (or Options.Listen) names.
func (f *FrontDoor) Addr() string { return f.s.listen }

// Server returns an http.Server for f with the connection manager's
// timeouts (request_headers_timeout); it has no write timeout, which would
// cut SSE streams.
func (f *FrontDoor) Server() *http.Server {
	return &http.Server{
		Handler:           f,
		ReadHeaderTimeout: f.s.hcm.GetRequestHeadersTimeout().AsDuration(),
		IdleTimeout:       durationOr(f.s.hcm.GetCommonHttpProtocolOptions().GetIdleTimeout(), time.Hour),
	}
}

// Close closes the gRPC connections to the clusters.
func (f *FrontDoor) Close() error {
	var errs []error
	for _, c := range f.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// stream is one request on its way through the filters.
type stream struct {
	f          *FrontDoor
	w          http.ResponseWriter
	r          *http.Request
	id         string
	path       string      // the normalized path, without the query
	query      string      // the raw query, without "?"
	host       string      // :authority
	headers    http.Header // the request headers the upstream will get
	route      *routev3.Route
	remote     *net.TCPAddr
	local      *net.TCPAddr
	body       []byte // the part of the body read so far
	bodyDone   bool   // body holds all of it
	bodyErr    error
	metadata   map[string]*structpb.Struct // dynamic metadata by namespace
	respHeader http.Header                 // headers added to the response to the client
	status     int                         // the status sent, for the log
}

// ServeHTTP runs r through the connection manager, the HTTP filters and
// the router.
func (f *FrontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &stream{
		f:          f,
		w:          w,
		r:          r,
		id:         strconv.FormatUint(rand.Uint64(), 10),
		headers:    r.Header.Clone(),
		metadata:   map[string]*structpb.Struct{},
		respHeader: http.Header{},
		remote:     tcpAddr(r.RemoteAddr),
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		st.local = tcpAddr(a.String())
	}
	st.run()
	f.logger.Debug("request", slog.String("method", r.Method), slog.String("path", st.path),
		slog.Int("status", st.status), slog.Duration("duration", time.Since(start)))
}

func (st *stream) run() {
	if !st.connectionManager() {
		return
	}
	for _, fc := range st.f.s.filters {
		var cont bool
		switch {
		case fc.mcp != nil:
			cont = st.mcpFilter(fc.mcp)
		case fc.extAuthz != nil:
			cont = st.extAuthzFilter(fc.extAuthz)
		case fc.rateLimit != nil:
			cont = st.rateLimitFilter(fc.rateLimit)
		default: // the router, last
			st.router()
			return
		}
		if !cont {
			return
		}
	}
}

// connectionManager applies the http_connection_manager's request checks
// and header handling, and selects the route. It answers the request and
// returns false when Envoy would not pass it to the filters.
func (st *stream) connectionManager() bool {
	h := st.f.s.hcm
	if h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() != 0 {
		for k := range st.r.Header {
			if strings.Contains(k, "_") {
				st.localReply(http.StatusBadRequest, nil, "")
				return false
			}
		}
	}
	raw := st.r.RequestURI
	if st.r.URL.IsAbs() || raw == "" || raw == "*" {
		raw = st.r.URL.RequestURI()
	}
	path, query, _ := strings.Cut(raw, "?")
	if strings.Contains(raw, "#") || !strings.HasPrefix(path, "/") {
		st.localReply(http.StatusBadRequest, nil, "")
		return false
	}
	if st.f.s.escapedRej && hasEscapedSlash(path) {
		st.localReply(http.StatusBadRequest, nil, "")
		return false
	}
	if h.GetNormalizePath().GetValue() {
		var ok bool
		if path, ok = normalizePath(path); !ok {
			st.localReply(http.StatusBadRequest, nil, "")
			return false
		}
	}
	if h.GetMergeSlashes() {
		path = mergeSlashes(path)
	}
	st.path, st.query, st.host = path, query, st.r.Host

	// Edge handling of the x-forwarded-* and x-envoy-* headers.
	for k := range st.headers {
		if strings.HasPrefix(strings.ToLower(k), "x-envoy-") {
			st.headers.Del(k)
		}
	}
	if h.GetUseRemoteAddress().GetValue() {
		if st.remote != nil {
			xff := st.headers.Values("X-Forwarded-For")
			st.headers.Set("X-Forwarded-For", strings.Join(append(xff, st.remote.IP.String()), ","))
		}
		st.headers.Set("X-Forwarded-Proto", "http")
	} else if ip := lastForwardedFor(st.headers); ip != nil {
		st.remote = &net.TCPAddr{IP: ip}
	}
	if h.GetGenerateRequestId() == nil || h.GetGenerateRequestId().GetValue() {
		if h.GetUseRemoteAddress().GetValue() || st.headers.Get("X-Request-Id") == "" {
			st.headers.Set("X-Request-Id", newUUID())
		}
	}

	st.route = st.f.s.match(st.host, st.path)
	if st.route == nil {
		st.localReply(http.StatusNotFound, nil, "")
		return false
	}
	return true
}

// match finds the route for host and path: the first virtual host whose
// domains match, then its first matching route.
func (s *settings) match(host, path string) *routev3.Route {
	for _, vh := range s.vhosts {
		if !domainMatch(vh.GetDomains(), host) {
			continue
		}
		for _, r := range vh.GetRoutes() {
			switch {
			case r.GetMatch().GetPath() != "" && r.GetMatch().GetPath() == path:
				return r
			case r.GetMatch().GetPrefix() != "" && strings.HasPrefix(path, r.GetMatch().GetPrefix()):
				return r
			}
		}
		return nil
	}
	return nil
}

// domainMatch follows Envoy's virtual host domains: "*", an exact name, or
// one wildcard at the start ("*.example.com") or end ("example.*"),
// case-insensitively.
func domainMatch(domains []string, host string) bool {
	host = strings.ToLower(host)
	for _, d := range domains {
		d = strings.ToLower(d)
		switch {
		case d == "*" || d == host:
			return true
		case strings.HasPrefix(d, "*") && len(host) > len(d)-1 && strings.HasSuffix(host, d[1:]):
			return true
		case strings.HasSuffix(d, "*") && len(host) > len(d)-1 && strings.HasPrefix(host, d[:len(d)-1]):
			return true
		}
	}
	return false
}

// readBody reads the body until it holds more than n bytes or all of it,
// and reports whether all of it is at most n bytes.
func (st *stream) readBody(n int) bool {
	for !st.bodyDone && st.bodyErr == nil && len(st.body) <= n {
		buf := make([]byte, min(n+1-len(st.body), 64<<10))
		k, err := st.r.Body.Read(buf)
		st.body = append(st.body, buf[:k]...)
		switch {
		case errors.Is(err, io.EOF):
			st.bodyDone = true
		case err != nil:
			st.bodyErr = err
		}
	}
	return st.bodyDone && len(st.body) <= n
}

// localReply answers the client directly, as Envoy's sendLocalReply.
func (st *stream) localReply(status int, headers http.Header, body string) {
	h := st.w.Header()
	for k, vs := range st.respHeader {
		h[k] = append(h[k], vs...)
	}
	for k, vs := range headers {
		h[k] = vs
	}
	if body != "" && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	st.status = status
	st.w.WriteHeader(status)
	_, _ = io.WriteString(st.w, body)
}

// router proxies the request to the route's cluster, streaming both ways.
func (st *stream) router() {
	ra := st.route.GetRoute()
	ctx := st.r.Context()
	timeout := durationOr(ra.GetTimeout(), defaultRouteTimeout)
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	idle := durationOr(ra.GetIdleTimeout(), durationOr(st.f.s.hcm.GetStreamIdleTimeout(), defaultStreamIdle))
	ctx, watchdog := newIdleWatchdog(context.WithValue(ctx, streamKey{}, st), idle)
	defer watchdog.stop()

	out := st.r.Clone(ctx)
	out.Header = st.headers
	out.Host = st.host
	// RawPath, not a re-escaping of Path: the upstream gets the path the
	// authorization service checked ("/*" is not sent as "/%2A").
	out.URL.Path, out.URL.RawPath, out.URL.RawQuery = pathUnescape(st.path), st.path, st.query
	var rest io.Reader = st.r.Body
	if st.bodyDone {
		rest = http.NoBody
	}
	out.Body = io.NopCloser(watchdog.reader(io.MultiReader(strings.NewReader(string(st.body)), rest)))
	out.ContentLength = st.r.ContentLength
	rw := &statusWriter{ResponseWriter: watchdog.writer(st.w), stream: st}
	st.f.upstreams[ra.GetCluster()].ServeHTTP(rw, out)
}

// proxy returns the reverse proxy to one cluster endpoint.
func (f *FrontDoor) proxy(addr string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", addr
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1, // stream: SSE events pass through as they come
		ModifyResponse: func(resp *http.Response) error {
			st := resp.Request.Context().Value(streamKey{}).(*stream)
			for k, vs := range st.respHeader {
				resp.Header[k] = append(resp.Header[k], vs...)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			st := r.Context().Value(streamKey{}).(*stream)
			status := http.StatusServiceUnavailable // upstream connect error or reset
			if errors.Is(err, context.DeadlineExceeded) {
				status = http.StatusGatewayTimeout // the route timeout
			}
			f.logger.Warn("upstream error", slog.String("path", st.path), slog.Any("error", err))
			if sw, ok := w.(*statusWriter); ok && sw.wrote {
				return // the response had started: Envoy resets the stream
			}
			st.localReply(status, nil, "")
		},
	}
}

type streamKey struct{}

// statusWriter remembers the status the upstream answered.
type statusWriter struct {
	http.ResponseWriter
	stream *stream
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	w.wrote = true
	w.stream.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// durationOr is d, or def when d is unset.
func durationOr(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.AsDuration()
}

func tcpAddr(s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}

// lastForwardedFor is the last address of X-Forwarded-For, which Envoy
// takes as the client's when use_remote_address is false and no hops are
// trusted.
func lastForwardedFor(h http.Header) net.IP {
	vs := h.Values("X-Forwarded-For")
	if len(vs) == 0 {
		return nil
	}
	parts := strings.Split(vs[len(vs)-1], ",")
	return net.ParseIP(strings.TrimSpace(parts[len(parts)-1]))
}

func newUUID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i], b[8+i] = byte(a>>(8*i)), byte(c>>(8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[x>>4], hex[x&0xf])
	}
	return string(out)
}

// idleWatchdog cancels a stream when no bytes have moved either way for
// the idle timeout (Envoy's stream idle timeout and route idle_timeout).
type idleWatchdog struct {
	mu     sync.Mutex
	timer  *time.Timer
	idle   time.Duration
	cancel context.CancelFunc
}

func newIdleWatchdog(ctx context.Context, idle time.Duration) (context.Context, *idleWatchdog) {
	ctx, cancel := context.WithCancel(ctx)
	w := &idleWatchdog{idle: idle, cancel: cancel}
	if idle > 0 {
		w.timer = time.AfterFunc(idle, cancel)
	}
	return ctx, w
}

func (w *idleWatchdog) kick() {
	if w.timer != nil {
		w.mu.Lock()
		w.timer.Reset(w.idle)
		w.mu.Unlock()
	}
}

func (w *idleWatchdog) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.cancel()
}

func (w *idleWatchdog) reader(r io.Reader) io.Reader { return &kickReader{r: r, w: w} }

func (w *idleWatchdog) writer(rw http.ResponseWriter) http.ResponseWriter {
	return &kickWriter{ResponseWriter: rw, w: w}
}

type kickReader struct {
	r io.Reader
	w *idleWatchdog
}

func (k *kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.w.kick()
	}
	return n, err
}

type kickWriter struct {
	http.ResponseWriter
	w *idleWatchdog
}

func (k *kickWriter) Write(p []byte) (int, error) {
	k.w.kick()
	return k.ResponseWriter.Write(p)
}

func (k *kickWriter) Flush() {
	if fl, ok := k.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (k *kickWriter) Unwrap() http.ResponseWriter { return k.ResponseWriter }
