package envoy.authz

# Written as for opa-envoy-plugin: a boolean allow over the HTTP attributes
# and parsed_path.

default allow := false

http_request := input.attributes.request.http

allow if {
	http_request.method == "GET"
	input.parsed_path[0] == "api"
	input.parsed_path[2] == "public"
}

allow if {
	http_request.method == "GET"
	count(input.parsed_path) == 4
	input.parsed_path[0] == "api"
	input.parsed_path[2] == "products"
	http_request.headers["x-api-team"] == "shop"
}
