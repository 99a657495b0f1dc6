# METADATA
# title: Portcullis MCP helpers
# description: |
#   Helpers for authorization rules about MCP (Model Context Protocol) calls.
#   Every rule reads the Portcullis policy input: input.attributes (Envoy's
#   CheckRequest attributes), input.identity (who is calling) and input.mcp
#   (the MCP call, absent when the request is not MCP).
#
#   Import it with `import data.portcullis.mcp` and write `mcp.tool_call`,
#   `mcp.tool_allowed(permissions, mcp.roles, mcp.tool)`,
#   `mcp.path_traversal(mcp.arguments)`.
#
#   The helpers read nothing from data. What a policy configures - role
#   permissions, CIDR lists, extra prompt-injection markers - it passes as
#   arguments, usually rules of its own package, so that its data has one
#   path however its files are loaded:
#     permissions     role -> permission strings (an object of arrays)
#     CIDR lists      arrays of "10.0.0.0/8", "2001:db8::/32"...
#     extra markers   an array of phrases
#
#   Permission strings:
#     tools:execute:<tool glob>      tools/call      "*" matches any characters
#     resources:read:<uri glob>      resources/read  "*" stays inside one "/"
#                                                    segment, "**" crosses them
#     prompts:get:<prompt glob>      prompts/get     "*" matches any characters
#     methods:call:<method glob>     any other method the policy delegates to
#                                    permissions (for example logging/setLevel)
#
#   Helpers that read addresses, CIDRs, permissions and argument values
#   check their types first: malformed values make them false rather than
#   raise a builtin error, which matters when builtin errors are strict.
package portcullis.mcp

# ---------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------

# METADATA
# description: |
#   True when the request carries an MCP call: input.mcp is present, and
#   with it input.mcp.source, which Portcullis always sets. (Reading one
#   field rather than the whole object keeps the JSON-RPC id, which differs
#   on every call, out of the decision cache key; see README "Decision
#   cache".)
is_mcp if _ = input.mcp.source

# METADATA
# description: |
#   The JSON-RPC method of the call ("tools/call"). Undefined for client
#   JSON-RPC responses, for GET and DELETE on the MCP endpoint, and for
#   requests that are not MCP.
method := input.mcp.method

# METADATA
# description: The target of the call - tool name, prompt name or resource URI.
name := input.mcp.name

# METADATA
# description: The tool of a tools/call.
tool := input.mcp.tool

# METADATA
# description: The resource URI of a resources/read.
resource := input.mcp.resource

# METADATA
# description: The prompt of a prompts/get.
prompt := input.mcp.prompt

# METADATA
# description: |
#   params.arguments of tools/call and prompts/get; an empty object when the
#   call has none. Undefined when the request is not MCP.
arguments := input.mcp.arguments

arguments := {} if {
	is_mcp
	not _has_arguments
}

_has_arguments if _ = input.mcp.arguments

# METADATA
# description: The HTTP method of the request ("POST").
http_method := input.attributes.request.http.method

# METADATA
# description: True for tools/call.
tool_call if method == "tools/call"

# METADATA
# description: True for resources/read.
resource_read if method == "resources/read"

# METADATA
# description: True for prompts/get.
prompt_get if method == "prompts/get"

# METADATA
# description: |
#   What the call acts on, by method: "tool" for tools/call, "resource" for
#   resources/read, "prompt" for prompts/get; undefined for other methods.
target_kind := {"tools/call": "tool", "resources/read": "resource", "prompts/get": "prompt"}[method]

# METADATA
# description: |
#   The tool, resource URI or prompt the call acts on (see target_kind);
#   undefined when the call names none.
# scope: document
target := tool if tool_call

target := resource if resource_read

target := prompt if prompt_get

# METADATA
# description: |
#   The request in a few words, for reasons: the method ("tools/list") or,
#   without one, "<HTTP method> without a JSON-RPC method".
# scope: document
request_label := method

request_label := sprintf("%s without a JSON-RPC method", [http_method]) if not method

# METADATA
# description: |
#   True when the method and name of the call could not be verified: Envoy
#   cut the body and they come from client-supplied headers alone. A call
#   that says "ping" in its headers may then carry a tools/call body.
truncated if input.mcp.truncated == true

# METADATA
# description: |
#   True when Envoy sent only part of the body: arguments, if any, were not
#   seen in full.
body_truncated if input.truncated_body == true

# METADATA
# description: |
#   Methods that read no data and run nothing: the lifecycle, notifications
#   from the client, and the list methods (Portcullis filters tools/list per
#   caller).
always_allowed_methods := {
	"initialize",
	"notifications/initialized",
	"notifications/cancelled",
	"notifications/progress",
	"notifications/roots/list_changed",
	"ping",
	"tools/list",
	"resources/list",
	"resources/templates/list",
	"prompts/list",
}

# METADATA
# description: |
#   True for a POST carrying the client's JSON-RPC response to a server
#   request (no method), when the whole body was seen.
client_response if {
	is_mcp
	not method
	http_method == "POST"
	not truncated
	not body_truncated
}

