package telemetry

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/rpcconv"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// serverScope is the instrumentation scope of the gRPC and HTTP server
// spans and metrics.
const serverScope = "github.com/portcullis-mcp/portcullis/internal/telemetry"

// GRPCOtherMethod is the rpc.method of a call to a method the server does
// not know (semantic conventions): method names come from the client, and
// metric labels must stay a closed set.
const GRPCOtherMethod = "_OTHER"

// maxGRPCMethods bounds the methods recorded by name when
// [GRPCServerOptions.Services] is nil.
const maxGRPCMethods = 64

// GRPCServerOptions configure a [GRPCServerHandler].
type GRPCServerOptions struct {
	// TracerProvider provides the server spans; nil or a no-op provider
	// means none (the incoming trace context is still extracted).
	TracerProvider trace.TracerProvider
	// MeterProvider provides rpc.server.call.duration; nil means none.
	MeterProvider metric.MeterProvider
	// Propagator reads the trace context of the gRPC metadata; nil means
	// W3C trace context.
	Propagator propagation.TextMapPropagator
	// Services returns the services registered on the server, as
	// [grpc.Server.GetServiceInfo] does. It is called once, at the first
	// RPC (services are registered before Serve); calls to any other
	// method are recorded as [GRPCOtherMethod]. When nil, the first 64
	// methods called are recorded by name and later ones as
	// GRPCOtherMethod.
	Services func() map[string]grpc.ServiceInfo
}

// GRPCServerHandler is a gRPC server [stats.Handler] recording what
// otelgrpc's server handler records, at a fraction of the cost: a server
// span per RPC (named for the method, SpanKindServer, the rpc.*
// attributes and status of the semantic conventions v1.43, the parent
// read from the metadata with the propagator) and the
// rpc.server.call.duration histogram by rpc.method, rpc.system.name,
// rpc.response.status_code and error.type. It records no message events.
//
// Unlike otelgrpc, it records a method the server does not have (one
// served by an unknown-service handler) as [GRPCOtherMethod], its span
// named "grpc" with the method in rpc.method_original, so clients cannot
// add label values. It does not read OTEL_SEMCONV_STABILITY_OPT_IN: it
// records the v1.43 conventions only, otelgrpc's default.
//
// The attribute sets of the histogram are built once per method and code,
// so a call allocates none; with a no-op tracer provider no span is
// started, and the context only gets the remote span context (and
// baggage) of the metadata.
//
// A GRPCServerHandler is safe for concurrent use. Install it with
// [grpc.StatsHandler].
type GRPCServerHandler struct {
	tracer     trace.Tracer // nil when tracing is off
	propagator propagation.TextMapPropagator
	duration   metric.Float64Histogram
	services   func() map[string]grpc.ServiceInfo

	// methods maps a full method name ("/pkg.Service/Method") to its
	// telemetry. It is replaced, never changed, under mu.
	methods atomic.Pointer[map[string]*grpcMethod]
	mu      sync.Mutex
	other   *grpcMethod
}

var _ stats.Handler = (*GRPCServerHandler)(nil)

// grpcMethod is the telemetry of one method, built once.
type grpcMethod struct {
	name      string                  // span name
	spanStart []trace.SpanStartOption // kind and attributes
	// record holds the histogram's attribute set for each code up to
	// codes.Unauthenticated.
	record [grpcCodes][]metric.RecordOption
	attrs  []attribute.KeyValue // rpc.method, rpc.system.name
}

// grpcCodes is the number of canonical gRPC codes.
const grpcCodes = int(codes.Unauthenticated) + 1

// grpcKey is the context key of the *grpcMethod of an RPC.
type grpcKey struct{}

// NewGRPCServerHandler returns a handler recording with the providers of
// opts (nil means none of them).
func NewGRPCServerHandler(opts *GRPCServerOptions) *GRPCServerHandler {
	var o GRPCServerOptions
	if opts != nil {
		o = *opts
	}
	h := &GRPCServerHandler{services: o.Services}
	var meter metric.Meter
	h.tracer, meter, h.propagator = serverInstruments(o.TracerProvider, o.MeterProvider, o.Propagator)
	// The name and options are constant and valid; on an error the
	// instrument is a no-op one.
	d, _ := rpcconv.NewServerCallDuration(meter)
	h.duration = d.Inst()
	h.other = newGRPCMethod(GRPCOtherMethod, semconv.RPCSystemNameGRPC.Value.AsString())
	return h
}

