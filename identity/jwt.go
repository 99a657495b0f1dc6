package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/policy"
)

// Defaults of [JWTOptions].
const (
	jwtDefaultClockSkew        = 30 * time.Second
	jwtDefaultRefresh          = 5 * time.Minute
	jwtDefaultUnknownKIDPeriod = time.Minute
	jwtDefaultHTTPTimeout      = 10 * time.Second
	jwtDefaultCacheSize        = 100_000
	// jwtNegativeTTL is how long a token that failed verification for good
	// (bad signature, expired, wrong audience) is remembered, so that
	// repeating it does not cost a signature check each time.
	jwtNegativeTTL = 30 * time.Second
	// jwtRetryBase and jwtRetryMax bound the backoff of a failed JWKS fetch.
	jwtRetryBase = time.Second
	jwtRetryMax  = 30 * time.Second
)

func jwtDefaultAlgorithms() []string { return []string{"RS256", "ES256", "EdDSA"} }

// jwtAsymmetric reports whether alg is a JWS algorithm the provider can
// verify: RSA PKCS#1 v1.5, RSA-PSS, ECDSA and EdDSA. "none" and the HMAC
// algorithms are never accepted: a published public key must not become an
// HMAC secret.
func jwtAsymmetric(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return true
	}
	return false
}