# METADATA
# description: |
#   True for a GET (opens the server's event stream) or DELETE (ends the
#   session) on the MCP endpoint.
stream_request if {
	is_mcp
	not method
	http_method in {"GET", "DELETE"}
}

# METADATA
# description: |
#   True when the request is harmless for any caller the policy lets in:
#   an always-allowed method that was verified, a client response or a
#   stream request.
# scope: document
harmless if {
	method in always_allowed_methods
	not truncated
}

harmless if client_response

harmless if stream_request

# METADATA
# description: |
#   True for a GET of the OAuth Protected Resource Metadata
#   (/.well-known/oauth-protected-resource[/...]), which clients fetch
#   before they have a token.
oauth_metadata_request if {
	not is_mcp
	http_method == "GET"
	input.parsed_path[0] == ".well-known"
	input.parsed_path[1] == "oauth-protected-resource"
}

# ---------------------------------------------------------------------------
# The caller
# ---------------------------------------------------------------------------

# METADATA
# description: True when an identity provider verified the caller.
authenticated if input.identity.authenticated == true

# METADATA
# description: The subject of the caller, when known.
subject := input.identity.subject

# METADATA
# description: The caller's roles; an empty array when it has none.
default roles := []

roles := input.identity.roles if is_array(input.identity.roles)

# METADATA
# description: The caller's OAuth scopes; an empty array when it has none.
default scopes := []

scopes := input.identity.scopes if is_array(input.identity.scopes)

# METADATA
# description: True when the caller has role r.
has_role(r) if r in roles

# METADATA
# description: True when the caller's token grants scope s.
has_scope(s) if s in scopes

# METADATA
# description: The set of scopes in required that the caller lacks.
missing_scopes(required) := {s | some s in required; not has_scope(s)}

# METADATA
# description: 'Roles as text for reasons: ["ops", "dev"] is "[dev, ops]".'
format_roles(rs) := sprintf("[%s]", [concat(", ", sort(rs))])

# ---------------------------------------------------------------------------
# Permissions
# ---------------------------------------------------------------------------

# The patterns that the roles rs hold in permissions for one permission
# prefix, without the prefix.
_patterns(permissions, rs, prefix) := {trim_prefix(p, prefix) |
	some r in rs
	is_string(r)
	some p in permissions[r]
	is_string(p)
	startswith(p, prefix)
}

# METADATA
# description: |
#   True when one of the roles rs holds, in permissions (role -> permission
#   strings), tools:execute:<glob> matching the tool t.
tool_allowed(permissions, rs, t) if {
	is_string(t)
	some pattern in _patterns(permissions, rs, "tools:execute:")
	glob.match(pattern, null, t)
}

# METADATA
# description: |
#   True when one of the roles rs holds, in permissions, resources:read:<glob>
#   matching the URI ("/" delimits segments) and the URI has no path
#   traversal.
resource_allowed(permissions, rs, uri) if {
	is_string(uri)
	not path_traversal(uri)
	some pattern in _patterns(permissions, rs, "resources:read:")
	glob.match(pattern, ["/"], uri)
}

# METADATA
# description: |
#   True when one of the roles rs holds, in permissions, prompts:get:<glob>
#   matching the prompt p.
prompt_allowed(permissions, rs, p) if {
	is_string(p)
	some pattern in _patterns(permissions, rs, "prompts:get:")
	glob.match(pattern, null, p)
}

# METADATA
# description: |
#   True when one of the roles rs holds, in permissions, methods:call:<glob>
#   matching the method m.
method_allowed(permissions, rs, m) if {
	is_string(m)
	some pattern in _patterns(permissions, rs, "methods:call:")
	glob.match(pattern, null, m)
}

# METADATA
# description: |
#   True when one of the roles rs grants, in permissions, kind ("tool",
#   "resource", "prompt" or "method") on target: tool_allowed,
#   resource_allowed, prompt_allowed or method_allowed.
# scope: document
permitted(permissions, rs, "tool", t) if tool_allowed(permissions, rs, t)

permitted(permissions, rs, "resource", t) if resource_allowed(permissions, rs, t)

permitted(permissions, rs, "prompt", t) if prompt_allowed(permissions, rs, t)

permitted(permissions, rs, "method", t) if method_allowed(permissions, rs, t)

# ---------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------

# METADATA
# description: The IP address the request came from (attributes.source.address).
source_address := input.attributes.source.address.socketAddress.address

# METADATA
# description: The peer's mTLS principal (a SPIFFE ID in a mesh), when known.
source_principal := input.attributes.source.principal

# METADATA
# description: |
#   True when the source address is an IP inside one of the CIDRs (an array
#   or set of strings). Malformed CIDRs and non-IP addresses (a Unix socket)
#   never match.
source_in(cidrs) if {
	_is_ip(source_address)
	some cidr in cidrs
	is_string(cidr)
	net.cidr_is_valid(cidr)
	net.cidr_contains(cidr, source_address)
}

_is_ip(a) if net.cidr_is_valid(sprintf("%s/32", [a]))

# METADATA
# description: |
#   True when the source address is in one of the CIDRs deny_cidrs (an
#   array or set; see source_in).
source_blocked(deny_cidrs) if source_in(deny_cidrs)

