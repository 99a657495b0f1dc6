// Package rego holds Portcullis's Rego sources and embeds them in the binary.
//
// The Rego lives next to this file:
//
//   - lib/portcullis/mcp: package portcullis.mcp, helpers for MCP rules
//     (method classes, role permissions, argument inspection, networks).
//     The helpers read input only; a policy passes its data as arguments.
//   - default: package portcullis.builtin, the policy (policy.rego) and its
//     data (data.rego) that `portcullis dev` and `portcullis policy eval`
//     run when no policy is configured; decision portcullis/builtin/decision.
//   - examples: policies to start from - rbac (package mcp.authz), tenant
//     (package mcp.tenant), each with its data in a data.rego of its own
//     package, and opa-envoy (package envoy.authz, an opa-envoy-plugin
//     policy that runs unchanged).
//
// No two directories share a package and none holds a data file, so
// everything loads together as well as one directory at a time, and each
// policy finds its data at the same path either way: `opa test rego/` and
// `opa test rego/lib rego/examples/rbac` both pass.
//
// Each directory carries its *_test.rego files; the file systems embed
// them too, and callers that load policy filter them out. This package
// holds no logic: the policy package loads and evaluates what it embeds.
package rego

import "embed"

// Library is the helper library, rooted at "lib": import it in Rego as
// data.portcullis.mcp.
//
//go:embed lib
var Library embed.FS

// Default is the default policy, rooted at "default": policy.rego and
// data.rego, package portcullis.builtin, decision rule
// data.portcullis.builtin.decision.
//
//go:embed default
var Default embed.FS

// Examples holds the example policies, rooted at "examples": one directory
// per example, each with its tests and, where it needs data, a data.rego.
//
//go:embed examples
var Examples embed.FS

// DefaultDecision is the rule path of the decision in [Default].
const DefaultDecision = "portcullis/builtin/decision"
