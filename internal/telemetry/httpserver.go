package telemetry

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
	"go.opentelemetry.io/otel/trace"
)

// HTTPOtherMethod is the http.request.method of a request whose method is
// none of the nine of RFC 9110 and RFC 5789 (semantic conventions):
// methods come from the client, and metric labels must stay a closed set.
const HTTPOtherMethod = "_OTHER"

// maxHTTPAttrSets bounds the attribute sets of the histograms kept for
// reuse. A set is one combination of method, status, scheme, protocol,
// Host and route; past the bound, a request builds its own set.
const maxHTTPAttrSets = 256

// HTTPServerOptions configure [NewHTTPServerHandler].
type HTTPServerOptions struct {
	// TracerProvider provides the server spans; nil or a no-op provider
	// means none (the incoming trace context is still extracted).
	TracerProvider trace.TracerProvider
	// MeterProvider provides the http.server.* histograms; nil means
	// none.
	MeterProvider metric.MeterProvider
	// Propagator reads the trace context of the request headers; nil
	// means W3C trace context.
	Propagator propagation.TextMapPropagator
	// ServerName is the primary name of the server, "host" or
	// "host:port", recorded as server.address and server.port in place
	// of the request's Host, as otelhttp.WithServerName does. Empty
	// means the Host of each request.
	ServerName string
}

// httpServerHandler is the handler of [NewHTTPServerHandler].
type httpServerHandler struct {
	next       http.Handler
	tracer     trace.Tracer // nil when tracing is off
	propagator propagation.TextMapPropagator
	duration   metric.Float64Histogram
	reqSize    metric.Int64Histogram
	respSize   metric.Int64Histogram
	serverName string
	serverHost string
	serverPort int // -1 when ServerName has none

	// sets maps a request's metric key to its recording options. It is
	// replaced, never changed, under mu.
	sets atomic.Pointer[map[httpAttrsKey][]metric.RecordOption]
	mu   sync.Mutex
}

// httpAttrsKey is what the metric attributes of a request are built from.
type httpAttrsKey struct {
	method  string // a standard method or HTTPOtherMethod
	status  int
	tls     bool
	proto   string // as in the request line: "HTTP/1.1"
	host    string // the request's Host, "" when ServerName has a port
	pattern string // the ServeMux pattern that matched, if any
}

