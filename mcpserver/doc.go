// Package mcpserver is the MCP server bundled with Portcullis (portcullis
// mcp), built on the official Go SDK: streamable HTTP and stdio transports,
// built-in tools, a bridge that re-exposes other MCP servers, and the same
// Rego policy as ext_authz enforced in-process.
//
//	s, err := mcpserver.New(&mcpserver.Options{
//		Decider:         engine, // a *policy.Engine
//		IdentityKey:     key,    // verifies x-portcullis-identity
//		Audience:        "https://mcp.example.com/mcp",
//		RequireIdentity: true,
//		BehindProxy:     true,
//	})
//	http.ListenAndServe("127.0.0.1:8080", s.Handler()) // or s.RunStdio(ctx, os.Stdin, os.Stdout)
//
// # Built-in tools
//
// whoami (the identity this server sees and the MCP call the gateway
// signed), echo, time (optional IANA zone) and hash (hex SHA-256 of a text).
// Input and output schemas are inferred from Go types and validated by the
// SDK; a tool failure, including invalid arguments, is an isError result.
//
// # HTTP
//
// [Server.Handler] serves /mcp (stateless unless Options.Stateful) and, when
// Options.ResourceMetadata is set, the Protected Resource Metadata at
// /.well-known/oauth-protected-resource and .../mcp. Every response carries
// X-Content-Type-Options: nosniff, X-Frame-Options: DENY and
// Referrer-Policy: no-referrer (HSTS over TLS). A request whose Origin is not
// in Options.AllowedOrigins is refused with 403 (DNS-rebinding protection;
// no Origin is allowed), CORS headers are sent to listed origins only, and a
// body over Options.MaxBodyBytes is refused with 413. The SDK's loopback
// Host check stays on unless Options.BehindProxy, which Envoy forwarding a
// public Host to a loopback listener needs.
//
// Recommended http.Server timeouts: ReadHeaderTimeout 10s, ReadTimeout 0
// (the body limit bounds reads), IdleTimeout 120s, and no WriteTimeout: it
// would cut SSE streams.
//
// # Identity
//
// Behind Envoy, the x-portcullis-identity token signed by ext_authz is
// verified with Options.IdentityKey and Options.Audience. With
// RequireIdentity, a request without a valid token is refused with 401, a
// Bearer challenge naming the resource metadata and a JSON-RPC error
// (CodeUnauthorized) carrying the request id; an invalid token is always
// refused. The identity is put in the request context as a policy.Identity
// ([IdentityFromContext]) and as the SDK's auth.TokenInfo (UserID = subject,
// Scopes, Extra with roles, provider, client_id, kind and the signed MCP
// call), so tools see it in req.Extra.TokenInfo and stateful sessions are
// bound to their subject.
//
// # Policy
//
// With Options.Decider, tools/call, prompts/get and resources/read are
// decided in-process (defense in depth on HTTP; the only check on stdio,
// where the identity is Options.StdioIdentity); a denial or a policy error
// is the JSON-RPC error CodeDenied with the policy's reason. tools/list,
// prompts/list and resources/list are filtered per caller by asking the same
// rule for each item as for a call of it. Requests that did not arrive over
// HTTP (stdio, in-memory transports) are decided with StdioIdentity.
//
// # Audit
//
// Options.Audit receives one record per tool call: time, decision_id (the
// gateway's, from the identity token), trace_id (from the OpenTelemetry
// span or the traceparent header), subject, client_id, provider,
// transport, mcp_method, mcp_name and tool, args_sha256 (the SHA-256 of
// the arguments' canonical JSON, as the gateway's decision record has it;
// never the arguments), outcome (ok, error or denied), reason (the
// policy's for a denial) and latency_us (microseconds).
//
// # Metrics
//
// With Options.MeterProvider: portcullis.mcp.tool_calls (by tool and
// outcome) and portcullis.mcp.tool_call.duration (by tool); a tool the
// server does not have is labelled "_unknown". With
// BridgeOptions.MeterProvider: portcullis.mcp.bridge.restarts and
// portcullis.mcp.bridge.upstream_up, by upstream.
//
// # Bridge
//
// Options.Extra is called with the SDK server after the built-in tools are
// added; the bridge adds upstream tools, resources and prompts there, under
// "<name>.<original>", and they pass through the same policy and audit.
package mcpserver
