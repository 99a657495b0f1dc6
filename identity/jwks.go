package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// This file holds the JWT provider's key set: fetching a JWKS from a URL,
// a file or OIDC discovery, parsing it with jwkset, and refreshing it in
// the background and, rate-limited, when a token names an unknown kid.
//
// keyfunc/v3 is not used: its storage fetches and starts its refresh
// goroutine when it is built (a constructor must not), retries a failed
// first fetch only at the refresh interval (a JWKS that is down at start
// would keep the provider unavailable for minutes), runs the unknown-kid
// refresh under its rate-limit wait timeout and makes readers wait for the
// limiter, and hands all keys to golang-jwt when a token has no kid. jwkset
// still does the JWK parsing and validation.

// jwksMaxBytes bounds a JWKS or discovery document.
const jwksMaxBytes = 1 << 20

// jwksMinRSABits is the smallest RSA key accepted from a JWKS.
const jwksMinRSABits = 2048

// Log attribute keys of the JWT provider.
const (
	jwtLogProvider = "provider"
	jwtLogSource   = "source"
	jwtLogError    = "error"
	jwtLogKIDs     = "kids"
	jwtLogKID      = "kid"
	jwtLogRetryIn  = "retry_in"
	jwtLogSkipped  = "skipped"
)

// jwksKey is one verification key of a key set. A refresh that finds the
// same key again keeps the same *jwksKey, so a cached verification can
// tell whether the key that verified it is still published.
type jwksKey struct {
	kid string
	alg string           // the JWK's alg; empty when it names none
	pub crypto.PublicKey // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// fits reports whether the key can verify a signature made with alg.
func (k *jwksKey) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pub.Curve.Params().Name == "P-256"
		case "ES384":
			return pub.Curve.Params().Name == "P-384"
		case "ES512":
			return pub.Curve.Params().Name == "P-521"
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func (k *jwksKey) equal(o *jwksKey) bool {
	if k.kid != o.kid || k.alg != o.alg {
		return false
	}
	eq, ok := k.pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(o.pub)
}

// jwksSet is an immutable snapshot of the published keys.
type jwksSet struct {
	byKID map[string][]*jwksKey
	all   []*jwksKey
}

// errJWKSKeyAmbiguous: a token without kid, and several keys fit its alg.
var errJWKSKeyAmbiguous = errors.New("several keys fit")

// find returns the key for a token's kid and alg, and whether it fits alg.
// Without a kid, the only key that fits alg is used; several are
// errJWKSKeyAmbiguous. It returns nil when no key has the kid, and a key
// with fits false when keys have the kid but none fits alg.
func (s *jwksSet) find(kid string, hasKID bool, alg string) (k *jwksKey, fits bool, err error) {
	if hasKID {
		keys := s.byKID[kid]
		for _, k := range keys {
			if k.fits(alg) {
				return k, true, nil
			}
		}
		if len(keys) > 0 {
			return keys[0], false, nil
		}
		return nil, false, nil
	}
	var found *jwksKey
	for _, k := range s.all {
		if !k.fits(alg) {
			continue
		}
		if found != nil {
			return nil, false, errJWKSKeyAmbiguous
		}
		found = k
	}
	return found, found != nil, nil
}

// contains reports whether k is still one of the set's keys.
func (s *jwksSet) contains(k *jwksKey) bool {
	if k.kid != "" {
		return slices.Contains(s.byKID[k.kid], k)
	}
	return slices.Contains(s.all, k)
}

func (s *jwksSet) kids() []string {
	kids := make([]string, 0, len(s.all))
	for _, k := range s.all {
		kids = append(kids, k.kid)
	}
	return kids
}

// parseJWKS parses a JWK Set and keeps its signature verification keys:
// RSA (2048 bits or more), EC P-256/384/521 and Ed25519 public keys whose
// use, when given, is "sig" and whose key_ops, when given, include
// "verify". Other keys are skipped with a reason; a set without any usable
// key is an error. Keys equal to one of prev's are taken from prev.
func parseJWKS(data []byte, prev *jwksSet) (set *jwksSet, skipped []string, err error) {
	var raw jwkset.JWKSMarshal
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("decode JWKS: %w", err)
	}
	set = &jwksSet{byKID: make(map[string][]*jwksKey, len(raw.Keys))}
	skip := func(m jwkset.JWKMarshal, why string) {
		skipped = append(skipped, fmt.Sprintf("kid %q (kty %q): %s", m.KID, m.KTY, why))
	}
	for _, m := range raw.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			skip(m, "use is not sig")
			continue
		}
		if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
			skip(m, "key_ops lacks verify")
			continue
		}
		// Private false: any private or symmetric material is ignored, and
		// an "oct" key is refused.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			skip(m, err.Error())
			continue
		}
		k := &jwksKey{kid: m.KID, alg: string(m.ALG)}
		switch pub := jwk.Key().(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < jwksMinRSABits {
				skip(m, fmt.Sprintf("RSA key of %d bits", pub.N.BitLen()))
				continue
			}
			k.pub = pub
		case *ecdsa.PublicKey, ed25519.PublicKey:
			k.pub = pub
		default:
			skip(m, fmt.Sprintf("not a signature key (%T)", pub))
			continue
		}
		if prev != nil {
			for _, old := range prev.all {
				if old.equal(k) {
					k = old
					break
				}
			}
		}
		set.all = append(set.all, k)
		if k.kid != "" {
			set.byKID[k.kid] = append(set.byKID[k.kid], k)
		}
	}
	if len(set.all) == 0 {
		return nil, skipped, fmt.Errorf("the JWKS has no usable signature key (%d keys)", len(raw.Keys))
	}
	return set, skipped, nil
}