// JWTOptions configure a [JWT] provider. The zero value of each optional
// field means its default.
type JWTOptions struct {
	// Name is the provider name (input.identity.provider).
	Name string
	// Issuer is required; a token's iss must equal it exactly. A token from
	// another issuer is left to the next provider (ErrNotMine).
	Issuer string
	// Audiences are the accepted audiences (at least one); a token's aud
	// must contain one of them (RFC 8707). The caller adds authn.resource.
	Audiences []string
	// Exactly one key source: JWKSURL, JWKSFile, or Discovery (GET
	// Issuer + "/.well-known/openid-configuration", whose issuer must be
	// Issuer, then its jwks_uri).
	JWKSURL   string
	JWKSFile  string
	Discovery bool
	// Algorithms is the allow-list of JWS algorithms; default RS256, ES256,
	// EdDSA. Only asymmetric algorithms may be listed: "none" and HS* are
	// refused.
	Algorithms []string
	// ClockSkew is allowed on exp, nbf and iat; default 30s.
	ClockSkew time.Duration
	// Claims names the claims that map to identity fields.
	Claims ClaimNames
	// RefreshInterval is how often the keys are fetched again (the JWKS
	// file read again); default 5m.
	RefreshInterval time.Duration
	// UnknownKIDRefreshInterval: a token naming an unknown kid triggers at
	// most one refresh per this interval; default 1m.
	UnknownKIDRefreshInterval time.Duration
	// HTTPClient fetches the discovery document and the JWKS; nil means a
	// client with a 10s timeout.
	HTTPClient *http.Client
	// CacheSize is the most verified tokens kept; default 100,000; a
	// negative value disables the cache.
	CacheSize int64
	// Logger receives key-set events (never a token); nil discards.
	Logger *slog.Logger
	// MeterProvider provides the cache and key refresh metrics; nil means
	// none.
	MeterProvider metric.MeterProvider
	// TracerProvider traces key refreshes (portcullis.jwks.refresh, with
	// the HTTP calls under it); nil traces only the refreshes made for a
	// request whose context holds a recording span.
	TracerProvider trace.TracerProvider
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ClaimNames are the claims that map to identity fields. A dotted name
// reads a nested claim ("realm_access.roles" for Keycloak) unless a
// top-level claim has the whole name (namespaced claims such as
// "https://example.com/roles").
type ClaimNames struct {
	// Subject: default "sub".
	Subject string
	// Roles: default "roles"; an array of strings or a space-separated
	// string.
	Roles string
	// Scopes: default "scope"; a space-separated string or an array of
	// strings; "scp" is read when the claim is absent.
	Scopes string
	// ClientID: default "client_id"; "azp" then "client_id" are read when
	// the claim is absent.
	ClientID string
}

// JWT authenticates bearer tokens that are JWTs (JWS compact form) signed
// by one issuer, with keys from a JWKS.
//
// Build it with [NewJWT], then start [JWT.Run], which fetches the keys,
// keeps them fresh and holds the verification cache; until the first fetch
// succeeds, Authenticate answers Unavailable. A JWT is safe for concurrent
// use.
//
// A token is accepted when its alg is in the allow-list, its signature
// verifies with the JWKS key named by its kid (or, without a kid, the only
// key that fits its alg) and of the type its alg needs, its iss is the
// issuer, its aud holds one of the audiences, its exp is present and not
// past, and its nbf and iat are not in the future, with ClockSkew on the
// three times. A token naming an unknown kid makes the keys be fetched
// again, at most once per UnknownKIDRefreshInterval.
//
// A verified token is cached under its digest until its exp, as long as
// the key that verified it stays published; a token that failed for good
// (bad signature, expired, wrong audience) is remembered for 30s.
type JWT struct {
	name   string
	opts   JWTOptions // a copy, defaults applied
	parser *jwt.Parser
	logger *slog.Logger
	now    func() time.Time
	client *http.Client

	keys     atomic.Pointer[jwksSet]
	fetchSem chan struct{} // one fetch at a time
	jwksURL  string        // guarded by fetchSem; set by discovery

	kidMu         sync.Mutex
	kidLast       time.Time     // last unknown-kid refresh
	kidRefreshing chan struct{} // closed when the running one ends

	cache   jwtCache
	bufs    sync.Pool // *[]byte, to hash a token without allocating
	running atomic.Bool

	cacheMetrics cacheMetrics
	refreshes    metric.Int64Counter

	// Tests shrink these.
	retryBase, retryMax time.Duration
	negativeTTL         time.Duration

	// lookups counts signing-key lookups, that is signature checks
	// attempted; tests read it to see the cache work.
	lookups atomic.Int64
}

var _ Provider = (*JWT)(nil)

// NewJWT validates opts and returns a provider. It starts nothing and
// fetches nothing: see [JWT.Run]. Every problem is reported, joined.
func NewJWT(opts *JWTOptions) (*JWT, error) {
	if opts == nil {
		return nil, errors.New("jwt provider: no options")
	}
	o := *opts
	o.Audiences = slices.Clone(o.Audiences)
	o.Algorithms = slices.Clone(o.Algorithms)
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if o.Name == "" {
		bad("name: required")
	}
	if o.Issuer == "" {
		bad("issuer: required")
	}
	if len(o.Audiences) == 0 {
		bad("audiences: at least one is required")
	}
	for i, a := range o.Audiences {
		if a == "" {
			bad("audiences[%d]: empty", i)
		}
	}
	sources := 0
	if o.JWKSURL != "" {
		sources++
		if err := jwtCheckURL(o.JWKSURL); err != nil {
			bad("jwks_url: %w", err)
		}
	}
	if o.JWKSFile != "" {
		sources++
	}
	if o.Discovery {
		sources++
		if o.Issuer != "" {
			if err := jwtCheckURL(o.Issuer); err != nil {
				bad("issuer: discovery needs an http(s) URL: %w", err)
			}
		}
	}
	if sources != 1 {
		bad("exactly one of jwks_url, jwks_file and discovery is required")
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = jwtDefaultAlgorithms()
	}
	for i, alg := range o.Algorithms {
		if !jwtAsymmetric(alg) {
			bad("algorithms[%d]: %q is not allowed: only RS*, PS*, ES* and EdDSA are", i, alg)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"clock_skew", &o.ClockSkew, jwtDefaultClockSkew},
		{"refresh_interval", &o.RefreshInterval, jwtDefaultRefresh},
		{"unknown_kid_refresh_interval", &o.UnknownKIDRefreshInterval, jwtDefaultUnknownKIDPeriod},
	} {
		switch {
		case *d.v < 0:
			bad("%s: negative", d.name)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("jwt provider %q: %w", o.Name, err)
	}

	jwtSetDefault(&o.Claims.Subject, "sub")
	jwtSetDefault(&o.Claims.Roles, "roles")
	jwtSetDefault(&o.Claims.Scopes, "scope")
	jwtSetDefault(&o.Claims.ClientID, "client_id")
	if o.CacheSize == 0 {
		o.CacheSize = jwtDefaultCacheSize
	}
	j := &JWT{
		name:        o.Name,
		logger:      o.Logger,
		now:         o.Now,
		client:      o.HTTPClient,
		fetchSem:    make(chan struct{}, 1),
		jwksURL:     o.JWKSURL,
		retryBase:   jwtRetryBase,
		retryMax:    jwtRetryMax,
		negativeTTL: jwtNegativeTTL,
	}
	if j.logger == nil {
		j.logger = slog.New(slog.DiscardHandler)
	}
	if j.now == nil {
		j.now = time.Now
	}
	if j.client == nil {
		j.client = &http.Client{Timeout: jwtDefaultHTTPTimeout}
	}
	j.cache.size = o.CacheSize
	j.opts = o
	if o.CacheSize > 0 {
		j.cacheMetrics = newCacheMetrics(o.MeterProvider, o.Name, cacheJWT)
	}
	j.refreshes, _ = meter(o.MeterProvider).Int64Counter(metricJWKSRefreshes, metric.WithUnit("{refresh}"),
		metric.WithDescription("JWKS fetches (discovery included), by provider, trigger (scheduled or unknown_kid) and result."))
	j.parser = jwt.NewParser(
		jwt.WithValidMethods(o.Algorithms),
		jwt.WithIssuer(o.Issuer),
		jwt.WithAudience(o.Audiences...),
		jwt.WithLeeway(o.ClockSkew),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(j.now),
	)
	return j, nil
}

func jwtSetDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// Name returns the provider name.
func (j *JWT) Name() string { return j.name }

// Ready reports whether the keys have been loaded at least once.
func (j *JWT) Ready() bool { return j.keys.Load() != nil }

// Run fetches the keys (after OIDC discovery when configured), retrying
// until the first fetch succeeds, then refreshes them every
// RefreshInterval until ctx ends; a failed refresh keeps the keys in use.
// Run also holds the cache of verified tokens: without a running Run,
// every token is verified. It returns nil when ctx ends, and an error if
// the provider is already running.
func (j *JWT) Run(ctx context.Context) error {
	if !j.running.CompareAndSwap(false, true) {
		return fmt.Errorf("jwt provider %q: already running", j.name)
	}
	defer j.running.Store(false)
	if err := j.cache.open(); err != nil {
		return fmt.Errorf("jwt provider %q: cache: %w", j.name, err)
	}
	defer j.cache.close()
	j.runKeys(ctx)
	return nil
}

// Authenticate verifies the bearer token of r (see [JWT] for the rules).
// It returns ErrNoCredential without a bearer token, ErrNotMine for a token
// that is not a JWT or whose unverified iss is another issuer, an Invalid
// *Error with a client-safe Description and the CredentialKey for a bad
// token, and an Unavailable *Error while no keys are loaded.
//
// The Identity of the Result shares its Roles, Scopes and Claims with the
// cache: they must not be modified.
func (j *JWT) Authenticate(ctx context.Context, r *Request) (*Result, error) {
	tok, err := BearerToken(j.name, r.Headers)
	if err != nil {
		return nil, err
	}
	if strings.Count(tok, ".") != 2 {
		return nil, ErrNotMine // not a JWS in compact form
	}
	digest := j.digest(tok)
	if e, ok := j.cache.get(digest); ok {
		if res, err := j.cached(e); res != nil || err != nil {
			j.cacheMetrics.record(ctx, true)
			return res, err
		}
	}
	if !jwtCompact(tok) {
		return nil, ErrNotMine
	}
	credKey := CredentialKey(j.name, tok)
	if err := j.precheck(tok); err != nil {
		if ie, ok := errors.AsType[*Error](err); ok {
			ie.CredentialKey = credKey
		}
		return nil, err
	}
	if !j.Ready() {
		return nil, &Error{Kind: Unavailable, Provider: j.name, Description: "signing keys unavailable",
			Err: errors.New("the JWKS has not been loaded yet"), CredentialKey: credKey}
	}
	// A miss is a signature to verify: tokens of other issuers and
	// malformed ones are not this cache's business.
	j.cacheMetrics.record(ctx, false)

	var used *jwksKey
	claims := jwt.MapClaims{}
	_, err = j.parser.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		k, err := j.signingKey(ctx, t)
		used = k
		if err != nil {
			return nil, err
		}
		return k.pub, nil
	})
	if err != nil {
		ie, permanent := j.verifyError(err, claims)
		ie.CredentialKey = credKey
		if permanent {
			j.cache.set(&jwtCacheEntry{digest: digest, err: ie}, j.negativeTTL)
		}
		return nil, ie
	}

	res := &Result{
		Identity:         j.identity(claims),
		CredentialHeader: "authorization",
		CredentialKey:    credKey,
	}
	if exp, _ := claims.GetExpirationTime(); exp != nil { // required, so present
		e := &jwtCacheEntry{digest: digest, res: res, exp: exp.Time, key: used}
		j.cache.set(e, exp.Add(j.opts.ClockSkew).Sub(j.now()))
	}
	out := *res
	return &out, nil
}

