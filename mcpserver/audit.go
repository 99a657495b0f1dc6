package mcpserver

import (
	"context"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

// Audit record keys: the gateway's decision records use the same ones, and
// decision_id is the gateway's (the identity token's jti), so a tool call
// joins the decision that let it through.
const (
	keyDecisionID = "decision_id"
	keyTraceID    = "trace_id"
	keySubject    = "subject"
	keyClientID   = "client_id"
	keyProvider   = "provider"
	keyTransport  = "transport"
	keyMCPMethod  = "mcp_method"
	keyMCPName    = "mcp_name"
	keyTool       = "tool"
	keyArgsSHA256 = "args_sha256"
	keyOutcome    = "outcome"
	keyReason     = "reason"
	keyLatencyUS  = "latency_us"
)

// Audit outcomes.
const (
	outcomeOK     = "ok"
	outcomeError  = "error"
	outcomeDenied = "denied"
)

// Reasons of tool calls that did not succeed: closed codes; a denial
// carries the policy's reason instead.
const (
	reasonInvalidArguments = "invalid_arguments"
	reasonToolError        = "tool_error" // the tool answered isError
	reasonCallFailed       = "call_failed"
)

type auditRecord struct {
	start      time.Time
	trace      string
	decisionID string
	subject    string
	clientID   string
	provider   string
	transport  string
	tool       string
	args       any // decoded with UseNumber; nil when absent
	outcome    string
	reason     string
}

// finishCall counts and times one tool call and writes its audit record,
// timed at the call's start; it is written even when the request was
// cancelled.
func (s *Server) finishCall(ctx context.Context, a *auditRecord) {
	if a.outcome == "" {
		a.outcome, a.reason = outcomeError, reasonCallFailed // a panic or an abort
	}
	elapsed := s.now().Sub(a.start)
	s.metrics.record(ctx, s.toolLabel(a.tool), a.outcome, elapsed)
	// The record carries the trace id itself; the handler gets no span, so
	// a handler adding trace ids does not add them twice.
	hctx := context.Background()
	h := s.audit.Handler()
	if !h.Enabled(hctx, slog.LevelInfo) {
		return
	}
	// The attributes are gathered on the stack and added in one call:
	// slog.Record keeps five inline and allocates the rest at once, where
	// each further AddAttrs call could grow the slice again.
	var buf [13]slog.Attr
	attrs := append(buf[:0],
		slog.String(keyDecisionID, a.decisionID),
		slog.String(keyTraceID, a.trace),
		slog.String(keySubject, a.subject),
		slog.String(keyClientID, a.clientID),
		slog.String(keyProvider, a.provider),
		slog.String(keyTransport, a.transport),
		slog.String(keyMCPMethod, "tools/call"),
		slog.String(keyMCPName, a.tool),
		slog.String(keyTool, a.tool),
		slog.String(keyArgsSHA256, telemetry.ArgumentsDigest(a.args)),
		slog.String(keyOutcome, a.outcome),
	)
	if a.reason != "" {
		attrs = append(attrs, slog.String(keyReason, a.reason))
	}
	attrs = append(attrs, slog.Int64(keyLatencyUS, elapsed.Microseconds()))
	r := slog.NewRecord(a.start, slog.LevelInfo, "tool call", 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(hctx, r)
}

// decisionID is the gateway's decision id for a call that came with a
// verified identity token: the x-portcullis-decision-id header ext_authz
// sets beside the token (tokens are reused across calls), else the token's
// jti; empty without a token (stdio).
func decisionID(req mcp.Request) string {
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return ""
	}
	if extra.Header != nil {
		if id := extra.Header.Get(HeaderDecisionID); id != "" {
			return id
		}
	}
	id, _ := extra.TokenInfo.Extra[ExtraTokenID].(string)
	return id
}

// traceID is the trace id of the call: from the OpenTelemetry span in ctx,
// else from the W3C traceparent header of the HTTP request; empty if none.
func traceID(ctx context.Context, req mcp.Request) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	if extra := req.GetExtra(); extra != nil && extra.Header != nil {
		// version "-" trace-id (32 hex) "-" parent-id "-" flags
		if tp := extra.Header.Get("traceparent"); len(tp) >= 55 && tp[2] == '-' && tp[35] == '-' {
			if id, err := trace.TraceIDFromHex(tp[3:35]); err == nil {
				return id.String()
			}
		}
	}
	return ""
}
