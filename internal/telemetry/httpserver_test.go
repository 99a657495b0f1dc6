package telemetry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/portcullis-mcp/portcullis/internal/telemetry/telemetrytest"
)

// The histograms otelhttp records for a server.
const (
	httpDuration = "http.server.request.duration"
	httpReqSize  = "http.server.request.body.size"
	httpRespSize = "http.server.response.body.size"
)

// middleware wraps an HTTP handler in otelhttp's handler or ours.
type middleware func(h http.Handler) http.Handler

func oursHTTP(tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator, serverName string) middleware {
	return func(h http.Handler) http.Handler {
		return NewHTTPServerHandler(h, &HTTPServerOptions{TracerProvider: tp, MeterProvider: mp, Propagator: prop, ServerName: serverName})
	}
}

func theirsHTTP(tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator, serverName string) middleware {
	return func(h http.Handler) http.Handler {
		opts := []otelhttp.Option{otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp), otelhttp.WithPropagators(prop)}
		if serverName != "" {
			opts = append(opts, otelhttp.WithServerName(serverName))
		}
		return otelhttp.NewHandler(h, "mcp", opts...)
	}
}

// httpTestApp is the handler behind the middleware in the loopback tests:
//
//   - GET /ok answers "ok";
//   - POST /fail reads the body and answers 500;
//   - GET /events answers an SSE stream of two events, flushing each; it
//     writes the second only once the client has the first (firstSeen);
//   - anything else is the ServeMux's 404 or 405.
//
// It sends the span context of each request it serves to spans.
type httpTestApp struct {
	mux       *http.ServeMux
	firstSeen chan struct{}
	spans     chan trace.SpanContext
}

func newHTTPTestApp() *httpTestApp {
	a := &httpTestApp{mux: http.NewServeMux(), firstSeen: make(chan struct{}), spans: make(chan trace.SpanContext, 100)}
	a.mux.HandleFunc("GET /ok", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	a.mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	a.mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-a.firstSeen:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
		_ = http.NewResponseController(w).Flush()
	})
	return a
}

func (a *httpTestApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.spans <- trace.SpanContextFromContext(r.Context())
	a.mux.ServeHTTP(w, r)
}

// httpCall is one request of a test and the status it gets.
type httpCall struct {
	method, path, body string
	traceparent        bool
	status             int
}

// httpScenario is the requests every handler gets: 200, 404, 500 with a
// request body, an SSE stream, and methods a server does not know or
// spells in lower case (405 from the ServeMux).
var httpScenario = []httpCall{
	{"GET", "/ok", "", true, http.StatusOK},
	{"GET", "/ok", "", false, http.StatusOK},
	{"GET", "/nope", "", true, http.StatusNotFound},
	{"POST", "/fail", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, true, http.StatusInternalServerError},
	{"GET", "/events", "", true, http.StatusOK},
	{"FOO", "/ok", "", false, http.StatusMethodNotAllowed},
	{"get", "/ok", "", false, http.StatusMethodNotAllowed},
}

// do sends c to srv and reads the answer; for /events it checks that the
// first event arrives while the handler waits.
func (a *httpTestApp) do(ctx context.Context, t *testing.T, srv *httptest.Server, c httpCall) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, srv.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "portcullis-test/1.0")
	if c.traceparent {
		req.Header.Set("traceparent", grpcTraceparent)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != c.status {
		t.Errorf("%s %s: status %d, want %d", c.method, c.path, resp.StatusCode, c.status)
	}
	if c.path == "/events" {
		br := bufio.NewReader(resp.Body)
		var first string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("first event: %v", err)
			}
			if first += line; line == "\n" {
				break
			}
		}
		close(a.firstSeen)
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatal(err)
		}
		if first != "data: one\n\n" || string(rest) != "data: two\n\n" {
			t.Errorf("events %q then %q", first, rest)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
}

