package extauthz

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

// Audit record keys. mcpserver's tool call records use the same ones, so
// a decision and the tool call it let through can be joined on
// decision_id.
const (
	auditDecisionID    = "decision_id"
	auditTraceID       = "trace_id"
	auditOutcome       = "outcome"
	auditReason        = "reason"
	auditPolicyReason  = "policy_reason"
	auditDryRun        = "dry_run"
	auditStatus        = "status"
	auditSubject       = "subject"
	auditClientID      = "client_id"
	auditProvider      = "provider"
	auditKind          = "kind"
	auditSourceAddress = "source_address"
	auditMCPMethod     = "mcp_method"
	auditMCPName       = "mcp_name"
	auditArgsSHA256    = "args_sha256"
	auditLatencyUS     = "latency_us"
)

// finish ends the Check span, counts the decision and writes its audit
// record, once the answer is known (a recovered panic included).
func (s *Server) finish(ctx context.Context, span trace.Span, req *authv3.CheckRequest, c *check, resp *authv3.CheckResponse) {
	defer func() {
		if p := recover(); p != nil { // the answer is made: a bug here must not crash the server
			s.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "panic recording a decision",
				slog.String("decision_id", c.decisionID), slog.Any("panic", p))
		}
	}()
	elapsed := time.Since(c.start)
	result, reason := c.outcome(resp)
	if span != nil {
		s.endCheckSpan(span, c, resp, result, req.GetAttributes().GetRequest().GetHttp().GetMethod())
	}
	s.metrics.record(ctx, decisionLabels{result: result, reason: reason, provider: c.provider, method: methodLabel(c.r)}, elapsed)
	if s.audit != nil {
		s.writeAudit(ctx, req, c, resp, result, reason, elapsed)
	}
}

// writeAudit writes the audit record of one Check: who asked for which MCP
// call from where, what was answered and why, and how long it took. The
// arguments are recorded as their SHA-256 (telemetry.ArgumentsDigest),
// never as values; no header is recorded.
func (s *Server) writeAudit(ctx context.Context, req *authv3.CheckRequest, c *check, resp *authv3.CheckResponse, result, reason string, elapsed time.Duration) {
	// The record carries the trace id itself; the handler gets no span, so
	// a handler adding trace ids does not add them twice.
	hctx := context.Background()
	h := s.audit.Handler()
	if !h.Enabled(hctx, slog.LevelInfo) {
		return
	}
	status := http.StatusOK
	if dr := resp.GetDeniedResponse(); dr != nil {
		status = int(dr.GetStatus().GetCode())
	}
	traceID := ""
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		traceID = sc.TraceID().String()
	}
	// The attributes are gathered on the stack and added in one call:
	// slog.Record keeps five inline and allocates the rest at once, where
	// each further AddAttrs call could grow the slice again.
	var buf [16]slog.Attr
	attrs := append(buf[:0],
		slog.String(auditDecisionID, c.decisionID),
		slog.String(auditTraceID, traceID),
		slog.String(auditOutcome, result),
		slog.String(auditReason, reason),
		slog.Int(auditStatus, status),
		slog.String(auditSourceAddress, req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress()),
	)
	if d := c.decision; d != nil {
		if d.Reason != "" {
			attrs = append(attrs, slog.String(auditPolicyReason, d.Reason))
		}
		if d.DryRun {
			attrs = append(attrs, slog.Bool(auditDryRun, true))
		}
	}
	if r := c.r; r != nil {
		id := &r.in.Identity
		attrs = append(attrs,
			slog.String(auditSubject, id.Subject),
			slog.String(auditClientID, id.ClientID),
			slog.String(auditProvider, c.provider),
			slog.String(auditKind, id.Kind),
		)
		if call := r.in.MCP; call != nil {
			attrs = append(attrs, slog.String(auditMCPMethod, call.Method), slog.String(auditMCPName, call.Name))
			if call.Method == "tools/call" || call.Method == "prompts/get" {
				attrs = append(attrs, slog.String(auditArgsSHA256, telemetry.ArgumentsDigest(call.Arguments)))
			}
		}
	} else if c.provider != "" {
		attrs = append(attrs, slog.String(auditProvider, c.provider))
	}
	// An integer: slog encodes a float through encoding/json, a tenth of
	// the record's cost.
	attrs = append(attrs, slog.Int64(auditLatencyUS, elapsed.Microseconds()))
	rec := slog.NewRecord(c.start, slog.LevelInfo, "decision", 0)
	rec.AddAttrs(attrs...)
	_ = h.Handle(hctx, rec)
}
