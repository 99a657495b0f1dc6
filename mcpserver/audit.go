package mcpserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"
)

// Audit record keys.
const (
	keyTraceID    = "trace_id"
	keySubject    = "subject"
	keyTool       = "tool"
	keyArgsSHA256 = "args_sha256"
	keyOutcome    = "outcome"
	keyLatencyMS  = "latency_ms"
)

// Audit outcomes.
const (
	outcomeOK     = "ok"
	outcomeError  = "error"
	outcomeDenied = "denied"
)

type auditRecord struct {
	start   time.Time
	trace   string
	subject string
	tool    string
	args    json.RawMessage
	outcome string
}

// argsSHA256 is the hex SHA-256 of the arguments in compact JSON (the
// arguments as sent, whitespace removed); of the empty string when absent.
func argsSHA256(raw json.RawMessage) string {
	var buf bytes.Buffer
	if len(raw) > 0 && json.Compact(&buf, raw) != nil {
		buf.Reset()
		buf.Write(raw)
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// writeAudit writes one record per tool call, timed at the call's start;
// it is written even when the request was cancelled.
func (s *Server) writeAudit(ctx context.Context, a *auditRecord) {
	ctx = context.WithoutCancel(ctx)
	h := s.audit.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	if a.outcome == "" {
		a.outcome = outcomeError // a panic or an abort
	}
	r := slog.NewRecord(a.start, slog.LevelInfo, "tool call", 0)
	r.AddAttrs(
		slog.String(keyTraceID, a.trace),
		slog.String(keySubject, a.subject),
		slog.String(keyTool, a.tool),
		slog.String(keyArgsSHA256, argsSHA256(a.args)),
		slog.String(keyOutcome, a.outcome),
		slog.Float64(keyLatencyMS, float64(s.now().Sub(a.start).Microseconds())/1000),
	)
	_ = h.Handle(ctx, r)
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
