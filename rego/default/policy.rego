# METADATA
# title: The default Portcullis policy
# description: |
#   What `portcullis dev` and `portcullis policy eval` run when no policy is
#   configured, and a starting point for your own. data.rego next to this
#   file grants permissions to two roles (see the portcullis.mcp library for
#   the permission strings):
#     admin  every tool, resource, prompt and method
#     user   the echo, whoami and time tools, tools named *.list, *.read or
#            *.search, and every prompt; no resources
#
#   The rule data.portcullis.builtin.decision (policy.decision:
#   portcullis/builtin/decision) walks the checks below in order; the first
#   that applies gives the decision:
#     1. GET of the OAuth Protected Resource Metadata          -> allowed
#     2. a request that is not MCP                             -> 403
#     3. an MCP call that could not be verified (truncated)   -> 413
#     4. a harmless request (lifecycle, lists, responses)      -> allowed,
#        for anonymous callers too
#     5. an anonymous caller                                   -> 401, so
#        the client is asked to sign in
#     6. tools/call, resources/read or prompts/get naming no
#        tool, resource or prompt                              -> 400
#     7. tools/call, resources/read and prompts/get, in turn:
#          a truncated body (arguments not seen in full)       -> 413
#          a path traversal in the target or the arguments,
#          a prompt-injection marker in the arguments          -> 403
#          a permission of one of the caller's roles           -> allowed,
#                                                                 else 403
#     8. any other method: a methods:call permission           -> allowed,
#                                                                 else 403
#
#   Anonymous callers reach the policy only when authn.allow_anonymous is
#   true. Scopes are not checked: examples/rbac shows how.
package portcullis.builtin

import data.portcullis.mcp

# METADATA
# description: The decision for the request in input.
# entrypoint: true
# scope: document
default decision := {"allowed": false, "reason": "no rule allows this request", "http_status": 403, "headers": {}}

decision := _allowed("OAuth protected resource metadata is public") if {
	mcp.oauth_metadata_request
} else := mcp.deny(403, "not an MCP request") if {
	not mcp.is_mcp
} else := mcp.deny(413, "request body truncated: the MCP call cannot be verified") if {
	mcp.truncated
} else := _allowed(sprintf("%s is harmless", [mcp.request_label])) if {
	mcp.harmless
} else := mcp.deny(401, "authentication required") if {
	not mcp.authenticated
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

# tools/call, resources/read and prompts/get: the target and the arguments,
# then roles.
_target_decision(kind, target) := d if {
	d := mcp.call_denial(kind, target)
} else := _allowed(sprintf("%s %q permitted for roles %s", [kind, target, _roles])) if {
	mcp.permitted(permissions, mcp.roles, kind, target)
} else := mcp.deny(403, sprintf("%s %q not permitted for roles %s", [kind, target, _roles]))

_allowed(reason) := object.union(mcp.allow(reason), {"cost": 1})

_roles := mcp.format_roles(mcp.roles)

# Role -> permission strings, set in data.rego; without it, no role holds a
# permission.
default permissions := {}