// digest returns the SHA-256 of tok, the cache key. The token is copied
// into a pooled buffer: converting it to []byte would allocate.
func (j *JWT) digest(tok string) [sha256.Size]byte {
	bp, _ := j.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := append((*bp)[:0], tok...)
	d := sha256.Sum256(b)
	*bp = b[:0]
	j.bufs.Put(bp)
	return d
}

// cached answers from a cache entry: a copy of the Result while the token
// has not expired and the key that verified it is still published, or the
// remembered error. Neither means the token must be verified again.
func (j *JWT) cached(e *jwtCacheEntry) (*Result, error) {
	if e.err != nil {
		ie := *e.err
		return nil, &ie
	}
	if !j.now().Before(e.exp.Add(j.opts.ClockSkew)) {
		return nil, &Error{Kind: Invalid, Provider: j.name, Description: "token expired",
			Err: jwt.ErrTokenExpired, CredentialKey: e.res.CredentialKey}
	}
	if set := j.keys.Load(); set == nil || !set.contains(e.key) {
		return nil, nil
	}
	out := *e.res
	return &out, nil
}

// jwtHeader is the part of a JOSE header read before verification.
type jwtHeader struct {
	Alg  string   `json:"alg"`
	Crit []string `json:"crit"`
}

// precheck reads the unverified header and iss: it returns ErrNotMine for a
// token that is not a JWT or is another issuer's, and an Invalid *Error for
// a malformed JWT or one of this issuer whose alg is not allowed.
func (j *JWT) precheck(tok string) error {
	h64, rest, _ := strings.Cut(tok, ".")
	p64, _, _ := strings.Cut(rest, ".")
	hb, err := base64.RawURLEncoding.DecodeString(h64)
	if err != nil || !json.Valid(hb) {
		return ErrNotMine // not a JWS
	}
	pb, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return j.invalid("malformed token", fmt.Errorf("payload: %w", err))
	}
	var peek struct {
		Iss any `json:"iss"`
	}
	if err := json.Unmarshal(pb, &peek); err != nil {
		return j.invalid("malformed token", fmt.Errorf("payload: %w", err))
	}
	if iss, _ := peek.Iss.(string); iss != j.opts.Issuer {
		return ErrNotMine
	}
	var hdr jwtHeader
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return j.invalid("malformed token", fmt.Errorf("JOSE header: %w", err))
	}
	if !slices.Contains(j.opts.Algorithms, hdr.Alg) {
		return j.invalid("algorithm not allowed", fmt.Errorf("alg %q is not in the allow-list", hdr.Alg))
	}
	if len(hdr.Crit) > 0 {
		return j.invalid("unsupported critical header", fmt.Errorf("crit %q", hdr.Crit))
	}
	return nil
}

