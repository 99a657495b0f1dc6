// Package policy evaluates Portcullis's authorization decisions with Rego on
// an embedded OPA.
//
// An [Engine] loads .rego files and JSON/YAML data from paths, or an OPA
// bundle from a URL; compiles once and prepares the decision query; and
// evaluates it per request with [Engine.Eval]. Reloads (file changes,
// new bundle revisions) compile aside and swap atomically: a policy that
// fails to compile never replaces a good one, and the failure is visible in
// [Engine.Status] and the portcullis.policy.reloads metric.
//
// The [Input] and [Decision] types are the contract between Portcullis's
// front ends (ext_authz, the MCP server) and the policy; they do not depend
// on OPA.
//
//	engine, err := policy.New(ctx, &policy.Options{Paths: []string{"rego/examples/rbac"}})
//	if err != nil { ... } // compile errors carry file:line
//	go engine.Run(ctx)    // watch files for changes
//	d, err := engine.Eval(ctx, &policy.Input{MCP: &policy.MCP{Method: "tools/call", Tool: "echo"}})
//
// The embedded library (package portcullis.mcp, from the rego folder) is
// available to every policy that does not define that package itself.
package policy