// serverInstruments is what a server handler records with: a tracer (nil
// when tp records no spans), a meter (of a no-op provider when mp is nil)
// and a propagator (W3C trace context when prop is nil).
func serverInstruments(tp trace.TracerProvider, mp metric.MeterProvider, prop propagation.TextMapPropagator) (trace.Tracer, metric.Meter, propagation.TextMapPropagator) {
	var tracer trace.Tracer
	if RecordsSpans(tp) {
		tracer = tp.Tracer(serverScope, trace.WithSchemaURL(semconv.SchemaURL))
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	return tracer, mp.Meter(serverScope, metric.WithSchemaURL(semconv.SchemaURL)), prop
}

// RecordsSpans reports whether tp may record spans: it is neither nil nor
// a no-op provider.
func RecordsSpans(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, tracenoop.TracerProvider, *tracenoop.TracerProvider:
		return false
	}
	return true
}

// newGRPCMethod returns the telemetry of method (rpc.method) under the
// span name.
func newGRPCMethod(method, name string) *grpcMethod {
	m := &grpcMethod{
		name:  name,
		attrs: []attribute.KeyValue{semconv.RPCMethod(method), semconv.RPCSystemNameGRPC},
	}
	m.spanStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(m.attrs...)}
	for c := range codes.Code(grpcCodes) {
		m.record[c] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(m.metricAttrs(c)...))}
	}
	return m
}

// metricAttrs returns the histogram's attributes for code c: error.type
// only for the codes a server counts as errors, as otelgrpc does.
func (m *grpcMethod) metricAttrs(c codes.Code) []attribute.KeyValue {
	attrs := append(slices.Clip(m.attrs), semconv.RPCResponseStatusCode(grpcCodeName(c)))
	if grpcServerError(c) {
		attrs = append(attrs, semconv.ErrorTypeKey.String(grpcCodeName(c)))
	}
	return attrs
}

// recordOptions returns the histogram's attribute set for code c, built
// for the call only when c is not a canonical code.
func (m *grpcMethod) recordOptions(c codes.Code) []metric.RecordOption {
	if int(c) < grpcCodes {
		return m.record[c]
	}
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(m.metricAttrs(c)...))}
}

// method returns the telemetry of fullMethod, or h.other for a method the
// server does not know.
func (h *GRPCServerHandler) method(fullMethod string) *grpcMethod {
	if ms := h.methods.Load(); ms != nil {
		if m, ok := (*ms)[fullMethod]; ok {
			return m
		}
		if h.services != nil || len(*ms) >= maxGRPCMethods {
			return h.other
		}
	}
	return h.learn(fullMethod)
}

// learn is method's slow path: it builds the known methods at the first
// call, and without Services adds fullMethod while there is room.
func (h *GRPCServerHandler) learn(fullMethod string) *grpcMethod {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms := h.methods.Load()
	if ms == nil {
		known := map[string]*grpcMethod{}
		if h.services != nil {
			for svc, info := range h.services() {
				for _, mi := range info.Methods {
					full := "/" + svc + "/" + mi.Name
					known[full] = newGRPCMethod(full[1:], full[1:])
				}
			}
		}
		ms = &known
		h.methods.Store(ms)
	}
	if m, ok := (*ms)[fullMethod]; ok {
		return m
	}
	if h.services != nil || len(*ms) >= maxGRPCMethods || len(fullMethod) < 2 || fullMethod[0] != '/' {
		return h.other
	}
	m := newGRPCMethod(fullMethod[1:], fullMethod[1:])
	next := maps.Clone(*ms)
	next[fullMethod] = m
	h.methods.Store(&next)
	return m
}

