package mcp.authz

# A small policy for the extauthz tests: tools listed in data.tools may be
# called, lifecycle methods pass, admin tools need a scope.

default decision := {"allowed": false, "reason": "not permitted"}

decision := {"allowed": true, "headers": {"x-tool": input.mcp.tool}, "cost": 2} if {
	input.mcp.method == "tools/call"
	input.mcp.tool in data.tools
	not input.mcp.arguments.path == "/etc/passwd"
}

decision := {"allowed": true, "reason": "lifecycle"} if {
	input.mcp.method in {"initialize", "tools/list", "ping", "notifications/initialized"}
}

decision := {"allowed": false, "reason": "needs the admin scope", "scopes": ["mcp:admin"]} if {
	startswith(input.mcp.tool, "admin.")
}
