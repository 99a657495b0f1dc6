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
//
// # The front door
//
// [FrontDoor] is an HTTP handler built from a bootstrap (normally the
// shipped one, [Shipped]) that does to each request what Envoy documents
// for that configuration, so that `portcullis dev` and the end-to-end
// tests exercise the configuration users deploy. It is a development and
// test tool, not a production proxy: HTTP/1.1 and plain TCP only, one
// listener, one endpoint per cluster, no retries, no statistics. Run Envoy
// in production.
//
// [New] refuses any filter, field or option it does not implement, naming
// it, rather than ignore it. What it implements, per request:
//
//   - http_connection_manager: headers with underscores refused (400),
//     escaped slashes refused (400), normalize_path (RFC 3986 with
//     percent-decoding of unreserved characters, "\" as "/", and bytes a
//     path cannot hold as they are percent-encoded, so the path checked is
//     the path proxied), merge_slashes; at the edge (use_remote_address) x-envoy-* headers
//     from the client are dropped, x-forwarded-for gets the peer address,
//     x-forwarded-proto and x-request-id are set; virtual hosts by domain,
//     routes by path or prefix (404 otherwise); the route timeout (15s by
//     default, 0 for none) and idle timeouts.
//   - envoy.filters.http.mcp: a JSON-RPC POST body's method, id and the
//     params naming its target go into dynamic metadata; a body over
//     max_request_body_size gets is_exceeding_limit; PASS_THROUGH or
//     REJECT_NO_MCP.
//   - envoy.filters.http.ext_authz: the CheckRequest (lower-case headers
//     with :authority, :method, :path and :scheme, path with query, host,
//     scheme, protocol, stream id, source and destination addresses, the
//     body up to max_request_bytes with x-envoy-auth-partial-body, context
//     extensions from ExtAuthzPerRoute, the metadata namespaces asked
//     for); on OK the header mutations (append flag or append_action),
//     removals (never pseudo-headers or host), query mutations, response
//     headers and dynamic metadata; on a denial its status (403 by
//     default), headers and body; on an error failure_mode_allow or
//     status_on_error (403 by default).
//   - envoy.filters.http.ratelimit: descriptors from the route's
//     rate_limits (request_headers, remote_address, generic_key,
//     header_value_match, metadata with skip_if_absent and default_value;
//     hits_addend as a number or %DYNAMIC_METADATA(ns:key)%), one
//     ShouldRateLimit call, 429 with x-envoy-ratelimited on OVER_LIMIT, the
//     DRAFT_VERSION_03 x-ratelimit-* headers, request and response headers
//     to add, failure_mode_deny on errors.
//   - envoy.filters.http.router: the request proxied to the route's
//     cluster with the whole body, the response streamed back unbuffered
//     (SSE events pass as they come); 503 when the upstream cannot be
//     reached, 504 on the route timeout.
package envoy
