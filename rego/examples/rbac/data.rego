# The data of the rbac example, in the policy's own package: each rule has
# one path, data.mcp.authz.<rule>, however the files are loaded. Edit it, or
# replace a rule with `permissions := data.<your path>` to read JSON or YAML
# data loaded with the policy.
package mcp.authz

# METADATA
# description: |
#   Role -> permission strings, as described in the portcullis.mcp library:
#   tools:execute:<tool glob>, resources:read:<uri glob>,
#   prompts:get:<prompt glob>, methods:call:<method glob>.
permissions := {
	"admin": [
		"tools:execute:*",
		"resources:read:**",
		"prompts:get:*",
		"methods:call:*",
	],
	"dev": [
		"tools:execute:fs.read",
		"tools:execute:fs.list",
		"tools:execute:search.*",
		"resources:read:file:///docs/*",
		"resources:read:file:///docs/public/**",
		"prompts:get:summarize",
		"methods:call:completion/complete",
	],
	"viewer": [
		"tools:execute:fs.list",
		"resources:read:file:///docs/*",
	],
}

# METADATA
# description: |
#   Method -> the scopes a caller's token must carry for it, when the token
#   carries scopes at all.
required_scopes := {
	"tools/call": ["mcp:tools"],
	"resources/read": ["mcp:resources"],
	"prompts/get": ["mcp:prompts"],
}

# METADATA
# description: Globs of the tools whose calls count 5 rate-limit hits instead of 1.
expensive_tools := ["search.*", "llm.*"]

# METADATA
# description: |
#   CIDRs callers must come from; empty, callers may come from anywhere
#   not blocked.
allowed_networks := []

# METADATA
# description: CIDRs callers must not come from.
blocked_networks := ["203.0.113.0/24"]

# METADATA
# description: |
#   Phrases that mark a prompt injection in arguments, besides the
#   library's injection_markers.
extra_injection_markers := []