// refresh loads the key set once: discovery first when configured and not
// yet done, then the JWKS from its URL or file. On failure the keys in use
// stay. Fetches are serialized; a caller waiting for another fetch gives up
// when ctx ends.
func (j *JWT) refresh(ctx context.Context) error {
	select {
	case j.fetchSem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-j.fetchSem }()

	var (
		data   []byte
		source string
		err    error
	)
	switch {
	case j.opts.JWKSFile != "":
		source = j.opts.JWKSFile
		data, err = jwksReadFile(source)
	default:
		if j.jwksURL == "" {
			u, err := j.discover(ctx)
			if err != nil {
				return err
			}
			j.jwksURL = u
			j.logger.LogAttrs(ctx, slog.LevelInfo, "OIDC discovery done",
				slog.String(jwtLogProvider, j.name), slog.String(jwtLogSource, u))
		}
		source = j.jwksURL
		data, err = j.httpGet(ctx, source)
	}
	if err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", source, err)
	}
	prev := j.keys.Load()
	set, skipped, err := parseJWKS(data, prev)
	if len(skipped) > 0 {
		j.logger.LogAttrs(ctx, slog.LevelDebug, "JWKS keys skipped",
			slog.String(jwtLogProvider, j.name), slog.String(jwtLogSource, source), slog.Any(jwtLogSkipped, skipped))
	}
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", source, err)
	}
	j.keys.Store(set)
	level := slog.LevelDebug
	if prev == nil || !slices.Equal(prev.all, set.all) {
		level = slog.LevelInfo
	}
	j.logger.LogAttrs(ctx, level, "JWKS loaded",
		slog.String(jwtLogProvider, j.name), slog.String(jwtLogSource, source), slog.Any(jwtLogKIDs, set.kids()))
	return nil
}

// reload is refresh, counted and traced: a portcullis.jwks.refresh span
// (under the request's span for an unknown kid, a root span for a
// scheduled refresh when Options.TracerProvider is set) with the HTTP calls
// as its children.
func (j *JWT) reload(ctx context.Context, trigger string) error {
	var span trace.Span
	if t := tracerFor(ctx, j.opts.TracerProvider); t != nil {
		ctx, span = t.Start(ctx, "portcullis.jwks.refresh", trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(attribute.String(attrProvider, j.name), attribute.String(attrJWKSTrigger, trigger)))
	}
	err := j.refresh(ctx)
	if ctx.Err() != nil && err != nil {
		// Stopping, or the request gave up waiting: not the JWKS's fault.
		if span != nil {
			span.End()
		}
		return err
	}
	result := resultSuccess
	if err != nil {
		result = resultFailure
	}
	j.refreshes.Add(ctx, 1, metric.WithAttributes(attribute.String(labelProvider, j.name),
		attribute.String(labelTrigger, trigger), attribute.String(labelResult, result)))
	if span != nil {
		span.SetAttributes(attribute.String(attrJWKSResult, result))
		if set := j.keys.Load(); set != nil {
			span.SetAttributes(attribute.Int(attrJWKSKeys, len(set.all)))
		}
		if err != nil {
			span.SetStatus(codes.Error, "JWKS refresh failed")
		}
		span.End()
	}
	return err
}

