# The data of the tenant example, in the policy's own package: each rule has
# one path, data.mcp.tenant.<rule>, however the files are loaded. Edit it,
# or replace a rule with `shared_tools := data.<your path>` to read JSON or
# YAML data loaded with the policy.
package mcp.tenant

# METADATA
# description: Tools every tenant may call, by exact name.
shared_tools := ["echo", "time.now"]

# METADATA
# description: Prompts every tenant may get, by exact name.
shared_prompts := ["help"]
