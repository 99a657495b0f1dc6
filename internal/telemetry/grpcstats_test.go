package telemetry

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portcullis-mcp/portcullis/internal/telemetry/telemetrytest"
)

const (
	grpcTestTimeout = 20 * time.Second

	grpcTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	grpcParentID    = "00f067aa0ba902b7"
	grpcTraceparent = "00-" + grpcTraceID + "-" + grpcParentID + "-01"

	healthCheck = "grpc.health.v1.Health/Check"
	stubCall    = "portcullis.test.Stub/Call"
)

// stubServer serves portcullis.test.Stub/Call, which answers with the code
// in its request (a UInt32Value) after calling onCall.
type stubServer struct {
	onCall func(ctx context.Context)
}

func stubServiceDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "portcullis.test.Stub",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Call",
			Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.UInt32Value)
				if err := dec(in); err != nil {
					return nil, err
				}
				if f := srv.(*stubServer).onCall; f != nil {
					f(ctx)
				}
				if c := codes.Code(in.GetValue()); c != codes.OK {
					return nil, status.Error(c, "stub failure")
				}
				return new(emptypb.Empty), nil
			},
		}},
	}
}

// grpcTestServer is a gRPC server on a loopback listener with the health
// service and the stub, and a client of it. Other methods are answered
// UNIMPLEMENTED by an unknown-service handler, like a proxy's: without one,
// gRPC answers them before the stats handler sees their end, and they are
// not recorded at all.
type grpcTestServer struct {
	gs   *grpc.Server
	conn *grpc.ClientConn
	done chan error
}

// statsBuilder builds the stats handler of a test server from the server's
// services.
type statsBuilder func(services func() map[string]grpc.ServiceInfo) stats.Handler

func ours(tp trace.TracerProvider, mp *sdkmetric.MeterProvider, prop propagation.TextMapPropagator) statsBuilder {
	return func(services func() map[string]grpc.ServiceInfo) stats.Handler {
		return NewGRPCServerHandler(&GRPCServerOptions{TracerProvider: tp, MeterProvider: mp, Propagator: prop, Services: services})
	}
}

func theirs(tp trace.TracerProvider, mp *sdkmetric.MeterProvider, prop propagation.TextMapPropagator) statsBuilder {
	return func(func() map[string]grpc.ServiceInfo) stats.Handler {
		return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithMeterProvider(mp), otelgrpc.WithPropagators(prop))
	}
}

func startGRPC(t *testing.T, nh statsBuilder, stub *stubServer) *grpcTestServer {
	t.Helper()
	var gs *grpc.Server
	gs = grpc.NewServer(grpc.StatsHandler(nh(func() map[string]grpc.ServiceInfo { return gs.GetServiceInfo() })),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error { return status.Error(codes.Unimplemented, "no such method") }))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	gs.RegisterService(stubServiceDesc(), stub)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcTestServer{gs: gs, done: make(chan error, 1)}
	go func() { s.done <- gs.Serve(lis) }()
	if s.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// stop closes the client and stops the server, waiting for its handlers:
// the stats handler has seen the end of every call once it returns.
func (s *grpcTestServer) stop() {
	if s.conn == nil {
		return
	}
	s.conn.Close()
	s.conn = nil
	s.gs.GracefulStop()
	<-s.done
}

// grpcCall is one call of a test: method (healthCheck, stubCall or any
// other full method name without its slash) answering code, with the
// traceparent metadata or without.
type grpcCall struct {
	method      string
	code        codes.Code
	traceparent bool
}

func (s *grpcTestServer) call(ctx context.Context, t *testing.T, c grpcCall) {
	t.Helper()
	if c.traceparent {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", grpcTraceparent)
	}
	var err error
	switch c.method {
	case healthCheck:
		svc := ""
		if c.code == codes.NotFound {
			svc = "nope"
		}
		err = s.conn.Invoke(ctx, "/"+c.method, &healthpb.HealthCheckRequest{Service: svc}, new(healthpb.HealthCheckResponse))
	default:
		err = s.conn.Invoke(ctx, "/"+c.method, wrapperspb.UInt32(uint32(c.code)), new(emptypb.Empty))
	}
	if got := status.Code(err); got != c.code {
		t.Fatalf("%s: code %v, want %v (%v)", c.method, got, c.code, err)
	}
}

func grpcTestContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), grpcTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// checkGoroutines fails the test if it ends with more goroutines than it
// started with (after a grace period for gRPC's to exit). Call it first,
// so that its cleanup runs last.
func checkGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > base {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				t.Errorf("goroutine leak: %d before, %d after\n%s", base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// grpcTelemetry are the providers of a test, recording in memory.
type grpcTelemetry struct {
	tp     *sdktrace.TracerProvider
	spans  *tracetest.InMemoryExporter
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
	prop   propagation.TextMapPropagator
}

func newGRPCTelemetry(t *testing.T) *grpcTelemetry {
	g := &grpcTelemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader(),
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	g.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(g.spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	g.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(g.reader))
	t.Cleanup(func() {
		_ = g.tp.Shutdown(context.Background())
		_ = g.mp.Shutdown(context.Background())
	})
	return g
}

// serverSpan is what a test compares of a span.
type serverSpan struct {
	Name         string
	Kind         trace.SpanKind
	Attrs        map[string]string
	Status       sdktrace.Status
	ParentTrace  string
	ParentSpan   string
	ParentRemote bool
	Events       int
}

// serverSpans returns the spans recorded, sorted by name, status code
// attribute and parent; server.port is left out (two servers have two ports), and
// so is the remote flag of an invalid parent: otelgrpc starts every span
// under a remote span context, even an empty one, and its root spans have
// an invalid "remote" parent; ours have none.
func (g *grpcTelemetry) serverSpans() []serverSpan {
	var out []serverSpan
	for _, s := range g.spans.GetSpans() {
		attrs := map[string]string{}
		for _, kv := range s.Attributes {
			if kv.Key != "server.port" {
				attrs[string(kv.Key)] = kv.Value.String()
			}
		}
		out = append(out, serverSpan{Name: s.Name, Kind: s.SpanKind, Attrs: attrs, Status: s.Status,
			ParentTrace: s.Parent.TraceID().String(), ParentSpan: s.Parent.SpanID().String(),
			ParentRemote: s.Parent.IsValid() && s.Parent.IsRemote(), Events: len(s.Events)})
	}
	key := func(s serverSpan) string {
		return s.Name + " " + s.Attrs["rpc.response.status_code"] + " " + s.ParentSpan
	}
	slices.SortFunc(out, func(a, b serverSpan) int { return strings.Compare(key(a), key(b)) })
	return out
}

// durationMetric is what a test compares of rpc.server.call.duration.
type durationMetric struct {
	Description, Unit string
	Bounds            []float64
	Counts            map[string]uint64 // by attributes, "k=v,k=v" sorted
}

func (g *grpcTelemetry) duration(t *testing.T) durationMetric {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := g.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	d := durationMetric{Counts: map[string]uint64{}}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "rpc.server.call.duration" {
				continue
			}
			d.Description, d.Unit = m.Description, m.Unit
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				t.Fatalf("rpc.server.call.duration is a %T", m.Data)
			}
			for _, dp := range h.DataPoints {
				d.Bounds = dp.Bounds
				var kvs []string
				for _, kv := range dp.Attributes.ToSlice() {
					kvs = append(kvs, string(kv.Key)+"="+kv.Value.String())
				}
				d.Counts[strings.Join(kvs, ",")] += dp.Count
			}
		}
	}
	return d
}

// grpcScenario is the calls every handler gets: OK, a code a server does
// not count as an error (NOT_FOUND, PERMISSION_DENIED) and codes it does
// (INTERNAL, UNAVAILABLE), with and without a traceparent.
var grpcScenario = []grpcCall{
	{healthCheck, codes.OK, true},
	{healthCheck, codes.OK, false},
	{healthCheck, codes.NotFound, true},
	{stubCall, codes.OK, true},
	{stubCall, codes.PermissionDenied, true},
	{stubCall, codes.Internal, true},
	{stubCall, codes.Unavailable, false},
}