// NewHTTPServerHandler returns h recording what otelhttp's handler
// records by default, at a fraction of the cost:
//
//   - the trace context of the request headers, read with the
//     propagator, in the request's context, tracing or not;
//   - a server span per request (SpanKindServer, named "METHOD route" or
//     "METHOD", with the attributes of the semantic conventions v1.43 and
//     an error status for 5xx answers), when the tracer provider is
//     neither nil nor a no-op one;
//   - the histograms http.server.request.duration (s, otelhttp's
//     buckets), http.server.request.body.size and
//     http.server.response.body.size (By: the bytes the handler read and
//     wrote) by http.request.method, http.response.status_code,
//     url.scheme, server.address, server.port, network.protocol.name,
//     network.protocol.version and http.route.
//
// The attribute sets of the histograms are built once per combination of
// their values (up to 256 of them), so that a request allocates no set;
// without a span, it allocates the response writer wrapper and, for a
// request with trace context, the context and request copies that carry
// it.
//
// The handler wraps the ResponseWriter in one that is an http.Flusher and
// unwraps (Unwrap) for [http.ResponseController], so that
// SetWriteDeadline, Hijack and EnableFullDuplex reach the server's
// writer. It is not an http.Hijacker, io.ReaderFrom or http.Pusher of its
// own. Like every ResponseWriter, it must not be used after ServeHTTP
// returns nor from two goroutines at once.
//
// Unlike otelhttp, it uses no global provider or propagator, puts no
// otelhttp.Labeler in the context and reads no start time from it, and
// records under this package's instrumentation scope. opts is copied;
// the handler is safe for concurrent use.
func NewHTTPServerHandler(h http.Handler, opts *HTTPServerOptions) http.Handler {
	var o HTTPServerOptions
	if opts != nil {
		o = *opts
	}
	s := &httpServerHandler{next: h, serverName: o.ServerName, serverPort: -1}
	if s.serverName != "" {
		s.serverHost, s.serverPort = splitHostPort(s.serverName)
	}
	var m metric.Meter
	s.tracer, m, s.propagator = serverInstruments(o.TracerProvider, o.MeterProvider, o.Propagator)
	// The names and options are constant and valid; on an error the
	// instrument is a no-op one.
	d, _ := httpconv.NewServerRequestDuration(m, metric.WithExplicitBucketBoundaries(
		0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	req, _ := httpconv.NewServerRequestBodySize(m)
	resp, _ := httpconv.NewServerResponseBodySize(m)
	s.duration, s.reqSize, s.respSize = d.Inst(), req.Inst(), resp.Inst()
	return s
}

func (h *httpServerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := h.propagator.Extract(r.Context(), headerCarrier{propagation.HeaderCarrier(r.Header)})
	rw := &httpResponseWriter{ResponseWriter: w, status: http.StatusOK}
	// Count the body read, on the request as it came, as otelhttp does; a
	// nil or NoBody body keeps its identity.
	if r.Body != nil && r.Body != http.NoBody {
		rw.body.ReadCloser = r.Body
		r.Body = &rw.body
		defer func() { r.Body = rw.body.ReadCloser }()
	}
	var span trace.Span
	if h.tracer != nil {
		ctx, span = h.tracer.Start(ctx, httpSpanName(r),
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(h.requestAttrs(r)...))
		defer span.End()
	}
	// Without a span or trace context in the headers, r goes on as it is.
	req := r
	if ctx != r.Context() {
		req = r.WithContext(ctx)
		// net/http removes the temporary files of a multipart form it
		// finds on the request it passed.
		defer func() {
			if req.MultipartForm != nil {
				r.MultipartForm = req.MultipartForm
			}
		}()
	}

	h.next.ServeHTTP(rw, req)

	if span != nil {
		h.endSpan(span, req, rw)
	}
	opts := h.recordOptions(req, rw.status)
	h.reqSize.Record(ctx, rw.body.read, opts...)
	h.respSize.Record(ctx, rw.written, opts...)
	h.duration.Record(ctx, float64(time.Since(start))/float64(time.Second), opts...)
}

// endSpan records the answer on span: its status, the body sizes and,
// once a ServeMux has matched a pattern, the name with the route.
func (h *httpServerHandler) endSpan(span trace.Span, r *http.Request, rw *httpResponseWriter) {
	if r.Pattern != "" {
		span.SetName(httpSpanName(r))
	}
	switch code := rw.status; {
	case code < 100 || code >= 600:
		span.SetStatus(otelcodes.Error, fmt.Sprintf("Invalid HTTP status code %d", code))
	case code >= 500:
		span.SetStatus(otelcodes.Error, "")
	}
	attrs := make([]attribute.KeyValue, 0, 3)
	if rw.body.read > 0 {
		attrs = append(attrs, semconv.HTTPRequestBodySize(int(rw.body.read)))
	}
	if rw.written > 0 {
		attrs = append(attrs, semconv.HTTPResponseBodySize(int(rw.written)))
	}
	if rw.status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(rw.status))
	}
	span.SetAttributes(attrs...)
}

// recordOptions returns the histograms' attribute set of r answered with
// status: the cached one, or one built now and cached while there is
// room.
func (h *httpServerHandler) recordOptions(r *http.Request, status int) []metric.RecordOption {
	k := httpAttrsKey{method: httpMethod(r.Method), status: status, tls: r.TLS != nil, proto: r.Proto, host: r.Host, pattern: r.Pattern}
	if h.serverPort >= 0 {
		k.host = ""
	}
	if sets := h.sets.Load(); sets != nil {
		if opts, ok := (*sets)[k]; ok {
			return opts
		}
		if len(*sets) >= maxHTTPAttrSets {
			return h.newRecordOptions(k)
		}
	}
	return h.learn(k)
}

