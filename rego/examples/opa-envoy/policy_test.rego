package envoy.authz_test

import data.envoy.authz

req(method, path, query, headers) := {
	"attributes": {"request": {"http": {
		"method": method,
		"path": path,
		"host": "api.example.com",
		"headers": headers,
	}}},
	"parsed_path": [p | some p in array.slice(split(path, "/"), 1, 100)],
	"parsed_query": query,
}

get(path) := req("GET", path, {}, {})

team(method, path, t) := req(method, path, {}, {"x-api-team": t})

test_healthz if {
	authz.allow with input as get("/healthz")
	not authz.allow with input as req("POST", "/healthz", {}, {})
	not authz.allow with input as get("/healthz/deep")
}

test_public_read_only if {
	authz.allow with input as get("/api/v1/public/status")
	authz.allow with input as req("HEAD", "/api/v1/public/docs/a", {}, {})
	not authz.allow with input as req("POST", "/api/v1/public/status", {}, {})
	not authz.allow with input as req("DELETE", "/api/v1/public/status", {}, {})
}

test_public_prefix_exact if {
	not authz.allow with input as get("/api/v2/public/status")
	not authz.allow with input as get("/api/v1/publicity")
	not authz.allow with input as get("/v1/public/status")
	not authz.allow with input as get("/web/v1/public/status")
}

test_team_own_part if {
	authz.allow with input as team("GET", "/api/v1/teams/payments/invoices", "payments")
	authz.allow with input as team("POST", "/api/v1/teams/payments/invoices", "payments")
	authz.allow with input as team("DELETE", "/api/v1/teams/payments/invoices/7", "payments")
	not authz.allow with input as team("PATCH", "/api/v1/teams/payments/invoices", "payments")
}

test_team_other_part_denied if {
	not authz.allow with input as team("GET", "/api/v1/teams/payments/invoices", "search")
	not authz.allow with input as team("POST", "/api/v1/teams/payments", "search")
	not authz.allow with input as get("/api/v1/teams/payments/invoices")
	not authz.allow with input as team("GET", "/web/v1/teams/payments", "payments")
	not authz.allow with input as team("GET", "/api/v2/teams/payments", "payments")
	not authz.allow with input as team("GET", "/api/v1/users/payments", "payments")
}

test_platform_reads_every_team if {
	authz.allow with input as team("GET", "/api/v1/teams/payments/invoices", "platform")
	not authz.allow with input as team("POST", "/api/v1/teams/payments/invoices", "platform")
	not authz.allow with input as team("GET", "/web/v1/teams/payments", "platform")
	not authz.allow with input as team("GET", "/api/v2/teams/payments", "platform")
	not authz.allow with input as team("GET", "/api/v1/users/payments", "platform")
}

test_search_needs_query_and_team if {
	authz.allow with input as req("GET", "/api/v1/search", {"q": ["invoices"]}, {"x-api-team": "search"})
	not authz.allow with input as req("GET", "/api/v1/search", {}, {"x-api-team": "search"})
	not authz.allow with input as req("GET", "/api/v1/search", {"q": []}, {"x-api-team": "search"})
	not authz.allow with input as req("GET", "/api/v1/search", {"q": ["invoices"]}, {})
	not authz.allow with input as req("POST", "/api/v1/search", {"q": ["invoices"]}, {"x-api-team": "search"})
	not authz.allow with input as req("GET", "/api/v1/search/deep", {"q": ["invoices"]}, {"x-api-team": "search"})
}

test_default_deny if {
	not authz.allow with input as get("/")
	not authz.allow with input as get("/admin")
	not authz.allow with input as {}
}

# The same input Portcullis builds, with identity and mcp added, decides the same.
test_portcullis_superset_input if {
	i := object.union(get("/api/v1/public/status"), {
		"parsed_body": null,
		"truncated_body": false,
		"version": {"ext_authz": "v3", "encoding": "protojson"},
		"identity": {"authenticated": false, "kind": "anonymous"},
	})
	authz.allow with input as i
}