// The base64url alphabet as bitmaps: bit c of jwtB64Lo for c < 64 ('-',
// '0'-'9'), bit c-64 of jwtB64Hi for 64 <= c < 128 ('A'-'Z', '_', 'a'-'z').
const (
	jwtB64Lo uint64 = 0x03FF_2000_0000_0000
	jwtB64Hi uint64 = 0x07FF_FFFE_87FF_FFFE
)

// jwtCompact reports whether tok has the shape of a JWS in compact form:
// three dot-separated base64url segments, the first two not empty.
func jwtCompact(tok string) bool {
	dots, seg := 0, 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c == '.' {
			if seg == 0 && dots < 2 {
				return false
			}
			dots++
			seg = 0
			continue
		}
		m := jwtB64Lo
		if c >= 64 {
			m = jwtB64Hi
		}
		if c >= 128 || m>>(c&63)&1 == 0 {
			return false
		}
		seg++
	}
	return dots == 2
}

// jwtKeyError is a failed key lookup, returned through golang-jwt's
// keyfunc.
type jwtKeyError struct {
	kind ErrorKind
	desc string
	err  error
}

func (e *jwtKeyError) Error() string { return e.desc + ": " + e.err.Error() }
func (e *jwtKeyError) Unwrap() error { return e.err }