// learn is recordOptions' slow path: it builds the set of k and caches it
// while there is room.
func (h *httpServerHandler) learn(k httpAttrsKey) []metric.RecordOption {
	h.mu.Lock()
	defer h.mu.Unlock()
	var next map[httpAttrsKey][]metric.RecordOption
	if sets := h.sets.Load(); sets != nil {
		if opts, ok := (*sets)[k]; ok {
			return opts
		}
		if len(*sets) >= maxHTTPAttrSets {
			return h.newRecordOptions(k)
		}
		next = maps.Clone(*sets)
	} else {
		next = map[httpAttrsKey][]metric.RecordOption{}
	}
	// The strings point into the request line and headers, which may be
	// large: keep copies.
	k.proto, k.host, k.pattern = strings.Clone(k.proto), strings.Clone(k.host), strings.Clone(k.pattern)
	opts := h.newRecordOptions(k)
	next[k] = opts
	h.sets.Store(&next)
	return opts
}

// newRecordOptions builds the attribute set of k, the one otelhttp
// builds for every request.
func (h *httpServerHandler) newRecordOptions(k httpAttrsKey) []metric.RecordOption {
	host, port := h.hostPort(k.host, k.tls)
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(k.method), httpScheme(k.tls), semconv.ServerAddress(host))
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	name, version := netProtocol(k.proto)
	if name != "" {
		attrs = append(attrs, semconv.NetworkProtocolName(name))
	}
	if version != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	if k.status > 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(k.status))
	}
	if route := httpRoute(k.pattern); route != "" {
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
}

// hostPort returns server.address and server.port (-1: none, the
// scheme's default port being left out) of a request to reqHost.
func (h *httpServerHandler) hostPort(reqHost string, tls bool) (string, int) {
	host, port := splitHostPort(reqHost)
	if h.serverName != "" {
		host = h.serverHost
		if h.serverPort >= 0 {
			port = h.serverPort
		}
	}
	if port <= 0 || !tls && port == 80 || tls && port == 443 {
		return host, -1
	}
	return host, port
}

// requestAttrs returns the span attributes of r known before it is
// served, otelhttp's.
func (h *httpServerHandler) requestAttrs(r *http.Request) []attribute.KeyValue {
	host, port := h.hostPort(r.Host, r.TLS != nil)
	method, original := httpMethodAttrs(r.Method)
	attrs := make([]attribute.KeyValue, 0, 14)
	attrs = append(attrs, semconv.ServerAddress(host), method, httpScheme(r.TLS != nil))
	if port > 0 {
		attrs = append(attrs, semconv.ServerPort(port))
	}
	if original.Valid() {
		attrs = append(attrs, original)
	}
	peer, peerPort := splitHostPort(r.RemoteAddr)
	if peer != "" {
		attrs = append(attrs, semconv.NetworkPeerAddress(peer))
		if peerPort > 0 {
			attrs = append(attrs, semconv.NetworkPeerPort(peerPort))
		}
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	client, _, _ := strings.Cut(r.Header.Get("X-Forwarded-For"), ",")
	if client == "" {
		client = peer
	}
	if client != "" {
		attrs = append(attrs, semconv.ClientAddress(client))
	}
	if r.URL != nil && r.URL.Path != "" {
		attrs = append(attrs, semconv.URLPath(r.URL.Path))
	}
	name, version := netProtocol(r.Proto)
	if name != "" && name != "http" {
		attrs = append(attrs, semconv.NetworkProtocolName(name))
	}
	if version != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(version))
	}
	if route := httpRoute(r.Pattern); route != "" {
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	return attrs
}

// httpMethods are the methods recorded by name.
var httpMethods = [...]string{
	http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
	http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace,
}

// httpMethod returns the metrics' http.request.method of method: the
// standard method it is, in any case, or HTTPOtherMethod.
func httpMethod(method string) string {
	for _, m := range httpMethods {
		if method == m {
			return m
		}
	}
	upper := strings.ToUpper(method)
	for _, m := range httpMethods {
		if upper == m {
			return m
		}
	}
	return HTTPOtherMethod
}

