# The data of the default policy, in the policy's own package: it has one
# path, data.portcullis.builtin.permissions, however the files are loaded.
# Edit it, or replace it with `permissions := data.<your path>` to read JSON
# or YAML data loaded with the policy.
package portcullis.builtin

# METADATA
# description: |
#   Role -> permission strings (see the portcullis.mcp library):
#     admin  every tool, resource, prompt and method
#     user   the echo, whoami and time tools, tools named *.list, *.read or
#            *.search, and every prompt; no resources
permissions := {
	"admin": [
		"tools:execute:*",
		"resources:read:**",
		"prompts:get:*",
		"methods:call:*",
	],
	"user": [
		"tools:execute:echo",
		"tools:execute:whoami",
		"tools:execute:time",
		"tools:execute:*.list",
		"tools:execute:*.read",
		"tools:execute:*.search",
		"prompts:get:*",
	],
}