// refreshUnknownKID refreshes the keys because a token names a kid that is
// not published, at most once per UnknownKIDRefreshInterval. A caller that
// arrives while such a refresh runs waits for it. It reports whether the
// keys may have changed.
func (j *JWT) refreshUnknownKID(ctx context.Context, kid string) bool {
	j.kidMu.Lock()
	if ch := j.kidRefreshing; ch != nil {
		j.kidMu.Unlock()
		select {
		case <-ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
	now := j.now()
	if !j.kidLast.IsZero() && now.Sub(j.kidLast) < j.opts.UnknownKIDRefreshInterval {
		j.kidMu.Unlock()
		return false
	}
	j.kidLast = now
	ch := make(chan struct{})
	j.kidRefreshing = ch
	j.kidMu.Unlock()

	err := j.reload(ctx, triggerUnknownKID)

	j.kidMu.Lock()
	j.kidRefreshing = nil
	close(ch)
	j.kidMu.Unlock()
	if err != nil {
		j.logger.LogAttrs(ctx, slog.LevelWarn, "JWKS refresh for an unknown kid failed",
			slog.String(jwtLogProvider, j.name), slog.String(jwtLogKID, kid), slog.Any(jwtLogError, err))
		return false
	}
	return true
}

// runKeys fetches the keys until ctx ends: at once, then every
// RefreshInterval; a failed fetch is retried with a jittered exponential
// backoff from retryBase up to retryMax (and never later than the next
// regular refresh).
func (j *JWT) runKeys(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		next := j.opts.RefreshInterval
		if err := j.reload(ctx, triggerScheduled); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			next = min(j.backoff(failures), next)
			level := slog.LevelWarn
			if !j.Ready() {
				level = slog.LevelError
			}
			j.logger.LogAttrs(ctx, level, "JWKS refresh failed",
				slog.String(jwtLogProvider, j.name), slog.Any(jwtLogError, err), slog.Duration(jwtLogRetryIn, next))
		} else {
			failures = 0
		}
		timer.Reset(next)
	}
}

func (j *JWT) backoff(failures int) time.Duration {
	d := j.retryBase
	for i := 1; i < failures && d < j.retryMax; i++ {
		d *= 2
	}
	d = min(d, j.retryMax)
	// ±20% jitter, so replicas do not fetch in step.
	return d - d/5 + rand.N(2*d/5+1)
}

// oidcConfiguration is the part of an OpenID Provider's configuration
// document we read.
type oidcConfiguration struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// discover reads the issuer's OpenID configuration and returns its
// jwks_uri. The document's issuer must be the configured one (OpenID
// Connect Discovery 1.0, section 4.3).
func (j *JWT) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(j.opts.Issuer, "/") + "/.well-known/openid-configuration"
	data, err := j.httpGet(ctx, u)
	if err != nil {
		return "", fmt.Errorf("OIDC discovery %s: %w", u, err)
	}
	var doc oidcConfiguration
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("OIDC discovery %s: decode: %w", u, err)
	}
	if doc.Issuer != j.opts.Issuer {
		return "", fmt.Errorf("OIDC discovery %s: the document's issuer %q is not the configured issuer %q", u, doc.Issuer, j.opts.Issuer)
	}
	if err := jwtCheckURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("OIDC discovery %s: jwks_uri: %w", u, err)
	}
	return doc.JWKSURI, nil
}

// httpGet fetches a JSON document of at most jwksMaxBytes.
func (j *JWT) httpGet(ctx context.Context, u string) ([]byte, error) {
	if j.client.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, jwtDefaultHTTPTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	sctx, span := startHTTPSpan(ctx, tracerFor(ctx, nil), http.MethodGet, j.name, req.URL)
	if span != nil {
		req = req.WithContext(sctx)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		endHTTPSpan(span, 0, true)
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		endHTTPSpan(span, resp.StatusCode, true)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	data, err := jwksReadAll(resp.Body)
	endHTTPSpan(span, resp.StatusCode, err != nil)
	return data, err
}

func jwksReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return jwksReadAll(f)
}

func jwksReadAll(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, jwksMaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > jwksMaxBytes {
		return nil, fmt.Errorf("the document is larger than %d bytes", jwksMaxBytes)
	}
	return data, nil
}

// jwtCheckURL accepts an absolute http or https URL.
func jwtCheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}
