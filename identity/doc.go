// Package identity finds out who is calling: JWT with JWKS or OIDC
// discovery, API keys, OAuth2 token introspection, mTLS peers (SPIFFE IDs),
// basic auth; the signed identity passed upstream; and the lockout after
// repeated authentication failures.
//
// Until identity providers are wired in, every caller is anonymous and the
// policy decides; a configuration that names providers is refused.
package identity