// runHTTP serves the scenario through mw on a loopback server and returns
// the server's port once every handler has returned.
func runHTTP(ctx context.Context, t *testing.T, mw middleware, calls []httpCall) int {
	t.Helper()
	app := newHTTPTestApp()
	srv := httptest.NewServer(mw(app))
	for _, c := range calls {
		app.do(ctx, t, srv, c)
	}
	srv.Close() // waits for the handlers
	_, port := splitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	return port
}

// portsAs writes the attributes of a span or a point as a map, the
// ports of the test's connections as placeholders: otelhttp's server and
// ours listen on two ports, and the client's ports vary.
func portsAs(kvs []attribute.KeyValue, serverPort int) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		v := kv.Value.String()
		switch {
		case kv.Key == "network.peer.port":
			v = "<client port>"
		case kv.Key == "server.port" && kv.Value.AsInt64() == int64(serverPort):
			v = "<server port>"
		}
		out[string(kv.Key)] = v
	}
	return out
}

func attrString(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// httpSpans returns the spans recorded, sorted, as a test compares them.
func httpSpans(spans tracetest.SpanStubs, serverPort int) []serverSpan {
	var out []serverSpan
	for _, s := range spans {
		out = append(out, serverSpan{Name: s.Name, Kind: s.SpanKind, Attrs: portsAs(s.Attributes, serverPort), Status: s.Status,
			ParentTrace: s.Parent.TraceID().String(), ParentSpan: s.Parent.SpanID().String(),
			ParentRemote: s.Parent.IsRemote(), Events: len(s.Events)})
	}
	key := func(s serverSpan) string {
		return s.Name + " " + s.Attrs["http.request.method_original"] + " " + s.Attrs["url.path"] + " " + s.ParentSpan
	}
	slices.SortFunc(out, func(a, b serverSpan) int { return strings.Compare(key(a), key(b)) })
	return out
}

// httpHistogram is what a test compares of a histogram.
type httpHistogram struct {
	Description, Unit string
	Bounds            []float64
	Counts            map[string]uint64  // by attributes, "k=v,k=v" sorted
	Sums              map[string]float64 // body sizes only
}

// httpHistograms collects the three histograms of r.
func httpHistograms(t *testing.T, r *sdkmetric.ManualReader, serverPort int) map[string]httpHistogram {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]httpHistogram{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h := httpHistogram{Description: m.Description, Unit: m.Unit, Counts: map[string]uint64{}}
			add := func(attrs attribute.Set, bounds []float64, count uint64, sum float64) {
				h.Bounds = bounds
				k := attrString(portsAs(attrs.ToSlice(), serverPort))
				h.Counts[k] += count
				if m.Name != httpDuration {
					if h.Sums == nil {
						h.Sums = map[string]float64{}
					}
					h.Sums[k] += sum
				}
			}
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes, dp.Bounds, dp.Count, dp.Sum)
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes, dp.Bounds, dp.Count, float64(dp.Sum))
				}
			default:
				t.Fatalf("%s is a %T", m.Name, m.Data)
			}
			out[m.Name] = h
		}
	}
	return out
}

// TestHTTPServerHandlerMatchesOtelhttp: the same requests give the same
// spans and the same histograms through otelhttp's handler and ours.
func TestHTTPServerHandlerMatchesOtelhttp(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	for _, serverName := range []string{"", "mcp.example.com:8443", "mcp.example.com"} {
		t.Run("server name "+strconv.Quote(serverName), func(t *testing.T) {
			type recorded struct {
				spans      []serverSpan
				histograms map[string]httpHistogram
			}
			run := func(build func(trace.TracerProvider, metric.MeterProvider, propagation.TextMapPropagator, string) middleware) recorded {
				g := newGRPCTelemetry(t)
				port := runHTTP(ctx, t, build(g.tp, g.mp, g.prop, serverName), httpScenario)
				return recorded{httpSpans(g.spans.GetSpans(), port), httpHistograms(t, g.reader, port)}
			}
			want, got := run(theirsHTTP), run(oursHTTP)
			if len(want.spans) != len(httpScenario) {
				t.Fatalf("otelhttp recorded %d spans, want %d", len(want.spans), len(httpScenario))
			}
			if diff := cmp.Diff(want.spans, got.spans); diff != "" {
				t.Errorf("spans (-otelhttp +ours):\n%s", diff)
			}
			if len(want.histograms) != 3 {
				t.Errorf("otelhttp recorded %d histograms, want 3", len(want.histograms))
			}
			if diff := cmp.Diff(want.histograms, got.histograms); diff != "" {
				t.Errorf("histograms (-otelhttp +ours):\n%s", diff)
			}
		})
	}
}