// TagConn returns ctx.
func (*GRPCServerHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

// HandleConn does nothing.
func (*GRPCServerHandler) HandleConn(context.Context, stats.ConnStats) {}

// TagRPC extracts the trace context of the request metadata into ctx and,
// when tracing, starts the server span.
func (h *GRPCServerHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	ctx = h.propagator.Extract(ctx, &incomingMetadata{ctx})
	m := h.method(info.FullMethodName)
	if h.tracer != nil {
		opts := m.spanStart
		if m == h.other {
			opts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
				append(slices.Clip(m.attrs), semconv.RPCMethodOriginal(trimSlash(info.FullMethodName)))...)}
		}
		ctx, _ = h.tracer.Start(ctx, m.name, opts...)
	}
	return context.WithValue(ctx, grpcKey{}, m)
}

// HandleRPC records the server address on the span at the header and, at
// the end, the status on the span, which it ends, and the duration.
func (h *GRPCServerHandler) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	switch rs := rs.(type) {
	case *stats.InHeader:
		if h.tracer != nil && rs.LocalAddr != nil {
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.SetAttributes(serverAddrAttrs(rs.LocalAddr.String())...)
			}
		}
	case *stats.End:
		h.end(ctx, rs)
	}
}

func (h *GRPCServerHandler) end(ctx context.Context, rs *stats.End) {
	m, _ := ctx.Value(grpcKey{}).(*grpcMethod)
	if m == nil {
		m = h.other
	}
	var st *status.Status
	code := codes.OK
	if rs.Error != nil {
		st, _ = status.FromError(rs.Error)
		code = st.Code()
	}
	if h.tracer != nil {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			if grpcServerError(code) {
				span.SetStatus(otelcodes.Error, st.Message())
			}
			span.SetAttributes(semconv.RPCResponseStatusCode(grpcCodeName(code)))
			span.End()
		}
	}
	h.duration.Record(ctx, float64(rs.EndTime.Sub(rs.BeginTime))/float64(time.Second), m.recordOptions(code)...)
}

// grpcServerError reports whether a server counts code c as an error
// (span status and error.type): Unknown, DeadlineExceeded,
// Unimplemented, Internal, Unavailable and DataLoss, as otelgrpc does.
func grpcServerError(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// grpcCodeName returns the rpc.response.status_code of c: its canonical
// name, or CODE(n).
func grpcCodeName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED"
	case codes.Unknown:
		return "UNKNOWN"
	case codes.InvalidArgument:
		return "INVALID_ARGUMENT"
	case codes.DeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case codes.NotFound:
		return "NOT_FOUND"
	case codes.AlreadyExists:
		return "ALREADY_EXISTS"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	case codes.ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case codes.FailedPrecondition:
		return "FAILED_PRECONDITION"
	case codes.Aborted:
		return "ABORTED"
	case codes.OutOfRange:
		return "OUT_OF_RANGE"
	case codes.Unimplemented:
		return "UNIMPLEMENTED"
	case codes.Internal:
		return "INTERNAL"
	case codes.Unavailable:
		return "UNAVAILABLE"
	case codes.DataLoss:
		return "DATA_LOSS"
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	}
	return "CODE(" + strconv.FormatInt(int64(c), 10) + ")"
}

func trimSlash(fullMethod string) string {
	if len(fullMethod) > 0 && fullMethod[0] == '/' {
		return fullMethod[1:]
	}
	return fullMethod
}

// serverAddrAttrs returns server.address and server.port of hostport.
func serverAddrAttrs(hostport string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(hostport)}
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(host)}
	}
	return []attribute.KeyValue{semconv.ServerAddress(host), semconv.ServerPort(p)}
}

// incomingMetadata reads the request metadata in ctx for a propagator,
// key by key: metadata.FromIncomingContext would copy all of it.
type incomingMetadata struct{ ctx context.Context }

var _ propagation.TextMapCarrier = (*incomingMetadata)(nil)

func (c *incomingMetadata) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (*incomingMetadata) Set(string, string) {}

func (c *incomingMetadata) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	return slices.Collect(maps.Keys(md))
}
