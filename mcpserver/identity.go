package mcpserver

import (
	"context"
	"crypto/sha256"
	"net/http"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/policy"
)

// Keys of auth.TokenInfo.Extra filled from the identity token.
const (
	ExtraIdentity  = "portcullis.identity" // the policy.Identity (value)
	ExtraRoles     = "roles"
	ExtraProvider  = "provider"
	ExtraClientID  = "client_id"
	ExtraKind      = "kind"
	ExtraMCPMethod = "mcp_method" // the MCP call the gateway signed
	ExtraMCPName   = "mcp_name"
	ExtraTokenID   = "jti" // the gateway's decision id
)

type identityKey struct{}
type pendingTokenInfoKey struct{}

// IdentityFromContext returns the identity the HTTP layer verified for this
// request, if any.
func IdentityFromContext(ctx context.Context) (policy.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(policy.Identity)
	return id, ok
}

// identityFromClaims is the policy identity an identity token describes.
func identityFromClaims(c *identity.IdentityClaims) policy.Identity {
	id := policy.Identity{
		Authenticated: c.Kind != policy.KindAnonymous,
		Provider:      c.Provider,
		Kind:          c.Kind,
		Subject:       c.Subject,
		ClientID:      c.ClientID,
		Roles:         slices.Clone(c.Roles),
		Scopes:        slices.Clone(c.Scopes),
	}
	if id.Roles == nil {
		id.Roles = []string{}
	}
	if id.Scopes == nil {
		id.Scopes = []string{}
	}
	return id
}

// tokenInfoFromClaims is the SDK's view of the same identity, so tool
// handlers see it in req.Extra.TokenInfo and stateful sessions are bound to
// the subject (the SDK refuses a session used by another UserID).
func tokenInfoFromClaims(c *identity.IdentityClaims, id policy.Identity) *auth.TokenInfo {
	ti := &auth.TokenInfo{
		UserID: c.Subject,
		Scopes: slices.Clone(c.Scopes),
		Extra: map[string]any{
			ExtraIdentity:  id,
			ExtraRoles:     slices.Clone(c.Roles),
			ExtraProvider:  c.Provider,
			ExtraClientID:  c.ClientID,
			ExtraKind:      c.Kind,
			ExtraMCPMethod: c.MCPMethod,
			ExtraMCPName:   c.MCPName,
			ExtraTokenID:   c.ID,
		},
	}
	if c.ExpiresAt != nil {
		ti.Expiration = c.ExpiresAt.Time
	}
	return ti
}

// withIdentity verifies x-portcullis-identity and puts the identity in the
// request context, both as a policy.Identity and as the SDK's
// auth.TokenInfo.
//
// The SDK only lets auth.RequireBearerToken store a TokenInfo in a context,
// and that middleware reads the Authorization header; so the verified
// TokenInfo is handed to it through the context and a placeholder bearer
// token, and the client's own Authorization header is restored before the
// MCP handler runs.
func (s *Server) withIdentity(next http.Handler) http.Handler {
	verifier := func(ctx context.Context, _ string, _ *http.Request) (*auth.TokenInfo, error) {
		if ti, ok := ctx.Value(pendingTokenInfoKey{}).(*auth.TokenInfo); ok {
			return ti, nil
		}
		return nil, auth.ErrInvalidToken
	}
	type savedAuthKey struct{}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if saved, _ := r.Context().Value(savedAuthKey{}).([]string); saved != nil {
			r.Header["Authorization"] = saved
		} else {
			r.Header.Del("Authorization")
		}
		next.ServeHTTP(w, r)
	})
	withTokenInfo := auth.RequireBearerToken(verifier, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(inner)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get(HeaderIdentity)
		if tok == "" || s.opts.IdentityKey == nil {
			if s.opts.RequireIdentity {
				s.unauthorized(w, r, "", "missing identity token")
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, policy.Anonymous())))
			return
		}
		claims, err := s.verifyIdentity(tok)
		if err != nil {
			s.logger.LogAttrs(r.Context(), slogLevelInfo, "identity token refused", errAttr(err))
			s.unauthorized(w, r, "invalid_token", "invalid identity token")
			return
		}
		id := identityFromClaims(claims)
		ctx := context.WithValue(r.Context(), identityKey{}, id)
		ctx = context.WithValue(ctx, pendingTokenInfoKey{}, tokenInfoFromClaims(claims, id))
		if saved := r.Header.Values("Authorization"); len(saved) > 0 {
			ctx = context.WithValue(ctx, savedAuthKey{}, slices.Clone(saved))
		}
		r = r.WithContext(ctx)
		r.Header.Set("Authorization", "Bearer portcullis-identity")
		withTokenInfo.ServeHTTP(w, r)
	})
}

// requestIdentity is the identity a JSON-RPC request is decided with: the
// one verified by the HTTP layer, or Options.StdioIdentity for requests that
// did not arrive over HTTP.
func (s *Server) requestIdentity(ctx context.Context, req mcp.Request) (policy.Identity, string) {
	if id, ok := IdentityFromContext(ctx); ok {
		return id, transportHTTP
	}
	if extra := req.GetExtra(); extra != nil && (extra.TokenInfo != nil || extra.Header != nil) {
		if extra.TokenInfo != nil {
			if id, ok := extra.TokenInfo.Extra[ExtraIdentity].(policy.Identity); ok {
				return id, transportHTTP
			}
		}
		return policy.Anonymous(), transportHTTP
	}
	return s.opts.StdioIdentity, transportStdio
}

const (
	transportHTTP  = "http"
	transportStdio = "stdio"
)

// verifyIdentity checks an identity token, remembering good ones until they
// expire: the gateway reuses a token for the same caller and call
// (identity.Signer.Token), so most requests carry a token already verified
// and skip the Ed25519 verification.
func (s *Server) verifyIdentity(tok string) (*identity.IdentityClaims, error) {
	now := s.now()
	key := sha256.Sum256([]byte(tok))
	if c, ok := s.verified.Get(key); ok && now.Before(c.ExpiresAt.Time) {
		return c, nil
	}
	c, err := identity.VerifyIdentityToken(tok, s.opts.IdentityKey, s.opts.Audience, now)
	if err == nil && c.ExpiresAt != nil {
		s.verified.Put(key, c)
	}
	return c, err
}