// TestHTTPServerHandlerSpans: a request has a server span named for its
// route, child of the traceparent the client sent, with an error status
// for a 5xx answer; the handler runs under it.
func TestHTTPServerHandlerSpans(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	for _, tc := range []struct {
		call   httpCall
		name   string
		status sdktrace.Status
	}{
		{httpCall{"GET", "/ok", "", true, http.StatusOK}, "GET /ok", sdktrace.Status{}},
		{httpCall{"GET", "/ok", "", false, http.StatusOK}, "GET /ok", sdktrace.Status{}},
		{httpCall{"GET", "/nope", "", true, http.StatusNotFound}, "GET", sdktrace.Status{}},
		{httpCall{"POST", "/fail", "{}", true, http.StatusInternalServerError}, "POST /fail", sdktrace.Status{Code: otelcodes.Error}},
		{httpCall{"GET", "/events", "", true, http.StatusOK}, "GET /events", sdktrace.Status{}},
	} {
		t.Run(tc.name+" "+strconv.Itoa(tc.call.status), func(t *testing.T) {
			g := newGRPCTelemetry(t)
			app := newHTTPTestApp()
			srv := httptest.NewServer(oursHTTP(g.tp, g.mp, g.prop, "")(app))
			app.do(ctx, t, srv, tc.call)
			srv.Close()
			spans := g.spans.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if sp.Name != tc.name || sp.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q kind %v, want %q server", sp.Name, sp.SpanKind, tc.name)
			}
			if sc := <-app.spans; !sp.SpanContext.Equal(sc) {
				t.Errorf("the handler ran under %v, not the server span %v", sc, sp.SpanContext)
			}
			if tc.call.traceparent {
				if sp.Parent.TraceID().String() != grpcTraceID || sp.Parent.SpanID().String() != grpcParentID || !sp.Parent.IsRemote() {
					t.Errorf("parent %v, want the remote %s", sp.Parent, grpcTraceparent)
				}
			} else if sp.Parent.IsValid() {
				t.Errorf("parent %v, want a root span", sp.Parent)
			}
			if diff := cmp.Diff(tc.status, sp.Status); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			attrs := attribute.NewSet(sp.Attributes...)
			for k, want := range map[attribute.Key]string{
				"http.request.method":       tc.call.method,
				"http.response.status_code": strconv.Itoa(tc.call.status),
				"url.path":                  tc.call.path,
				"url.scheme":                "http",
				"server.address":            "127.0.0.1",
				"network.peer.address":      "127.0.0.1",
				"user_agent.original":       "portcullis-test/1.0",
			} {
				if v, _ := attrs.Value(k); v.String() != want {
					t.Errorf("%s = %q, want %q", k, v.String(), want)
				}
			}
		})
	}
}