// httpMethodAttrs returns the span's http.request.method of method and,
// unless method is a standard one as it is, http.request.method_original.
func httpMethodAttrs(method string) (attribute.KeyValue, attribute.KeyValue) {
	if method == "" {
		return semconv.HTTPRequestMethodKey.String(HTTPOtherMethod), attribute.KeyValue{}
	}
	m := httpMethod(method)
	if m == method {
		return semconv.HTTPRequestMethodKey.String(m), attribute.KeyValue{}
	}
	return semconv.HTTPRequestMethodKey.String(m), semconv.HTTPRequestMethodOriginal(method)
}

// httpSpanName returns "METHOD route", or "METHOD" before a route is
// known; a method that is not a standard one is "HTTP".
func httpSpanName(r *http.Request) string {
	m := httpMethod(r.Method)
	if m == HTTPOtherMethod {
		m = "HTTP"
	}
	if route := httpRoute(r.Pattern); route != "" {
		return m + " " + route
	}
	return m
}

func httpScheme(tls bool) attribute.KeyValue {
	if tls {
		return semconv.URLScheme("https")
	}
	return semconv.URLScheme("http")
}

// httpRoute returns the path of a ServeMux pattern ("GET /x/{id}" →
// "/x/{id}"), or "".
func httpRoute(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// netProtocol returns network.protocol.name and network.protocol.version
// of a request's Proto ("HTTP/1.1" → "http", "1.1").
func netProtocol(proto string) (name, version string) {
	name, version, _ = strings.Cut(proto, "/")
	switch name {
	case "HTTP":
		return "http", version
	case "QUIC":
		return "quic", version
	case "SPDY":
		return "spdy", version
	}
	return strings.ToLower(name), version
}

// splitHostPort splits "host", "host:port", "[host]" or "[host]:port" as
// otelhttp does: an empty host when there is none or it cannot be parsed,
// a port of -1 when there is none or it cannot be parsed.
func splitHostPort(hostport string) (string, int) {
	if strings.HasPrefix(hostport, "[") {
		end := strings.LastIndexByte(hostport, ']')
		if end < 0 {
			return "", -1
		}
		if strings.LastIndexByte(hostport[end:], ':') < 0 {
			return hostport[1:end], -1
		}
	} else if !strings.Contains(hostport, ":") {
		return hostport, -1
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return host, -1
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return host, -1
	}
	return host, int(p)
}

// headerCarrier reads request headers for a propagator. Unlike
// propagation.HeaderCarrier, it looks the trace context and baggage
// headers up without building their canonical keys for each request.
type headerCarrier struct{ propagation.HeaderCarrier }

var _ propagation.ValuesGetter = headerCarrier{}

func (c headerCarrier) Get(key string) string {
	if v := c.HeaderCarrier[canonicalHeaderKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Values(key string) []string {
	return c.HeaderCarrier[canonicalHeaderKey(key)]
}

// canonicalHeaderKey returns http.CanonicalHeaderKey(key), without
// allocating for the keys of the W3C propagators.
func canonicalHeaderKey(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}

// httpResponseWriter records the status and size of a response and the
// size of the request body read, for one request.
type httpResponseWriter struct {
	http.ResponseWriter
	status      int // 200 until a final status is written
	wroteHeader bool
	written     int64
	body        httpRequestBody
}

var (
	_ http.Flusher  = (*httpResponseWriter)(nil)
	_ io.ReadCloser = (*httpRequestBody)(nil)
)

// WriteHeader records the first status other than an informational one
// (101 Switching Protocols is final) and writes it.
func (w *httpResponseWriter) WriteHeader(code int) {
	if !w.wroteHeader && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		w.wroteHeader, w.status = true, code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write writes p, counting the bytes written.
func (w *httpResponseWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// Flush sends the header, 200 unless written, and what was written, as
// far as the wrapped writer can flush.
func (w *httpResponseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush returning the wrapped writer's error, for
// [http.ResponseController].
func (w *httpResponseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the wrapped writer, for [http.ResponseController].
func (w *httpResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// httpRequestBody counts the bytes read from a request body.
type httpRequestBody struct {
	io.ReadCloser
	read int64
}

func (b *httpRequestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	return n, err
}
