# METADATA
# title: Tenant isolation for MCP
# description: |
#   Each caller belongs to one tenant, named by the verified claim
#   input.identity.claims.tenant (lower-case letters, digits and "-").
#   Everything an MCP server offers is namespaced by tenant:
#     tools and prompts   <tenant>.<name>        acme.query
#     resources           tenant://<tenant>/...  tenant://acme/reports/q3
#   and a caller may only touch its own tenant's. Tools and prompts listed in
#   shared_tools and shared_prompts (data.rego next to this file) belong to
#   every tenant. Arguments may not name another tenant's resources, nor
#   carry a path traversal or a prompt-injection marker.
#
#   The rule data.mcp.tenant.decision walks these checks in order; the first
#   that applies gives the decision:
#     1. GET of the OAuth Protected Resource Metadata          -> allowed
#     2. a request that is not MCP                             -> 403
#     3. an MCP call that could not be verified (truncated)   -> 413
#     4. an anonymous caller                                   -> 401
#     5. a caller without a valid tenant claim                 -> 403
#     6. a harmless request (lifecycle, lists, responses)      -> allowed
#     7. tools/call, resources/read or prompts/get naming no
#        tool, resource or prompt                              -> 400
#     8. tools/call, resources/read and prompts/get, in turn:
#          a truncated body (arguments not seen in full)       -> 413
#          a path traversal in the target or the arguments,
#          a prompt-injection marker in the arguments          -> 403
#          arguments naming another tenant's tenant:// URI     -> 403
#          a shared tool or prompt                             -> allowed
#          a target of the caller's tenant                     -> allowed,
#                                                                 else 403
#     9. any other method                                      -> 403
#
#   Allowed decisions put the tenant in dynamic_metadata, so rate-limit
#   descriptors can count per tenant.
#
#   Use it with policy.paths: [rego/examples/tenant] and policy.decision:
#   mcp/tenant/decision; Portcullis embeds the library.
package mcp.tenant

import data.portcullis.mcp

# METADATA
# description: The decision for the request in input.
# entrypoint: true
# scope: document
default decision := {"allowed": false, "reason": "no rule allows this request", "http_status": 403, "headers": {}}

decision := mcp.allow("OAuth protected resource metadata is public") if {
	mcp.oauth_metadata_request
} else := mcp.deny(403, "not an MCP request") if {
	not mcp.is_mcp
} else := mcp.deny(413, "request body truncated: the MCP call cannot be verified") if {
	mcp.truncated
} else := mcp.deny(401, "authentication required") if {
	not mcp.authenticated
} else := mcp.deny(403, "the caller has no valid tenant claim") if {
	not tenant
} else := _allowed(sprintf("%s is harmless", [mcp.request_label])) if {
	mcp.harmless
} else := mcp.deny(400, sprintf("%s names no %s", [mcp.method, mcp.target_kind])) if {
	mcp.target_kind
	not mcp.target
} else := d if {
	d := _target_decision(mcp.target_kind, mcp.target)
} else := mcp.deny(403, sprintf("method %q is not allowed", [mcp.method])) if {
	mcp.method
} else := mcp.deny(403, sprintf("%s without a JSON-RPC method is not allowed", [mcp.http_method]))

# METADATA
# description: The caller's tenant, when its tenant claim is a valid tenant name.
tenant := t if {
	t := input.identity.claims.tenant
	is_string(t)
	regex.match(`^[a-z0-9][a-z0-9-]{0,62}$`, t)
}

# tools/call, resources/read and prompts/get: the target and the arguments,
# then the tenant they belong to.
_target_decision(kind, target) := d if {
	d := mcp.call_denial(kind, target)
} else := mcp.deny(403, sprintf("%s %q: arguments refer to tenant %q", [kind, target, other])) if {
	other := sort(_foreign_tenants(mcp.arguments))[0]
} else := _allowed(sprintf("%s %q is shared by all tenants", [kind, target])) if {
	target in _shared[kind]
} else := _allowed(sprintf("%s %q belongs to tenant %q", [kind, target, tenant])) if {
	_owner(kind, target) == tenant
} else := mcp.deny(403, sprintf("%s %q belongs to tenant %q, not %q", [kind, target, _owner(kind, target), tenant])) if {
	_owner(kind, target)
} else := mcp.deny(403, sprintf("%s %q is not in a tenant namespace", [kind, target]))

_allowed(reason) := object.union(mcp.allow(reason), {"cost": 1, "dynamic_metadata": {"tenant": tenant}})

# The tenant that owns a target: "acme" for the tool or prompt "acme.query"
# and for the resource "tenant://acme/reports/q3".
_owner(kind, target) := split(target, ".")[0] if {
	kind in {"tool", "prompt"}
	contains(target, ".")
}

_owner("resource", target) := owner if {
	[_, owner] := regex.find_all_string_submatch_n(`^tenant://([^/?#]+)/`, target, 1)[0]
}

# Tools and prompts every tenant may use.
_shared := {"tool": shared_tools, "prompt": shared_prompts}

# The data this policy reads, set in data.rego. Without it, no tool or
# prompt is shared.
default shared_tools := []

default shared_prompts := []

# The tenants other than the caller's that tenant:// URIs in x name.
_foreign_tenants(x) := {other |
	some s in mcp.strings_in(x)
	some m in regex.find_all_string_submatch_n(`(?i)tenant://([^/?#]*)`, s, -1)
	other := lower(m[1])
	other != tenant
}