// TestHTTPServerHandlerNoopTracer: without a tracer, no span is started,
// but the handler still sees the remote span context and the baggage of
// the headers, as it would under otelhttp.
func TestHTTPServerHandlerNoopTracer(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	for _, tc := range []struct {
		name  string
		build func(trace.TracerProvider, metric.MeterProvider, propagation.TextMapPropagator, string) middleware
	}{{"otelhttp", theirsHTTP}, {"ours", oursHTTP}} {
		t.Run(tc.name, func(t *testing.T) {
			var sc trace.SpanContext
			var tenant string
			srv := httptest.NewServer(tc.build(tracenoop.NewTracerProvider(), nil, prop, "")(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				sc = trace.SpanContextFromContext(r.Context())
				tenant = baggage.FromContext(r.Context()).Member("tenant").Value()
			})))
			req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/mcp", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("traceparent", grpcTraceparent)
			req.Header.Set("baggage", "tenant=acme")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			srv.Close()
			if sc.TraceID().String() != grpcTraceID || sc.SpanID().String() != grpcParentID || !sc.IsRemote() || !sc.IsSampled() {
				t.Errorf("the handler's span context is %+v, want the remote %s", sc, grpcTraceparent)
			}
			if tenant != "acme" {
				t.Errorf("baggage tenant = %q, want acme", tenant)
			}
		})
	}
	h := NewHTTPServerHandler(http.NotFoundHandler(), &HTTPServerOptions{TracerProvider: tracenoop.NewTracerProvider()})
	if h.(*httpServerHandler).tracer != nil {
		t.Error("a no-op tracer provider turned tracing on")
	}
}

// TestHTTPServerHandlerMethods: a method that is not a standard one is
// _OTHER in the histograms and the span, its span named HTTP and the
// method in http.request.method_original; a standard method in lower case
// is recorded in upper case, its spelling in http.request.method_original.
func TestHTTPServerHandlerMethods(t *testing.T) {
	for _, tc := range []struct {
		method, metric, span, name, original string
	}{
		{"POST", "POST", "POST", "POST", ""},
		{"FOO", HTTPOtherMethod, HTTPOtherMethod, "HTTP", "FOO"},
		{"get", "GET", "GET", "GET", "get"},
		{"", HTTPOtherMethod, HTTPOtherMethod, "HTTP", ""},
	} {
		t.Run(tc.method, func(t *testing.T) {
			g := newGRPCTelemetry(t)
			h := NewHTTPServerHandler(http.NotFoundHandler(), &HTTPServerOptions{TracerProvider: g.tp, MeterProvider: g.mp})
			req := httptest.NewRequest("GET", "/mcp", nil)
			req.Method = tc.method
			h.ServeHTTP(httptest.NewRecorder(), req)
			points := telemetrytest.Points(t, g.reader, httpDuration)
			want := "http.request.method=" + tc.metric + ",http.response.status_code=404,network.protocol.name=http," +
				"network.protocol.version=1.1,server.address=example.com,url.scheme=http"
			if diff := cmp.Diff(map[string]int64{want: 1}, points); diff != "" {
				t.Errorf("%s (-want +got):\n%s", httpDuration, diff)
			}
			spans := g.spans.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			attrs := attribute.NewSet(spans[0].Attributes...)
			method, _ := attrs.Value("http.request.method")
			original, _ := attrs.Value("http.request.method_original")
			if spans[0].Name != tc.name || method.String() != tc.span || original.String() != tc.original {
				t.Errorf("span %q, http.request.method %q, original %q; want %q, %q, %q",
					spans[0].Name, method.String(), original.String(), tc.name, tc.span, tc.original)
			}
		})
	}
}

