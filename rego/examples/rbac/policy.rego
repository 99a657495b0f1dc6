# METADATA
# title: Role-based access to MCP tools, resources and prompts
# description: |
#   Callers get permissions through their roles (input.identity.roles):
#   the rule permissions in data.rego next to this file maps each role to
#   permission strings, as described in the portcullis.mcp library:
#     tools:execute:<tool glob>, resources:read:<uri glob>,
#     prompts:get:<prompt glob>, methods:call:<method glob>.
#   data.rego sets the other rules named below too.
#
#   The rule data.mcp.authz.decision walks the checks below in order; the
#   first that applies gives the decision:
#     1. a source address in blocked_networks                  -> 403
#     2. allowed_networks not empty, and the source address
#        not in it                                             -> 403
#     3. GET of the OAuth Protected Resource Metadata          -> allowed
#     4. a request that is not MCP                             -> 403
#     5. an MCP call that could not be verified (truncated)   -> 413
#     6. an anonymous caller                                   -> 401
#     7. a harmless request (lifecycle, lists, responses)      -> allowed
#     8. tools/call, resources/read or prompts/get naming no
#        tool, resource or prompt                              -> 400
#     9. tools/call, resources/read and prompts/get, in turn:
#          scopes missing from the token                       -> 403
#          a truncated body (arguments not seen in full)       -> 413
#          a path traversal in the target or the arguments,
#          a prompt-injection marker in the arguments (the
#          library's or extra_injection_markers)               -> 403
#          a permission of one of the caller's roles           -> allowed,
#                                                                 else 403
#    10. any other method: a methods:call permission           -> allowed,
#                                                                 else 403
#
#   Scopes: when the caller's token carries scopes at all, a method listed
#   in required_scopes needs all of its scopes; the denial names them, so
#   the client is told insufficient_scope. Callers without scopes (API keys,
#   mTLS) are judged by their roles alone.
#
#   Cost: an allowed call counts 1 rate-limit hit, a tool matching a glob in
#   expensive_tools counts 5.
#
#   Use it with policy.paths: [rego/examples/rbac] and policy.decision:
#   mcp/authz/decision; Portcullis embeds the library.
package mcp.authz

import data.portcullis.mcp

# METADATA
# description: The decision for the request in input.
# entrypoint: true
# scope: document
default decision := {"allowed": false, "reason": "no rule allows this request", "http_status": 403, "headers": {}}

decision := mcp.deny(403, sprintf("source address %s is blocked", [mcp.source_address])) if {
	mcp.source_blocked(blocked_networks)
} else := mcp.deny(403, "source address not in allowed_networks") if {
	not mcp.source_allowed(allowed_networks, blocked_networks)
} else := _allowed("OAuth protected resource metadata is public") if {
	mcp.oauth_metadata_request
} else := mcp.deny(403, "not an MCP request") if {
	not mcp.is_mcp
} else := mcp.deny(413, "request body truncated: the MCP call cannot be verified") if {
	mcp.truncated
} else := mcp.deny(401, "authentication required") if {
	not mcp.authenticated
} else := _allowed(sprintf("%s is harmless", [mcp.request_label])) if {
	mcp.harmless
} else := mcp.deny(400, sprintf("%s names no %s", [mcp.method, mcp.target_kind])) if {
	mcp.target_kind
	not mcp.target
} else := d if {
	d := _target_decision(mcp.target_kind, mcp.target)
} else := _allowed(sprintf("method %q permitted for roles %s", [mcp.method, _roles])) if {
	mcp.permitted(permissions, mcp.roles, "method", mcp.method)
} else := mcp.deny(403, sprintf("method %q not permitted for roles %s", [mcp.method, _roles])) if {
	mcp.method
} else := mcp.deny(403, sprintf("%s without a JSON-RPC method is not allowed", [mcp.http_method]))

# tools/call, resources/read and prompts/get: scopes, then the target and
# the arguments, then roles.
_target_decision(kind, target) := d if {
	d := _scope_denial
} else := d if {
	d := mcp.call_denial_with(kind, target, extra_injection_markers)
} else := _allowed(sprintf("%s %q permitted for roles %s", [kind, target, _roles])) if {
	mcp.permitted(permissions, mcp.roles, kind, target)
} else := mcp.deny(403, sprintf("%s %q not permitted for roles %s", [kind, target, _roles]))

_allowed(reason) := object.union(mcp.allow(reason), {"cost": _cost})

_roles := mcp.format_roles(mcp.roles)

default _cost := 1

_cost := 5 if {
	some pattern in expensive_tools
	glob.match(pattern, null, mcp.tool)
}

# The scopes the method needs, when the caller's token carries scopes.
_required_scopes := required_scopes[mcp.method] if count(mcp.scopes) > 0

# A denial naming the required scopes, when the caller lacks some of them.
_scope_denial := object.union(
	mcp.deny(403, sprintf("%s requires scope %s", [mcp.method, concat(" ", sort(missing))])),
	{"scopes": sort(_required_scopes)},
) if {
	missing := mcp.missing_scopes(_required_scopes)
	count(missing) > 0
}

# The data this policy reads, set in data.rego. Without it, no role holds a
# permission, no method needs scopes, no tool is expensive, callers may come
# from anywhere and only the library's prompt-injection markers count.
default permissions := {}

default required_scopes := {}

default expensive_tools := []

default allowed_networks := []

default blocked_networks := []

default extra_injection_markers := []
