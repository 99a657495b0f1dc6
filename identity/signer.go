package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis-mcp/portcullis/internal/cache"
	"github.com/portcullis-mcp/portcullis/policy"
)

// IdentityIssuer is the iss of the identity tokens Portcullis signs.
const IdentityIssuer = "portcullis"

// SignerOptions configure a [Signer].
type SignerOptions struct {
	// Key signs the tokens; nil generates a key at start (its public half
	// is published by JWKS, so verifiers must fetch it after each start).
	Key ed25519.PrivateKey
	// Audience is the aud of the tokens: the MCP server's resource URI.
	Audience string
	// TTL is the token lifetime; default 60s.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Signer mints the short-lived x-portcullis-identity token: an EdDSA JWS
// telling the upstream MCP server whom the gateway let through, for which
// MCP call, so it can check even a request that reached it around Envoy.
type Signer struct {
	key ed25519.PrivateKey
	kid string
	aud string
	ttl time.Duration
	now func() time.Time

	tokens *cache.Map[string, cachedToken] // for Token
}

// IdentityClaims are the claims of an identity token.
type IdentityClaims struct {
	jwt.RegisteredClaims
	Provider  string   `json:"provider,omitempty"`
	Kind      string   `json:"kind,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	Scopes    []string `json:"scopes,omitempty"`
	MCPMethod string   `json:"mcp_method,omitempty"`
	MCPName   string   `json:"mcp_name,omitempty"`
}

// NewSigner returns a Signer.
func NewSigner(opts SignerOptions) (*Signer, error) {
	if opts.Key == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		opts.Key = k
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sum := sha256.Sum256(opts.Key.Public().(ed25519.PublicKey))
	return &Signer{key: opts.Key, kid: base64.RawURLEncoding.EncodeToString(sum[:12]), aud: opts.Audience, ttl: opts.TTL, now: opts.Now,
		tokens: cache.New[string, cachedToken](tokenCacheSize)}, nil
}

// LoadSigningKey reads an Ed25519 private key in PKCS #8 PEM ("PRIVATE
// KEY"), as `openssl genpkey -algorithm ed25519` writes it.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: want an Ed25519 key, got %T", path, k)
	}
	return ek, nil
}

// Sign returns the identity token for id and one MCP call; decisionID
// becomes its jti.
func (s *Signer) Sign(id *policy.Identity, mcpMethod, mcpName, decisionID string) (string, error) {
	now := s.now()
	c := IdentityClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    IdentityIssuer,
			Subject:   id.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
			ID:        decisionID,
		},
		Provider: id.Provider, Kind: id.Kind, ClientID: id.ClientID, Roles: id.Roles, Scopes: id.Scopes,
		MCPMethod: mcpMethod, MCPName: mcpName,
	}
	if s.aud != "" {
		c.Audience = jwt.ClaimStrings{s.aud}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = s.kid
	return t.SignedString(s.key)
}

// Token returns an identity token for id and one MCP call, reusing the
// token it signed for the same caller and call while that token has at
// least half its lifetime left: an Ed25519 signature then costs once per
// caller and call every TTL/2 instead of once per request. The token's jti
// is random; the decision that let a request through travels beside it
// (extauthz's x-portcullis-decision-id).
func (s *Signer) Token(id *policy.Identity, mcpMethod, mcpName string) (string, error) {
	key := tokenKey(id, mcpMethod, mcpName)
	now := s.now()
	if e, ok := s.tokens.Get(key); ok && now.Before(e.reuseBefore) {
		return e.token, nil
	}
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	tok, err := s.Sign(id, mcpMethod, mcpName, base64.RawURLEncoding.EncodeToString(jti[:]))
	if err != nil {
		return "", err
	}
	s.tokens.Put(key, cachedToken{tok, now.Add(s.ttl / 2)})
	return tok, nil
}

// tokenKey identifies what a token says: every claim but the times and
// jti, each length-prefixed so that no two identities share a key.
func tokenKey(id *policy.Identity, method, name string) string {
	var b []byte
	field := func(v string) {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	for _, v := range [...]string{id.Subject, id.Provider, id.Kind, id.ClientID, method, name} {
		field(v)
	}
	for _, list := range [...][]string{id.Roles, id.Scopes} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, v := range list {
			field(v)
		}
	}
	return string(b)
}

// tokenCacheSize bounds the reusable tokens: distinct (caller, call) pairs
// within half a TTL.
const tokenCacheSize = 8192

type cachedToken struct {
	token       string
	reuseBefore time.Time
}

// PublicKey returns the verification key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// JWKS returns the JSON Web Key Set (RFC 7517, RFC 8037) holding the
// verification key, as served at /identity/jwks.json.
func (s *Signer) JWKS() []byte {
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": s.kid,
		"x": base64.RawURLEncoding.EncodeToString(s.PublicKey()),
	}}})
	return b
}

// VerifyIdentityToken checks an identity token against key and audience
// (empty: not checked) and returns its claims.
func VerifyIdentityToken(token string, key ed25519.PublicKey, audience string, now time.Time) (*IdentityClaims, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(IdentityIssuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }),
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	var c IdentityClaims
	if _, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return key, nil }, opts...); err != nil {
		return nil, err
	}
	if c.Subject == "" && c.Kind != policy.KindAnonymous {
		return nil, errors.New("identity token has no subject")
	}
	return &c, nil
}