// TestHTTPServerHandlerAttrSets: a request whose attributes were seen
// before records with the set built then; past maxHTTPAttrSets
// combinations, a request builds its own and is still recorded.
func TestHTTPServerHandlerAttrSets(t *testing.T) {
	g := newGRPCTelemetry(t)
	h := NewHTTPServerHandler(http.NotFoundHandler(), &HTTPServerOptions{MeterProvider: g.mp}).(*httpServerHandler)
	req := httptest.NewRequest("GET", "/mcp", nil)
	if a, b := h.recordOptions(req, 200), h.recordOptions(req, 200); &a[0] != &b[0] {
		t.Error("the attribute set of a request is built again")
	}
	for i := range 2 * maxHTTPAttrSets {
		req := httptest.NewRequest("GET", "/mcp", nil)
		req.Host = fmt.Sprintf("host%d.example", i)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if n := len(*h.sets.Load()); n != maxHTTPAttrSets {
		t.Errorf("%d attribute sets kept, want %d", n, maxHTTPAttrSets)
	}
	points := telemetrytest.Points(t, g.reader, httpDuration)
	if len(points) != 2*maxHTTPAttrSets {
		t.Errorf("%d series, want %d", len(points), 2*maxHTTPAttrSets)
	}
	last := fmt.Sprintf("host%d.example", 2*maxHTTPAttrSets-1)
	if n := points["http.request.method=GET,http.response.status_code=404,network.protocol.name=http,network.protocol.version=1.1,server.address="+last+",url.scheme=http"]; n != 1 {
		t.Errorf("the last host counted %d requests, want 1", n)
	}
}

// fakeWriter is a ResponseWriter and Flusher logging the calls it gets.
type fakeWriter struct {
	header  http.Header
	codes   []int
	body    bytes.Buffer
	flushes int
}

func (f *fakeWriter) Header() http.Header {
	if f.header == nil {
		f.header = http.Header{}
	}
	return f.header
}
func (f *fakeWriter) WriteHeader(code int)        { f.codes = append(f.codes, code) }
func (f *fakeWriter) Write(p []byte) (int, error) { return f.body.Write(p) }
func (f *fakeWriter) Flush()                      { f.flushes++ }

// TestHTTPResponseWriter: the wrapper records the first final status (200
// when the handler writes or flushes first, or writes nothing) and the
// bytes written, and passes every call on.
func TestHTTPResponseWriter(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler func(w http.ResponseWriter)
		status  int
		written int64
		codes   []int // passed on
		flushes int
	}{
		{"nothing", func(http.ResponseWriter) {}, 200, 0, nil, 0},
		{"write", func(w http.ResponseWriter) { _, _ = io.WriteString(w, "abc") }, 200, 3, nil, 0},
		{"status", func(w http.ResponseWriter) { w.WriteHeader(404); _, _ = io.WriteString(w, "no") }, 404, 2, []int{404}, 0},
		{"informational", func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(204) }, 204, 0, []int{103, 204}, 0},
		{"switching protocols", func(w http.ResponseWriter) { w.WriteHeader(101) }, 101, 0, []int{101}, 0},
		{"status after write", func(w http.ResponseWriter) { _, _ = io.WriteString(w, "x"); w.WriteHeader(500) }, 200, 1, []int{500}, 0},
		{"second status", func(w http.ResponseWriter) { w.WriteHeader(502); w.WriteHeader(200) }, 502, 0, []int{502, 200}, 0},
		{"flush first", func(w http.ResponseWriter) {
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "data: x\n\n")
			_ = http.NewResponseController(w).Flush()
		}, 200, 9, []int{200}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeWriter{}
			w := &httpResponseWriter{ResponseWriter: f, status: http.StatusOK}
			tc.handler(w)
			if w.status != tc.status || w.written != tc.written {
				t.Errorf("recorded %d, %d bytes; want %d, %d bytes", w.status, w.written, tc.status, tc.written)
			}
			if !slices.Equal(f.codes, tc.codes) || f.flushes != tc.flushes || f.body.Len() != int(tc.written) {
				t.Errorf("passed on WriteHeader%v, %d flushes, %d bytes; want WriteHeader%v, %d flushes, %d bytes",
					f.codes, f.flushes, f.body.Len(), tc.codes, tc.flushes, tc.written)
			}
		})
	}
}

