package extauthz

import (
	"context"
	"encoding/hex"
	"net/http"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

const tracerName = "github.com/portcullis-mcp/portcullis/extauthz"

// Span attribute keys of the portcullis.Check span.
const (
	attrDecision   = "portcullis.decision"
	attrReason     = "portcullis.reason"
	attrDecisionID = "portcullis.decision_id"
	attrMCPMethod  = "mcp.method.name"
	attrMCPTool    = "mcp.tool.name"
	attrHTTPMethod = "http.request.method"
	attrURLPath    = "url.path"
	attrEndUserID  = "enduser.id"
)

// startCheckSpan starts the portcullis.Check span, or returns ctx and nil
// when tracing is off (Options.Tracer is nil).
//
// The span joins the user's request trace. When Envoy propagated a trace
// context on the gRPC call, the span in ctx (the gRPC server span) is
// already part of it and is the parent. Otherwise the parent is read from
// the checked request's headers: W3C traceparent/tracestate through the
// propagator, else B3 (single b3 header or x-b3-*); the gRPC server span is
// then linked. Without any of them the span is in ctx's trace, or a new
// root.
func (s *Server) startCheckSpan(ctx context.Context, req *authv3.CheckRequest) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, nil
	}
	parent := ctx
	var opts []trace.SpanStartOption
	if !grpcPropagated(ctx) {
		if h := req.GetAttributes().GetRequest().GetHttp(); h != nil {
			c := headerCarrier{h}
			pctx := s.propagator.Extract(ctx, c)
			sc := trace.SpanContextFromContext(pctx)
			if !sc.IsValid() || !sc.IsRemote() {
				if b3, ok := extractB3(c); ok {
					pctx, sc = trace.ContextWithRemoteSpanContext(pctx, b3), b3
				}
			}
			if sc.IsValid() && sc.IsRemote() {
				parent = pctx
				if own := trace.SpanContextFromContext(ctx); own.IsValid() && own.TraceID() != sc.TraceID() {
					opts = append(opts, trace.WithLinks(trace.Link{SpanContext: own}))
				}
			}
		}
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindInternal))
	return s.tracer.Start(parent, "portcullis.Check", opts...)
}

// grpcPropagated reports whether the gRPC call carried a W3C trace context,
// which the stats handler has already joined.
func grpcPropagated(ctx context.Context) bool {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return false
	}
	if sc.IsRemote() {
		return true
	}
	return len(metadata.ValueFromIncomingContext(ctx, "traceparent")) > 0
}

// endCheckSpan records the outcome of a Check on span and ends it. Only
// names and codes are recorded: never a header value, a credential or an
// argument; the subject only with Options.RecordSubject (enduser.id).
func (s *Server) endCheckSpan(span trace.Span, c *check, resp *authv3.CheckResponse, result, method string) {
	if !span.IsRecording() {
		span.End()
		return
	}
	decision := "deny"
	if result == ResultAllowed {
		decision = "allow"
	}
	reason := ""
	if c.decision != nil {
		reason = c.decision.Reason
	}
	if reason == "" {
		reason = resp.GetStatus().GetMessage()
	}
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs,
		attribute.String(attrDecision, decision),
		attribute.String(attrReason, reason),
		attribute.String(attrDecisionID, c.decisionID),
		attribute.String(attrHTTPMethod, httpMethod(method)),
	)
	if r := c.r; r != nil {
		attrs = append(attrs, attribute.String(attrURLPath, r.path))
		if call := r.in.MCP; call != nil && call.Method != "" {
			attrs = append(attrs, attribute.String(attrMCPMethod, call.Method))
			if call.Method == "tools/call" && call.Name != "" {
				attrs = append(attrs, attribute.String(attrMCPTool, call.Name))
			}
		}
		if s.opts.RecordSubject && r.in.Identity.Subject != "" {
			attrs = append(attrs, attribute.String(attrEndUserID, r.in.Identity.Subject))
		}
	}
	span.SetAttributes(attrs...)
	if result == ResultError {
		span.SetStatus(codes.Error, reason)
	}
	span.End()
}

// httpMethod is m when it is a known HTTP method, else "_OTHER" (OTEL
// semantic conventions), so a client cannot put arbitrary text in a span.
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// headerCarrier reads the checked request's headers for propagators:
// headers, or header_map when Envoy sends that instead.
type headerCarrier struct {
	h *authv3.AttributeContext_HttpRequest
}

var _ propagation.TextMapCarrier = headerCarrier{}

func (c headerCarrier) Get(key string) string {
	if v, ok := c.h.GetHeaders()[key]; ok {
		return v
	}
	for _, hv := range c.h.GetHeaderMap().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), key) {
			if v := hv.GetValue(); v != "" {
				return v
			}
			return string(hv.GetRawValue())
		}
	}
	return ""
}

func (headerCarrier) Set(string, string) {}

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c.h.GetHeaders()))
	for k := range c.h.GetHeaders() {
		keys = append(keys, k)
	}
	for _, hv := range c.h.GetHeaderMap().GetHeaders() {
		keys = append(keys, strings.ToLower(hv.GetKey()))
	}
	return keys
}

// extractB3 reads a B3 trace context: the single b3 header
// ({trace id}-{span id}[-{sampling}[-{parent span id}]]) or the x-b3-*
// headers. 64-bit trace ids are padded to 128 bits.
func extractB3(c propagation.TextMapCarrier) (trace.SpanContext, bool) {
	var tid, sid, sampled string
	if v := strings.TrimSpace(c.Get("b3")); v != "" {
		parts := strings.Split(v, "-")
		if len(parts) < 2 || len(parts) > 4 {
			return trace.SpanContext{}, false // "0", "1", "d" alone carry no ids
		}
		tid, sid = parts[0], parts[1]
		if len(parts) > 2 {
			sampled = parts[2]
		}
	} else {
		tid, sid = c.Get("x-b3-traceid"), c.Get("x-b3-spanid")
		sampled = c.Get("x-b3-sampled")
		if c.Get("x-b3-flags") == "1" {
			sampled = "d"
		}
	}
	if len(tid) != 16 && len(tid) != 32 || len(sid) != 16 {
		return trace.SpanContext{}, false
	}
	if len(tid) == 16 {
		tid = "0000000000000000" + tid
	}
	var cfg trace.SpanContextConfig
	if _, err := hex.Decode(cfg.TraceID[:], []byte(tid)); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(cfg.SpanID[:], []byte(sid)); err != nil {
		return trace.SpanContext{}, false
	}
	switch sampled {
	case "1", "d", "true":
		cfg.TraceFlags = trace.FlagsSampled
	case "", "0", "false":
	default:
		return trace.SpanContext{}, false
	}
	cfg.Remote = true
	sc := trace.NewSpanContext(cfg)
	return sc, sc.IsValid()
}