// TestGRPCServerHandlerMatchesOtelgrpc: the same calls give the same spans
// and the same histogram through otelgrpc's handler and ours.
func TestGRPCServerHandlerMatchesOtelgrpc(t *testing.T) {
	checkGoroutines(t)
	t.Setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "") // otelgrpc's default conventions
	ctx := grpcTestContext(t)
	run := func(build func(trace.TracerProvider, *sdkmetric.MeterProvider, propagation.TextMapPropagator) statsBuilder) *grpcTelemetry {
		g := newGRPCTelemetry(t)
		s := startGRPC(t, build(g.tp, g.mp, g.prop), &stubServer{})
		for _, c := range grpcScenario {
			s.call(ctx, t, c)
		}
		s.stop()
		return g
	}
	want, got := run(theirs), run(ours)
	wantSpans, gotSpans := want.serverSpans(), got.serverSpans()
	if len(wantSpans) != len(grpcScenario) {
		t.Fatalf("otelgrpc recorded %d spans, want %d", len(wantSpans), len(grpcScenario))
	}
	if diff := cmp.Diff(wantSpans, gotSpans); diff != "" {
		t.Errorf("spans (-otelgrpc +ours):\n%s", diff)
	}
	if diff := cmp.Diff(want.duration(t), got.duration(t)); diff != "" {
		t.Errorf("rpc.server.call.duration (-otelgrpc +ours):\n%s", diff)
	}
}

// TestGRPCServerHandlerSpans: each call has a server span named for its
// method, child of the traceparent the client sent, with the status a
// server sets; the method handler runs under it.
func TestGRPCServerHandlerSpans(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	g := newGRPCTelemetry(t)
	inHandler := make(chan trace.SpanContext, 1)
	s := startGRPC(t, ours(g.tp, g.mp, g.prop), &stubServer{onCall: func(ctx context.Context) { inHandler <- trace.SpanContextFromContext(ctx) }})
	for _, tc := range []struct {
		name   string
		call   grpcCall
		status sdktrace.Status
	}{
		{"ok", grpcCall{stubCall, codes.OK, true}, sdktrace.Status{}},
		{"client error", grpcCall{stubCall, codes.PermissionDenied, true}, sdktrace.Status{}},
		{"server error", grpcCall{stubCall, codes.Internal, true}, sdktrace.Status{Code: otelcodes.Error, Description: "stub failure"}},
		{"root", grpcCall{stubCall, codes.OK, false}, sdktrace.Status{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.spans.Reset()
			s.call(ctx, t, tc.call)
			// End comes after the client has its answer.
			deadline := time.Now().Add(grpcTestTimeout)
			for len(g.spans.GetSpans()) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			spans := g.spans.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			sp := spans[0]
			if sp.Name != stubCall || sp.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q kind %v, want %q server", sp.Name, sp.SpanKind, stubCall)
			}
			if sc := <-inHandler; !sp.SpanContext.Equal(sc) {
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
				"rpc.method":               stubCall,
				"rpc.system.name":          "grpc",
				"rpc.response.status_code": grpcCodeName(tc.call.code),
				"server.address":           "127.0.0.1",
			} {
				if v, _ := attrs.Value(k); v.String() != want {
					t.Errorf("%s = %q, want %q", k, v.String(), want)
				}
			}
			if v, ok := attrs.Value("server.port"); !ok || v.AsInt64() == 0 {
				t.Errorf("server.port = %v", v.String())
			}
			if len(sp.Events) != 0 {
				t.Errorf("message events recorded: %v", sp.Events)
			}
		})
	}
}

