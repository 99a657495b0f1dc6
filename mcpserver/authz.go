package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-mcp/portcullis/policy"
)

// authzMiddleware decides tools/call, prompts/get and resources/read with
// the policy, filters tools/list, prompts/list and resources/list to what the
// caller may call, and audits every tool call.
func (s *Server) authzMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch method {
		case "tools/call":
			return s.callTool(ctx, next, method, req)
		case "prompts/get":
			p, _ := req.GetParams().(*mcp.GetPromptParams)
			if p != nil {
				if err := s.check(ctx, req, &policy.MCP{Method: method, Name: p.Name, Prompt: p.Name, Arguments: stringArgs(p.Arguments), Source: policy.SourceBody}); err != nil {
					return nil, err
				}
			}
		case "resources/read":
			p, _ := req.GetParams().(*mcp.ReadResourceParams)
			if p != nil {
				if err := s.check(ctx, req, &policy.MCP{Method: method, Name: p.URI, Resource: p.URI, Source: policy.SourceBody}); err != nil {
					return nil, err
				}
			}
		case "tools/list", "prompts/list", "resources/list":
			res, err := next(ctx, method, req)
			if err != nil || s.opts.Decider == nil {
				return res, err
			}
			return s.filter(ctx, req, res), nil
		}
		return next(ctx, method, req)
	}
}

// errDenied is the JSON-RPC error of a policy denial.
func errDenied(reason string) error {
	msg := "forbidden"
	if reason != "" {
		msg += ": " + reason
	}
	return &jsonrpc.Error{Code: CodeDenied, Message: msg}
}

// check asks the policy about one call; a denial or a policy error is
// returned as a JSON-RPC error. A call that arrived with an identity token
// must be the call the token was signed for. Without a Decider everything
// else is allowed.
func (s *Server) check(ctx context.Context, req mcp.Request, call *policy.MCP) error {
	id, transport := s.requestIdentity(ctx, req)
	if m, n, signed := signedCall(req); signed && (m != call.Method || n != call.Name) {
		// The gateway decided another call: the token is no pass for this one
		// (a replayed token, or a request that reached the server around
		// Envoy with one).
		s.logger.LogAttrs(ctx, slog.LevelWarn, "identity token issued for another MCP call", slog.String(keySubject, id.Subject),
			slog.String("mcp_method", call.Method), slog.String("mcp_name", call.Name), slog.String("signed_method", m), slog.String("signed_name", n))
		return errDenied("the identity token was issued for another MCP call")
	}
	if s.opts.Decider == nil {
		return nil
	}
	ok, reason := s.allowed(ctx, id, call)
	if !ok {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "mcp call denied", slog.String("transport", transport),
			slog.String(keySubject, id.Subject), slog.String("mcp_method", call.Method), slog.String("mcp_name", call.Name), slog.String("reason", reason))
		return errDenied(reason)
	}
	return nil
}

// allowed evaluates the policy; an error denies.
func (s *Server) allowed(ctx context.Context, id policy.Identity, call *policy.MCP) (bool, string) {
	d, err := s.opts.Decider.Eval(ctx, &policy.Input{Identity: id, MCP: call})
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelError, "policy evaluation failed", errAttr(err))
		return false, "policy error"
	}
	return d.Allowed, d.Reason
}

// filter keeps the list items the caller may call, asking the same rule as
// for a call of each item.
func (s *Server) filter(ctx context.Context, req mcp.Request, res mcp.Result) mcp.Result {
	id, _ := s.requestIdentity(ctx, req)
	keep := func(call *policy.MCP) bool {
		call.Source = policy.SourceBody
		ok, _ := s.allowed(ctx, id, call)
		return ok
	}
	switch r := res.(type) {
	case *mcp.ListToolsResult:
		r.Tools = permitted(r.Tools, keep, func(t *mcp.Tool) *policy.MCP {
			return &policy.MCP{Method: "tools/call", Name: t.Name, Tool: t.Name}
		})
	case *mcp.ListPromptsResult:
		r.Prompts = permitted(r.Prompts, keep, func(p *mcp.Prompt) *policy.MCP {
			return &policy.MCP{Method: "prompts/get", Name: p.Name, Prompt: p.Name}
		})
	case *mcp.ListResourcesResult:
		r.Resources = permitted(r.Resources, keep, func(rs *mcp.Resource) *policy.MCP {
			return &policy.MCP{Method: "resources/read", Name: rs.URI, Resource: rs.URI}
		})
	}
	return res
}

// permitted returns, in a new slice, the items whose call (as call builds
// it) keep allows.
func permitted[T any](items []T, keep func(*policy.MCP) bool, call func(T) *policy.MCP) []T {
	out := make([]T, 0, len(items))
	for _, it := range items {
		if keep(call(it)) {
			out = append(out, it)
		}
	}
	return out
}

// callTool re-checks a tools/call, runs it, and counts and audits it.
func (s *Server) callTool(ctx context.Context, next mcp.MethodHandler, method string, req mcp.Request) (mcp.Result, error) {
	start := s.now()
	p, _ := req.GetParams().(*mcp.CallToolParamsRaw)
	var name string
	var raw json.RawMessage
	if p != nil {
		name, raw = p.Name, p.Arguments
	}
	id, transport := s.requestIdentity(ctx, req)
	rec := auditRecord{start: start, subject: id.Subject, clientID: id.ClientID, provider: id.Provider, transport: transport,
		tool: name, trace: traceID(ctx, req), decisionID: decisionID(req)}
	defer func() { s.finishCall(ctx, &rec) }()

	if len(raw) > 0 {
		// Numbers as written: the policy and the audit digest see what the
		// gateway saw.
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&rec.args); err != nil || dec.More() {
			rec.args = nil
			rec.outcome, rec.reason = outcomeError, reasonInvalidArguments
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "arguments are not JSON"}
		}
	}
	if err := s.check(ctx, req, &policy.MCP{Method: method, Name: name, Tool: name, Arguments: rec.args, Source: policy.SourceBody}); err != nil {
		rec.outcome, rec.reason = outcomeDenied, denialReason(err)
		return nil, err
	}
	res, err := next(ctx, method, req)
	rec.outcome = outcomeOK
	if r, ok := res.(*mcp.CallToolResult); err != nil {
		rec.outcome, rec.reason = outcomeError, reasonCallFailed
	} else if ok && r != nil && r.IsError {
		rec.outcome, rec.reason = outcomeError, reasonToolError
	}
	return res, err
}

// denialReason is the reason of a denial for the audit record: the
// policy's, as errDenied put it in the message.
func denialReason(err error) string {
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		if r, ok := strings.CutPrefix(je.Message, "forbidden: "); ok {
			return r
		}
	}
	return "forbidden"
}

func stringArgs(m map[string]string) any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// signedCall returns the MCP method and name the request's identity token
// was signed for, when the request came with one.
func signedCall(req mcp.Request) (method, name string, ok bool) {
	extra := req.GetExtra()
	if extra == nil || extra.TokenInfo == nil {
		return "", "", false
	}
	m, ok := extra.TokenInfo.Extra[ExtraMCPMethod].(string)
	if !ok {
		return "", "", false
	}
	n, _ := extra.TokenInfo.Extra[ExtraMCPName].(string)
	return m, n, true
}