// TestHTTPServerHandlerResponseController: through the wrapper,
// http.ResponseController reaches the server's writer: deadlines can be
// set, and a flush gets the first bytes to the client while the handler
// still runs.
func TestHTTPServerHandlerResponseController(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	firstSeen := make(chan struct{})
	errs := make(chan error, 10)
	srv := httptest.NewServer(NewHTTPServerHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		errs <- rc.SetWriteDeadline(time.Now().Add(grpcTestTimeout))
		errs <- rc.SetReadDeadline(time.Now().Add(grpcTestTimeout))
		errs <- rc.EnableFullDuplex()
		_, _ = io.WriteString(w, "first\n")
		errs <- rc.Flush()
		select {
		case <-firstSeen:
		case <-r.Context().Done():
			errs <- r.Context().Err()
			return
		}
		_, _ = io.WriteString(w, "second\n")
		errs <- rc.SetWriteDeadline(time.Time{})
	}), nil))
	defer srv.Close()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/mcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" || err != nil {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(firstSeen)
	if rest, err := io.ReadAll(br); string(rest) != "second\n" || err != nil {
		t.Errorf("rest %q, %v", rest, err)
	}
	srv.Close()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("ResponseController: %v", err)
		}
	}
	// A writer that cannot set deadlines says so through the wrapper.
	rec := httptest.NewRecorder()
	NewHTTPServerHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now()); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("SetWriteDeadline on a recorder: %v, want ErrNotSupported", err)
		}
	}), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/mcp", nil))
}

// TestHTTPServerHandlerRequestBody: the request keeps its body, which the
// handler reads through a counter, and gets it back after.
func TestHTTPServerHandlerRequestBody(t *testing.T) {
	g := newGRPCTelemetry(t)
	var seen string
	h := NewHTTPServerHandler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen = string(b)
	}), &HTTPServerOptions{MeterProvider: g.mp})
	body := io.NopCloser(strings.NewReader("hello"))
	req := httptest.NewRequest("POST", "/mcp", nil)
	req.Body = body
	h.ServeHTTP(httptest.NewRecorder(), req)
	if seen != "hello" || req.Body != body {
		t.Errorf("handler read %q; body after %T, want it back", seen, req.Body)
	}
	noBody := httptest.NewRequest("GET", "/mcp", nil)
	h = NewHTTPServerHandler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.Body != http.NoBody {
			t.Errorf("a NoBody request reached the handler with %T", r.Body)
		}
	}), nil)
	h.ServeHTTP(httptest.NewRecorder(), noBody)
}

// TestHTTPServerHandlerPrometheus: the Prometheus text has the series
// otelhttp's handler gives, with the same labels and counts.
func TestHTTPServerHandlerPrometheus(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	scrape := func(build func(trace.TracerProvider, metric.MeterProvider, propagation.TextMapPropagator, string) middleware) map[string]map[string]uint64 {
		mp, metrics, err := NewMetrics()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		port := runHTTP(ctx, t, build(nil, mp, nil, ""), httpScenario)
		rec := httptest.NewRecorder()
		metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]uint64{}
		for name, fam := range fams {
			if !strings.HasPrefix(name, "http_") {
				continue
			}
			out[name] = map[string]uint64{}
			for _, m := range fam.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					if v := l.GetValue(); !strings.HasPrefix(l.GetName(), "otel_scope_") {
						if l.GetName() == "server_port" && v == strconv.Itoa(port) {
							v = "<server port>"
						}
						labels[l.GetName()] = v
					}
				}
				out[name][attrString(labels)] += m.GetHistogram().GetSampleCount()
			}
		}
		return out
	}
	want, got := scrape(theirsHTTP), scrape(oursHTTP)
	for _, name := range []string{"http_server_request_duration_seconds", "http_server_request_body_size_bytes", "http_server_response_body_size_bytes"} {
		if len(want[name]) == 0 {
			t.Errorf("otelhttp exported no %s", name)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-otelhttp +ours):\n%s", diff)
	}
}

// allocsHandler answers "ok" and reads nothing.
var allocsHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(okBody) })