// TestGRPCServerHandlerNoopTracer: without a tracer, no span is started,
// but the method handler still sees the remote span context and the
// baggage of the metadata, as it would under otelgrpc.
func TestGRPCServerHandlerNoopTracer(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	ctx = metadata.AppendToOutgoingContext(ctx, "baggage", "tenant=acme")
	g := newGRPCTelemetry(t)
	for _, build := range []func(trace.TracerProvider, *sdkmetric.MeterProvider, propagation.TextMapPropagator) statsBuilder{theirs, ours} {
		var sc trace.SpanContext
		var tenant string
		s := startGRPC(t, build(tracenoop.NewTracerProvider(), g.mp, g.prop), &stubServer{onCall: func(ctx context.Context) {
			sc = trace.SpanContextFromContext(ctx)
			tenant = baggage.FromContext(ctx).Member("tenant").Value()
		}})
		s.call(ctx, t, grpcCall{stubCall, codes.OK, true})
		s.stop()
		if sc.TraceID().String() != grpcTraceID || sc.SpanID().String() != grpcParentID || !sc.IsRemote() || !sc.IsSampled() {
			t.Errorf("the handler's span context is %+v, want the remote %s", sc, grpcTraceparent)
		}
		if tenant != "acme" {
			t.Errorf("baggage tenant = %q, want acme", tenant)
		}
	}
	if h := NewGRPCServerHandler(&GRPCServerOptions{TracerProvider: tracenoop.NewTracerProvider()}); h.tracer != nil {
		t.Error("a no-op tracer provider turned tracing on")
	}
}

// TestGRPCServerHandlerMetrics: one histogram point per method and code,
// with otelgrpc's name, unit, description, buckets and attributes.
func TestGRPCServerHandlerMetrics(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	g := newGRPCTelemetry(t)
	s := startGRPC(t, ours(g.tp, g.mp, g.prop), &stubServer{})
	for _, c := range grpcScenario {
		s.call(ctx, t, c)
	}
	s.stop()
	want := durationMetric{
		Description: "Measures the duration of an incoming Remote Procedure Call (RPC).",
		Unit:        "s",
		Bounds:      []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10},
		Counts: map[string]uint64{
			"rpc.method=grpc.health.v1.Health/Check,rpc.response.status_code=OK,rpc.system.name=grpc":                               2,
			"rpc.method=grpc.health.v1.Health/Check,rpc.response.status_code=NOT_FOUND,rpc.system.name=grpc":                        1,
			"rpc.method=portcullis.test.Stub/Call,rpc.response.status_code=OK,rpc.system.name=grpc":                                 1,
			"rpc.method=portcullis.test.Stub/Call,rpc.response.status_code=PERMISSION_DENIED,rpc.system.name=grpc":                  1,
			"error.type=INTERNAL,rpc.method=portcullis.test.Stub/Call,rpc.response.status_code=INTERNAL,rpc.system.name=grpc":       1,
			"error.type=UNAVAILABLE,rpc.method=portcullis.test.Stub/Call,rpc.response.status_code=UNAVAILABLE,rpc.system.name=grpc": 1,
		},
	}
	if diff := cmp.Diff(want, g.duration(t)); diff != "" {
		t.Errorf("rpc.server.call.duration (-want +got):\n%s", diff)
	}
}