// signingKey finds the key for a token: by kid, refreshing the keys once
// (rate-limited) when the kid is unknown; without a kid, the only key that
// fits the alg.
func (j *JWT) signingKey(ctx context.Context, t *jwt.Token) (*jwksKey, error) {
	j.lookups.Add(1)
	alg := t.Method.Alg()
	kidv, hasKID := t.Header["kid"]
	kid, ok := kidv.(string)
	if hasKID && !ok {
		return nil, &jwtKeyError{Invalid, "malformed token", errors.New("kid is not a string")}
	}
	set := j.keys.Load()
	if set == nil {
		return nil, &jwtKeyError{Unavailable, "signing keys unavailable", errors.New("no JWKS loaded")}
	}
	k, fits, err := set.find(kid, hasKID, alg)
	if err != nil {
		return nil, &jwtKeyError{Invalid, "token has no kid and the key set has several keys",
			fmt.Errorf("%w for %s", err, alg)}
	}
	if k == nil && hasKID && j.refreshUnknownKID(ctx, kid) {
		set = j.keys.Load()
		k, fits, _ = set.find(kid, hasKID, alg)
	}
	switch {
	case k == nil && hasKID:
		return nil, &jwtKeyError{Invalid, "unknown signing key", fmt.Errorf("kid %q is not in the JWKS", kid)}
	case k == nil:
		return nil, &jwtKeyError{Invalid, "unknown signing key", fmt.Errorf("no key without kid fits %s", alg)}
	case !fits:
		return nil, &jwtKeyError{Invalid, "signing key does not match the algorithm",
			fmt.Errorf("key %q (alg %q, %T) cannot verify %s", kid, k.alg, k.pub, alg)}
	}
	return k, nil
}

// verifyError maps a golang-jwt error to an *Error with a client-safe
// description. permanent reports that the same token would fail the same
// way later, so the failure may be cached.
func (j *JWT) verifyError(err error, claims jwt.MapClaims) (ie *Error, permanent bool) {
	if ke, ok := errors.AsType[*jwtKeyError](err); ok {
		return &Error{Kind: ke.kind, Provider: j.name, Description: ke.desc, Err: err}, false
	}
	desc, permanent := "invalid token", true
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		desc = "malformed token"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		desc = "algorithm not allowed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		desc = "signature invalid"
	case errors.Is(err, jwt.ErrTokenExpired):
		desc = "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		desc, permanent = "token not yet valid", false
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		desc, permanent = "token issued in the future", false
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		desc = "invalid audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		desc = "invalid issuer"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if _, ok := claims["exp"]; !ok {
			desc = "token has no expiration"
		} else {
			desc = "invalid audience"
		}
	case errors.Is(err, jwt.ErrInvalidType):
		desc = "invalid claims"
	}
	return &Error{Kind: Invalid, Provider: j.name, Description: desc, Err: err}, permanent
}

