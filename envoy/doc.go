// Package envoy holds the Envoy and Istio configuration Portcullis ships,
// its validation against go-control-plane types, and the development front
// door that applies Envoy's ext_authz and rate-limit filter semantics.
//
// # Shipped configuration
//
// The files next to this package are what a user deploys (README.md in
// this directory describes each):
//
//   - envoy.yaml: an Envoy v3 bootstrap fronting `portcullis mcp`, with
//     the MCP, ext_authz and rate-limit filters pointed at `portcullis
//     serve`;
//   - istio/: the extension provider, the CUSTOM AuthorizationPolicy and
//     the rate-limit EnvoyFilter;
//   - kubernetes/: Portcullis, the MCP server and Redis;
//   - Dockerfile: a static, non-root, distroless image.
//
// # Validation
//
// [LoadBootstrap] reads a bootstrap the way the tests check the shipped
// one: YAML is decoded through protojson into go-control-plane's types with
// unknown fields rejected, every typed_config must name a type linked into
// this package, and [Validate] runs the protoc-gen-validate rules of the
// message and of every message packed in an Any inside it:
//
//	b, err := envoy.LoadBootstrap("envoy/envoy.yaml")
//	if err != nil {
//		return err // names the field: unknown field, bad enum, rule broken
//	}
//
// [DecodeValue] does the same for Envoy configuration embedded in other
// documents, such as an Istio EnvoyFilter's patch values. The functions
// hold no state and are safe for concurrent use.
package envoy