// TestGRPCServerHandlerPrometheus: the Prometheus text has the series the
// Grafana dashboard queries: rpc_server_call_duration_seconds_count by
// rpc_method and rpc_response_status_code, _bucket by le and rpc_method.
func TestGRPCServerHandlerPrometheus(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	mp, metrics, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	s := startGRPC(t, ours(nil, mp, nil), &stubServer{})
	s.call(ctx, t, grpcCall{healthCheck, codes.OK, false})
	s.call(ctx, t, grpcCall{stubCall, codes.Internal, false})
	s.stop()

	rec := httptest.NewRecorder()
	metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatal(err)
	}
	fam := fams["rpc_server_call_duration_seconds"]
	if fam == nil {
		t.Fatalf("no rpc_server_call_duration_seconds in\n%s", rec.Body.String())
	}
	got := map[string]uint64{}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		got[labels["rpc_method"]+" "+labels["rpc_response_status_code"]+" "+labels["error_type"]] += m.GetHistogram().GetSampleCount()
		if n := len(m.GetHistogram().GetBucket()); n != 15 {
			t.Errorf("%v: %d buckets, want 15 (14 bounds and +Inf)", labels, n)
		}
	}
	want := map[string]uint64{healthCheck + " OK ": 1, stubCall + " INTERNAL INTERNAL": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestGRPCServerHandlerUnknownMethod: calls to methods the server does not
// have are recorded as _OTHER, their spans named grpc with the method in
// rpc.method_original; without Services, at most maxGRPCMethods methods
// are recorded by name.
func TestGRPCServerHandlerUnknownMethod(t *testing.T) {
	checkGoroutines(t)
	ctx := grpcTestContext(t)
	g := newGRPCTelemetry(t)
	s := startGRPC(t, ours(g.tp, g.mp, g.prop), &stubServer{})
	for _, m := range []string{"grpc.health.v1.Health/Nope", "portcullis.test.Nope/Call", "x/y"} {
		s.call(ctx, t, grpcCall{m, codes.Unimplemented, false})
	}
	s.call(ctx, t, grpcCall{stubCall, codes.OK, false})
	s.stop()
	if diff := cmp.Diff(map[string]uint64{
		"error.type=UNIMPLEMENTED,rpc.method=_OTHER,rpc.response.status_code=UNIMPLEMENTED,rpc.system.name=grpc": 3,
		"rpc.method=portcullis.test.Stub/Call,rpc.response.status_code=OK,rpc.system.name=grpc":                  1,
	}, g.duration(t).Counts); diff != "" {
		t.Errorf("rpc.server.call.duration (-want +got):\n%s", diff)
	}
	var originals []string
	for _, sp := range g.serverSpans() {
		if sp.Name == "grpc" && sp.Attrs["rpc.method"] == GRPCOtherMethod {
			originals = append(originals, sp.Attrs["rpc.method_original"])
		}
	}
	slices.Sort(originals)
	if diff := cmp.Diff([]string{"grpc.health.v1.Health/Nope", "portcullis.test.Nope/Call", "x/y"}, originals); diff != "" {
		t.Errorf("rpc.method_original of the _OTHER spans (-want +got):\n%s", diff)
	}

	// Without Services: the first maxGRPCMethods by name, then _OTHER.
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	h := NewGRPCServerHandler(&GRPCServerOptions{MeterProvider: mp})
	now := time.Now()
	for i := range 3 * maxGRPCMethods {
		ctx := h.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: fmt.Sprintf("/svc/M%d", i)})
		h.HandleRPC(ctx, &stats.End{BeginTime: now, EndTime: now})
	}
	points := telemetrytest.Points(t, reader, "rpc.server.call.duration")
	if len(points) != maxGRPCMethods+1 {
		t.Errorf("%d series, want %d", len(points), maxGRPCMethods+1)
	}
	if n := points["rpc.method=_OTHER,rpc.response.status_code=OK,rpc.system.name=grpc"]; n != 2*maxGRPCMethods {
		t.Errorf("_OTHER counted %d calls, want %d", n, 2*maxGRPCMethods)
	}
}

// TestGRPCServerHandlerAllocs: the end of a call records with a cached
// attribute set and allocates nothing; the start allocates a few small
// values (the metadata carrier, the contexts).
func TestGRPCServerHandlerAllocs(t *testing.T) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	h := NewGRPCServerHandler(&GRPCServerOptions{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: mp,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})})
	info := &stats.RPCTagInfo{FullMethodName: "/" + healthCheck}
	in := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", grpcTraceparent, "content-type", "application/grpc"))
	ctx := h.TagRPC(in, info)
	now := time.Now()
	for _, end := range []*stats.End{
		{BeginTime: now, EndTime: now.Add(time.Millisecond)},
		{BeginTime: now, EndTime: now.Add(time.Millisecond), Error: status.Error(codes.Internal, "boom")},
	} {
		if n := testing.AllocsPerRun(100, func() { h.HandleRPC(ctx, end) }); n > 0 {
			t.Errorf("HandleRPC(End, %v): %v allocations, want 0", end.Error, n)
		}
	}
	if a, b := h.method("/"+healthCheck).recordOptions(codes.OK), h.method("/"+healthCheck).recordOptions(codes.OK); &a[0] != &b[0] {
		t.Error("the attribute set of a method and code is built again")
	}
	const tagCeiling = 5 // with a traceparent; 2 without
	if n := testing.AllocsPerRun(100, func() { h.TagRPC(in, info) }); n > tagCeiling {
		t.Errorf("TagRPC: %v allocations, want at most %d", n, tagCeiling)
	}
}