var okBody = []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`)

// TestHTTPServerHandlerAllocs: with a no-op tracer, a request allocates
// the wrapper and, with a traceparent, the context and request copy that
// carry it; otelhttp allocates several times as much.
func TestHTTPServerHandlerAllocs(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	tp := tracenoop.NewTracerProvider()
	for _, tc := range []struct {
		name        string
		traceparent bool
		body        bool
		ceiling     float64
	}{
		{"GET", false, false, 1},
		{"GET traceparent", true, false, 4},
		{"POST traceparent", true, true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			measure := func(mw middleware) float64 {
				h := mw(allocsHandler)
				rec := httptest.NewRecorder()
				body := bytes.NewReader(okBody)
				req := httptest.NewRequest("GET", "/mcp", nil)
				if tc.body {
					req = httptest.NewRequest("POST", "/mcp", body)
				}
				if tc.traceparent {
					req.Header.Set("traceparent", grpcTraceparent)
				}
				req.Header.Set("User-Agent", "portcullis-test/1.0")
				h.ServeHTTP(rec, req) // builds the attribute set
				return testing.AllocsPerRun(200, func() {
					rec.Body.Reset()
					body.Reset(okBody)
					h.ServeHTTP(rec, req)
				})
			}
			ours, theirs := measure(oursHTTP(tp, mp, prop, "")), measure(theirsHTTP(tp, mp, prop, ""))
			t.Logf("allocations: ours %v, otelhttp %v", ours, theirs)
			if ours > tc.ceiling {
				t.Errorf("%v allocations, want at most %v", ours, tc.ceiling)
			}
			if ours >= theirs {
				t.Errorf("%v allocations, otelhttp %v", ours, theirs)
			}
		})
	}
}

// BenchmarkHTTPServerHandler serves an MCP-like POST (a traceparent, a
// JSON body read by the handler, a JSON answer) through otelhttp's
// handler and ours, with a no-op tracer (the default) and an SDK one
// sampling everything; noop/none is the handler alone. Metrics go to an
// SDK meter.
func BenchmarkHTTPServerHandler(b *testing.B) {
	mp, sdk, prop := benchProviders(b)
	payload := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(okBody)
	})
	none := func(h http.Handler) http.Handler { return h }
	for _, tracer := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"noop", tracenoop.NewTracerProvider()}, {"sdk", sdk}} {
		for _, mw := range []struct {
			name string
			mw   middleware
		}{{"none", none}, {"otelhttp", theirsHTTP(tracer.tp, mp, prop, "")}, {"ours", oursHTTP(tracer.tp, mp, prop, "")}} {
			if mw.name == "none" && tracer.name != "noop" {
				continue
			}
			b.Run(tracer.name+"/"+mw.name, func(b *testing.B) {
				h := mw.mw(handler)
				body := bytes.NewReader(payload)
				req := httptest.NewRequest("POST", "http://127.0.0.1:8080/mcp", body)
				req.RemoteAddr = "127.0.0.1:50000"
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("User-Agent", "envoy/1.36.0")
				req.Header.Set("traceparent", grpcTraceparent)
				rec := httptest.NewRecorder()
				b.ReportAllocs()
				for b.Loop() {
					body.Reset(payload)
					rec.Body.Reset()
					h.ServeHTTP(rec, req)
				}
			})
		}
	}
}

// The handler joins the caller's trace and records the request in the
// http.server.* histograms.
func ExampleNewHTTPServerHandler() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	h := NewHTTPServerHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("trace:", trace.SpanContextFromContext(r.Context()).TraceID())
		_, _ = io.WriteString(w, "ok")
	}), &HTTPServerOptions{MeterProvider: mp})
	req := httptest.NewRequest("GET", "/mcp", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == httpDuration {
				dp := m.Data.(metricdata.Histogram[float64]).DataPoints[0]
				fmt.Println(m.Name, m.Unit, dp.Count, dp.Attributes.Encoded(attribute.DefaultEncoder()))
			}
		}
	}
	// Output:
	// trace: 4bf92f3577b34da6a3ce929d0e0e4736
	// http.server.request.duration s 1 http.request.method=GET,http.response.status_code=200,network.protocol.name=http,network.protocol.version=1.1,server.address=example.com,url.scheme=http
}