func (j *JWT) invalid(desc string, err error) *Error {
	return &Error{Kind: Invalid, Provider: j.name, Description: desc, Err: err}
}

// identity maps verified claims to the identity a policy sees.
func (j *JWT) identity(claims jwt.MapClaims) policy.Identity {
	m := map[string]any(claims)
	names := &j.opts.Claims
	id := policy.Identity{
		Authenticated: true,
		Provider:      j.name,
		Kind:          policy.KindJWT,
		Claims:        m,
	}
	id.Subject, _ = jwtClaim(m, names.Subject).(string)
	for _, name := range []string{names.ClientID, "azp", "client_id"} {
		if v, ok := jwtClaim(m, name).(string); ok && v != "" {
			id.ClientID = v
			break
		}
	}
	id.Roles = jwtStrings(jwtClaim(m, names.Roles))
	scopes := jwtClaim(m, names.Scopes)
	if scopes == nil {
		scopes = m["scp"]
	}
	id.Scopes = jwtStrings(scopes)
	return id
}

// jwtClaim returns the claim named name: the top-level claim of that name,
// else the nested claim at the dotted path; nil when absent.
func jwtClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	if !strings.Contains(name, ".") {
		return nil
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}

// jwtStrings reads a space-separated string or an array of strings
// (other elements are skipped); never nil.
func jwtStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return []string{}
}

// jwtCacheEntry is a verification outcome: a Result until exp, verified by
// key, or an error.
type jwtCacheEntry struct {
	digest [sha256.Size]byte // of the token
	res    *Result
	exp    time.Time
	key    *jwksKey
	err    *Error
}

// jwtCache is a ristretto cache of verification outcomes keyed by the
// token's SHA-256: the first 8 bytes are ristretto's key, and an entry
// holds the whole digest, compared on every hit. It exists only while Run
// runs: ristretto starts goroutines, and it must not be closed while in
// use. Without it, get misses and set does nothing.
type jwtCache struct {
	size int64 // negative: no cache

	mu sync.RWMutex
	c  *ristretto.Cache[uint64, *jwtCacheEntry]
}

func (jc *jwtCache) open() error {
	if jc.size < 0 {
		return nil
	}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *jwtCacheEntry]{
		NumCounters:        10 * jc.size,
		MaxCost:            jc.size,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return err
	}
	jc.mu.Lock()
	jc.c = c
	jc.mu.Unlock()
	return nil
}

func (jc *jwtCache) close() {
	jc.mu.Lock()
	defer jc.mu.Unlock()
	if jc.c != nil {
		jc.c.Close()
		jc.c = nil
	}
}

func jwtCacheKey(d *[sha256.Size]byte) uint64 { return binary.LittleEndian.Uint64(d[:8]) }

func (jc *jwtCache) get(d [sha256.Size]byte) (*jwtCacheEntry, bool) {
	jc.mu.RLock()
	defer jc.mu.RUnlock()
	if jc.c == nil {
		return nil, false
	}
	e, ok := jc.c.Get(jwtCacheKey(&d))
	if !ok || e.digest != d {
		return nil, false
	}
	return e, true
}

// set stores e for ttl and waits until it is visible, so the next request
// with the same token hits; a non-positive ttl stores nothing.
func (jc *jwtCache) set(e *jwtCacheEntry, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	jc.mu.RLock()
	defer jc.mu.RUnlock()
	if jc.c != nil && jc.c.SetWithTTL(jwtCacheKey(&e.digest), e, 1, ttl) {
		jc.c.Wait()
	}
}