// benchProviders are the server handler benchmarks' providers: an SDK
// meter, an SDK tracer sampling everything into a no-op exporter, and W3C
// trace context with baggage.
func benchProviders(b *testing.B) (*sdkmetric.MeterProvider, *sdktrace.TracerProvider, propagation.TextMapPropagator) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())))
	b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	return mp, sdk, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// BenchmarkGRPCServerHandler runs the stats handler calls of a unary call
// (TagRPC, then HandleRPC for the header, begin, payloads, trailer and end)
// through otelgrpc's handler and ours, with a no-op tracer (the default)
// and an SDK one sampling everything. Metrics go to an SDK meter.
func BenchmarkGRPCServerHandler(b *testing.B) {
	mp, sdk, prop := benchProviders(b)

	const method = "/envoy.service.auth.v3.Authorization/Check"
	md := metadata.Pairs(":authority", "portcullis", "content-type", "application/grpc", "user-agent", "envoy/1.36.0",
		"te", "trailers", "x-envoy-internal", "true", "x-request-id", "4c5f4b1e-2d3a-4a6e-9b1f-8f2e1c0d9a7b",
		"x-envoy-expected-rq-timeout-ms", "250", "traceparent", grpcTraceparent)
	in := metadata.NewIncomingContext(context.Background(), md)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9001}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	info := &stats.RPCTagInfo{FullMethodName: method}
	now := time.Now()
	events := []stats.RPCStats{
		&stats.InHeader{FullMethod: method, LocalAddr: local, RemoteAddr: remote, Header: md, WireLength: 300},
		&stats.Begin{BeginTime: now},
		&stats.InPayload{Length: 900, WireLength: 905, RecvTime: now},
		&stats.OutHeader{},
		&stats.OutPayload{Length: 40, WireLength: 45, SentTime: now},
		&stats.OutTrailer{},
		&stats.End{BeginTime: now, EndTime: now.Add(80 * time.Microsecond)},
	}
	for _, tracer := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"noop", tracenoop.NewTracerProvider()}, {"sdk", sdk}} {
		for _, h := range []struct {
			name string
			h    stats.Handler
		}{
			{"otelgrpc", otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tracer.tp), otelgrpc.WithMeterProvider(mp), otelgrpc.WithPropagators(prop))},
			{"ours", NewGRPCServerHandler(&GRPCServerOptions{TracerProvider: tracer.tp, MeterProvider: mp, Propagator: prop,
				Services: func() map[string]grpc.ServiceInfo {
					return map[string]grpc.ServiceInfo{"envoy.service.auth.v3.Authorization": {Methods: []grpc.MethodInfo{{Name: "Check"}}}}
				}})},
		} {
			b.Run(tracer.name+"/"+h.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					ctx := h.h.TagRPC(in, info)
					for _, ev := range events {
						h.h.HandleRPC(ctx, ev)
					}
				}
			})
		}
	}
}

// The handler of a server takes the server's services, to record only
// their methods by name.
func ExampleNewGRPCServerHandler() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	var gs *grpc.Server
	gs = grpc.NewServer(grpc.StatsHandler(NewGRPCServerHandler(&GRPCServerOptions{
		MeterProvider: mp,
		Services:      func() map[string]grpc.ServiceInfo { return gs.GetServiceInfo() },
	})))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), grpcTestTimeout)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println("check:", err)
	conn.Close()
	gs.GracefulStop() // waits for the stats handler to see the end of the call

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				fmt.Println(m.Name, m.Unit, dp.Count, dp.Attributes.Encoded(attribute.DefaultEncoder()))
			}
		}
	}
	// Output:
	// check: <nil>
	// rpc.server.call.duration s 1 rpc.method=grpc.health.v1.Health/Check,rpc.response.status_code=OK,rpc.system.name=grpc
}
