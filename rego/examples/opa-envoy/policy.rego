# METADATA
# title: An opa-envoy-plugin policy, unchanged
# description: |
#   Written against opa-envoy-plugin's input and nothing else: Portcullis's
#   input is a superset of it, so this policy runs in either. It uses no
#   Portcullis library and no input.identity or input.mcp.
#
#   Query it as a boolean: policy.decision: envoy/authz/allow.
#
#   The x-api-team header names the calling team. Trust it only when the
#   proxy sets it after authenticating the caller, and strips it from
#   client requests.
package envoy.authz

import input.attributes.request.http as http_request

# METADATA
# description: True when the request may pass.
# entrypoint: true
# scope: document
default allow := false

# Health checks.
allow if {
	http_request.method == "GET"
	input.parsed_path == ["healthz"]
}

# The public API is read-only and open to everyone.
allow if {
	http_request.method in {"GET", "HEAD"}
	input.parsed_path[0] == "api"
	input.parsed_path[1] == "v1"
	input.parsed_path[2] == "public"
}

# A team reads and writes its own part of the API: /api/v1/teams/<team>/...
allow if {
	http_request.method in {"GET", "POST", "PUT", "DELETE"}
	input.parsed_path[0] == "api"
	input.parsed_path[1] == "v1"
	input.parsed_path[2] == "teams"
	input.parsed_path[3] == http_request.headers["x-api-team"]
}

# The platform team reads every team's part, without writing to it.
allow if {
	http_request.method == "GET"
	input.parsed_path[0] == "api"
	input.parsed_path[1] == "v1"
	input.parsed_path[2] == "teams"
	http_request.headers["x-api-team"] == "platform"
}

# Search needs a query: GET /api/v1/search?q=...
allow if {
	http_request.method == "GET"
	input.parsed_path == ["api", "v1", "search"]
	count(input.parsed_query.q) > 0
	http_request.headers["x-api-team"]
}