# METADATA
# description: |
#   True when the source is not blocked by deny_cidrs and either allow_cidrs
#   is empty ([] or set()) or the address is in it. An allow list that is
#   neither an array nor a set lets nobody in.
# scope: document
source_allowed(allow_cidrs, deny_cidrs) if {
	not source_blocked(deny_cidrs)
	_empty_collection(allow_cidrs)
}

source_allowed(allow_cidrs, deny_cidrs) if {
	not source_blocked(deny_cidrs)
	source_in(allow_cidrs)
}

_empty_collection(x) if x == []

_empty_collection(x) if x == set()

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------

# METADATA
# description: |
#   Every string in x: x itself when it is a string, nested values of
#   objects and arrays at any depth, and object keys.
strings_in(x) := {s | walk(x, [_, s]); is_string(s)} | {k |
	walk(x, [_, v])
	is_object(v)
	some k in object.keys(v)
	is_string(k)
}

# METADATA
# description: |
#   True when any string in x (see strings_in) looks like a path traversal:
#   a ".." segment followed by a separator or ending the string (plain,
#   percent-encoded or double-encoded; "/" or "\"), "%2e%2e" anywhere, a
#   leading "/etc/", or a NUL byte (raw or "%00").
path_traversal(x) if _any_traversal(strings_in(x))

# METADATA
# description: |
#   strings_in(arguments): the strings of the call's arguments, walked once
#   per decision (a rule is evaluated once; a function call is not cached).
argument_strings := strings_in(arguments)

_any_traversal(ss) if {
	some s in ss
	_traversal(s)
}

# One pass per string: a dot-dot followed by a separator (../ ..\ %2e%2e/
# ..%2f %252e%252e%252f ...), a dot-dot segment at the end (".." "/tmp/.."
# "a\.."), "%2e%2e" anywhere, a leading "/etc/", or NUL (raw or "%00").
_traversal(s) if regex.match(_traversal_pattern, s)

_dot := `(\.|%2e|%252e)`

_traversal_pattern := concat("", [
	`(?i)`,
	_dot, _dot, `(/|\\|%2f|%5c|%252f|%255c)`,
	`|(^|/|\\|%2f|%5c)`, _dot, _dot, `$`,
	`|%2e%2e|^/etc/|\x00|%00`,
])

# METADATA
# description: |
#   Lower-case phrases that mark an attempt to override a model's
#   instructions. prompt_injection_with and call_denial_with add more.
injection_markers := {
	"ignore previous instructions",
	"ignore all previous",
	"ignore the above",
	"disregard the above",
	"disregard previous instructions",
	"system prompt",
	"<|im_start|>",
	"<|im_end|>",
	"you are now",
}

# Text as markers are compared: lower case, runs of white space as one space.
_normalize(s) := regex.replace(lower(s), `\s+`, " ")

# METADATA
# description: |
#   True when any string in x (see strings_in) contains one of the
#   injection_markers, compared case-insensitively with runs of white space
#   read as one space.
prompt_injection(x) if prompt_injection_with(x, [])

# METADATA
# description: |
#   prompt_injection with more markers: the strings in extra_markers (an
#   array or set) count too, compared the same way. Values that are not
#   strings, and strings of white space alone, are ignored.
prompt_injection_with(x, extra_markers) if _any_injection(strings_in(x), extra_markers)

_any_injection(ss, extra_markers) if {
	extra := {_normalize(m) | some m in extra_markers; is_string(m); trim_space(m) != ""}
	markers := injection_markers | extra

	# One text for all strings, joined by NUL (not white space, so no marker
	# can span two values), normalized once.
	text := _normalize(concat("\u0000", ss))
	some marker in markers
	contains(text, marker)
}

# ---------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------

# METADATA
# description: An allowing decision object with the reason.
allow(reason) := {"allowed": true, "reason": reason, "headers": {}}

# METADATA
# description: A denying decision object with the HTTP status and the reason.
deny(status, reason) := {"allowed": false, "reason": reason, "http_status": status, "headers": {}}

# METADATA
# description: |
#   The denial of a call whose target or arguments cannot be let through,
#   with `<kind> "<target>"` leading the reason: 413 when Envoy truncated the
#   body (the arguments were not seen in full), 403 when the target or the
#   arguments contain a path traversal, or the arguments a prompt-injection
#   marker (see prompt_injection). Undefined when none applies.
call_denial(kind, t) := call_denial_with(kind, t, [])

# METADATA
# description: |
#   call_denial with more prompt-injection markers: extra_markers as in
#   prompt_injection_with.
call_denial_with(kind, t, extra_markers) := deny(413, sprintf("%s %q: request body truncated, its arguments cannot be inspected", [kind, t])) if {
	body_truncated
} else := deny(403, sprintf("%s %q contains a path traversal", [kind, t])) if {
	path_traversal(t)
} else := deny(403, sprintf("%s %q: arguments contain a path traversal", [kind, t])) if {
	_any_traversal(argument_strings)
} else := deny(403, sprintf("%s %q: arguments contain a prompt-injection marker", [kind, t])) if {
	_any_injection(argument_strings, extra_markers)
}
