package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis-mcp/portcullis/policy"
)

// IntrospectionOptions configure an [Introspection] provider.
type IntrospectionOptions struct {
	// Name is the provider's name, reported in the identity and in errors.
	// Default "introspection".
	Name string
	// URL is the authorization server's introspection endpoint. Required.
	URL string
	// ClientID and ClientSecret authenticate Portcullis to the endpoint
	// (HTTP Basic, RFC 6749 section 2.3.1). Both are required. ClientSecret
	// is the secret itself: the caller reads it from its file.
	ClientID     string
	ClientSecret string
	// CacheTTL is how long an answer (active or not) is remembered; never
	// past the token's exp. Default 60s.
	CacheTTL time.Duration
	// Timeout bounds one introspection request. Default 2s.
	Timeout time.Duration
	// Audiences, when set, are the accepted audiences: the response's aud
	// must hold one of them.
	Audiences []string
	// HTTPClient sends the requests. Default: a client that does not follow
	// redirects (they would carry the token elsewhere).
	HTTPClient *http.Client
	// CacheSize bounds the answers remembered. Default 10000.
	CacheSize int
	// Logger receives configuration problems the endpoint reveals (a 4xx:
	// bad client credentials); nil discards.
	Logger *slog.Logger
	// MeterProvider provides the cache and request metrics; nil means none.
	MeterProvider metric.MeterProvider
	// TracerProvider traces the requests to the endpoint (a client span);
	// nil uses the provider of the recording span in Authenticate's
	// context, if any.
	TracerProvider trace.TracerProvider
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Introspection authenticates opaque bearer tokens by asking the
// authorization server (OAuth 2.0 Token Introspection, RFC 7662).
//
// Answers are cached under the token's [CredentialKey] while Run is
// running, and concurrent requests with the same token make one call to the
// endpoint. When the endpoint cannot answer (down, slow, 5xx, 4xx, an
// unreadable response), Authenticate returns an Unavailable error, which
// is neither cached nor counted toward lockout.
//
// Build one with [NewIntrospection]; the zero value is not usable.
// Introspection is safe for concurrent use.
type Introspection struct {
	name       string
	endpoint   string
	authHeader string // never logged
	cacheTTL   time.Duration
	timeout    time.Duration
	audiences  []string
	client     *http.Client
	logger     *slog.Logger
	now        func() time.Time

	cache  credCache[*introspected]
	flight singleflight.Group

	endpointURL  *url.URL
	tracer       trace.TracerProvider
	cacheMetrics cacheMetrics
	requests     metric.Int64Counter
	duration     metric.Float64Histogram
	durationOpts []metric.RecordOption
}

const (
	introspectionDefaultTTL     = 60 * time.Second
	introspectionDefaultTimeout = 2 * time.Second
	introspectionDefaultSize    = 10000
	// introspectionMaxBody bounds the response read from the endpoint.
	introspectionMaxBody = 1 << 20
	// introspectionMaxUnix is the last second of year 9999; a larger exp,
	// iat or nbf is garbage.
	introspectionMaxUnix = 253402300799
)

// introspectionUnavailable is the client-visible description of every
// Unavailable error.
const introspectionUnavailable = "the authorization server is unavailable"

// introspected is the endpoint's answer about a token, as cached.
type introspected struct {
	// invalid is the client-safe reason the token is refused; empty when
	// it is accepted and identity is set.
	invalid  string
	detail   string
	identity policy.Identity
	// expires is when the answer must be asked again (by opts.Now).
	expires time.Time
}

// NewIntrospection returns an introspection provider. It checks opts and
// makes no request.
func NewIntrospection(opts *IntrospectionOptions) (*Introspection, error) {
	o := IntrospectionOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = "introspection"
	}
	var errs []error
	if u, err := url.Parse(o.URL); o.URL == "" {
		errs = append(errs, errors.New("url: required"))
	} else if err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http" {
		errs = append(errs, fmt.Errorf("url: %q is not an http(s) URL", o.URL))
	}
	if o.ClientID == "" {
		errs = append(errs, errors.New("client_id: required"))
	}
	if o.ClientSecret == "" {
		errs = append(errs, errors.New("client secret: required (client_secret_file is empty or unset)"))
	}
	if o.CacheTTL < 0 {
		errs = append(errs, errors.New("cache_ttl: must not be negative"))
	}
	if o.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if o.CacheSize < 0 {
		errs = append(errs, errors.New("cache size: must not be negative"))
	}
	for i, a := range o.Audiences {
		if a == "" {
			errs = append(errs, fmt.Errorf("audiences[%d]: empty", i))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("introspection provider %q: %w", o.Name, errors.Join(errs...))
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = introspectionDefaultTTL
	}
	if o.Timeout == 0 {
		o.Timeout = introspectionDefaultTimeout
	}
	if o.CacheSize == 0 {
		o.CacheSize = introspectionDefaultSize
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// RFC 6749 section 2.3.1: the client id and secret are
	// form-urlencoded before they are joined and base64-encoded.
	creds := url.QueryEscape(o.ClientID) + ":" + url.QueryEscape(o.ClientSecret)
	i := &Introspection{
		name:       o.Name,
		endpoint:   o.URL,
		authHeader: "Basic " + base64.StdEncoding.EncodeToString([]byte(creds)),
		cacheTTL:   o.CacheTTL,
		timeout:    o.Timeout,
		audiences:  slices.Clone(o.Audiences),
		client:     o.HTTPClient,
		logger:     o.Logger,
		now:        o.Now,
	}
	i.cache.size = int64(o.CacheSize)
	i.endpointURL, _ = url.Parse(o.URL)
	i.tracer = o.TracerProvider
	i.cacheMetrics = newCacheMetrics(o.MeterProvider, o.Name, cacheIntrospection)
	i.requests, _ = meter(o.MeterProvider).Int64Counter(metricIntrospectionRequests, metric.WithUnit("{request}"),
		metric.WithDescription("Requests to the introspection endpoint, by provider and result (active, inactive or error)."))
	i.duration = durationHistogram(o.MeterProvider, metricIntrospectionDuration, "Duration of requests to the introspection endpoint, by provider.")
	i.durationOpts = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String(labelProvider, o.Name)))}
	return i, nil
}

// Name returns the provider's name.
func (i *Introspection) Name() string { return i.name }

// Run keeps the answer cache until ctx ends; without Run every request asks
// the endpoint. Call it once.
func (i *Introspection) Run(ctx context.Context) error {
	if err := i.cache.open(); err != nil {
		return fmt.Errorf("introspection provider %q: %w", i.name, err)
	}
	defer i.cache.close()
	<-ctx.Done()
	return nil
}

// Authenticate introspects the request's bearer token. It returns
// ErrNoCredential when there is none.
func (i *Introspection) Authenticate(ctx context.Context, r *Request) (*Result, error) {
	tok, err := BearerToken(i.name, r.Headers)
	if err != nil {
		return nil, err
	}
	key := CredentialKey(i.name, tok)
	if v, ok := i.cache.get(key); ok && i.now().Before(v.expires) {
		i.cacheMetrics.record(ctx, true)
		return i.result(v, key)
	}
	i.cacheMetrics.record(ctx, false)
	// The call is shared by every request with this token, so it must not
	// end when the first one's context does; each waits on its own.
	ch := i.flight.DoChan(key, func() (any, error) {
		return i.introspect(context.WithoutCancel(ctx), tok, key)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			e := *res.Err.(*Error) // each caller gets its own copy
			return nil, &e
		}
		return i.result(res.Val.(*introspected), key)
	case <-ctx.Done():
		return nil, Unavailablef(i.name, context.Cause(ctx), introspectionUnavailable)
	}
}

func (i *Introspection) result(v *introspected, key string) (*Result, error) {
	if v.invalid != "" {
		return nil, &Error{Kind: Invalid, Provider: i.name, Description: v.invalid,
			Err: errors.New(v.detail), CredentialKey: key}
	}
	id := v.identity
	id.Roles = slices.Clone(id.Roles)
	id.Scopes = slices.Clone(id.Scopes)
	id.Claims = maps.Clone(id.Claims)
	return &Result{Identity: id, CredentialHeader: "authorization", CredentialKey: key}, nil
}

// introspect asks the endpoint about tok, counted, timed and traced (the
// span records the endpoint, the status and whether the token is active;
// never the token or the client credentials).
func (i *Introspection) introspect(ctx context.Context, tok, key string) (v *introspected, err error) {
	start := time.Now()
	ctx, span := startHTTPSpan(ctx, tracerFor(ctx, i.tracer), http.MethodPost, i.name, i.endpointURL)
	status := 0
	defer func() {
		i.duration.Record(ctx, time.Since(start).Seconds(), i.durationOpts...)
		result := resultError
		switch {
		case err != nil:
		case v.invalid != "":
			result = resultInactive
		default:
			result = resultActive
		}
		i.requests.Add(ctx, 1, metric.WithAttributes(attribute.String(labelProvider, i.name), attribute.String(labelResult, result)))
		if span != nil {
			span.SetAttributes(attribute.String(attrIntrospected, result))
			endHTTPSpan(span, status, err != nil)
		}
	}()
	return i.ask(ctx, tok, key, &status)
}

// ask asks the endpoint about tok and caches a definite answer, setting
// *status to the response's status code. Its error is always an
// Unavailable *Error.
func (i *Introspection) ask(ctx context.Context, tok, key string, status *int) (*introspected, error) {
	ctx, cancel := context.WithTimeout(ctx, i.timeout)
	defer cancel()
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, i.endpoint, strings.NewReader(form))
	if err != nil {
		return nil, Unavailablef(i.name, err, introspectionUnavailable)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", i.authHeader)
	resp, err := i.client.Do(req)
	if err != nil {
		return nil, Unavailablef(i.name, err, introspectionUnavailable)
	}
	defer resp.Body.Close()
	*status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, introspectionMaxBody+1))
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		// The endpoint refused Portcullis, not the token: a configuration
		// problem, not the caller's fault.
		i.logger.Error("introspection endpoint refused the request; check the client id and secret",
			slog.String(credLogKeyProvider, i.name), slog.Int(credLogKeyStatus, resp.StatusCode),
			slog.String(credLogKeyError, oauthErrorCode(body)))
		return nil, Unavailablef(i.name, fmt.Errorf("introspection endpoint answered %s", resp.Status), introspectionUnavailable)
	case resp.StatusCode != http.StatusOK:
		return nil, Unavailablef(i.name, fmt.Errorf("introspection endpoint answered %s", resp.Status), introspectionUnavailable)
	case err != nil:
		return nil, Unavailablef(i.name, fmt.Errorf("read the introspection response: %w", err), introspectionUnavailable)
	case len(body) > introspectionMaxBody:
		return nil, Unavailablef(i.name, fmt.Errorf("introspection response larger than %d bytes", introspectionMaxBody), introspectionUnavailable)
	}
	now := i.now()
	v, err := i.parse(body, now)
	if err != nil {
		return nil, Unavailablef(i.name, fmt.Errorf("introspection response: %w", err), introspectionUnavailable)
	}
	i.cache.set(key, v, v.expires.Sub(now))
	return v, nil
}

// parse reads an introspection response (RFC 7662 section 2.2) and judges
// the token at now. An error means the response is unusable.
func (i *Introspection) parse(body []byte, now time.Time) (*introspected, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	active, ok := m["active"].(bool)
	if !ok {
		return nil, errors.New(`"active" is missing or not a boolean`)
	}
	expires := now.Add(i.cacheTTL)
	if !active {
		return &introspected{invalid: "token is not active", detail: "the authorization server says the token is not active", expires: expires}, nil
	}
	str := map[string]string{}
	for _, k := range []string{"scope", "client_id", "username", "sub", "iss"} {
		switch v := m[k].(type) {
		case nil:
		case string:
			str[k] = v
		default:
			return nil, fmt.Errorf("%q is not a string", k)
		}
	}
	times := map[string]time.Time{}
	for _, k := range []string{"exp", "iat", "nbf"} {
		switch v := m[k].(type) {
		case nil:
		case float64:
			if v < 0 || v > introspectionMaxUnix {
				return nil, fmt.Errorf("%q is out of range", k)
			}
			times[k] = time.Unix(int64(v), 0)
		default:
			return nil, fmt.Errorf("%q is not a number", k)
		}
	}
	aud, err := stringOrList(m["aud"])
	if err != nil {
		return nil, fmt.Errorf(`"aud": %w`, err)
	}
	if exp, ok := times["exp"]; ok {
		if !now.Before(exp) {
			return &introspected{invalid: "token has expired",
				detail: fmt.Sprintf("active, but exp %s has passed", exp.UTC().Format(time.RFC3339)), expires: expires}, nil
		}
		if exp.Before(expires) {
			expires = exp
		}
	}
	if len(i.audiences) > 0 && !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(i.audiences, a) }) {
		return &introspected{invalid: "the token is not for this resource",
			detail: fmt.Sprintf("audience %q is not one of %q", aud, i.audiences), expires: expires}, nil
	}
	roles, _ := stringOrList(m["roles"]) // not in RFC 7662; used when present
	subject := str["sub"]
	if subject == "" {
		subject = str["username"]
	}
	if subject == "" {
		subject = str["client_id"]
	}
	delete(m, "active")
	return &introspected{
		identity: policy.Identity{
			Authenticated: true,
			Provider:      i.name,
			Kind:          policy.KindIntrospection,
			Subject:       subject,
			ClientID:      str["client_id"],
			Roles:         credNonNil(roles),
			Scopes:        credNonNil(strings.Fields(str["scope"])),
			Claims:        m,
		},
		expires: expires,
	}, nil
}

// stringOrList reads a JSON string or array of strings, as aud may be.
func stringOrList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("not a string or a list of strings")
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, errors.New("not a string or a list of strings")
	}
}

// oauthErrorCode returns the "error" code of an OAuth error response
// (RFC 6749 section 5.2) when body is one, for the log; never free text the
// server may have copied from the request.
func oauthErrorCode(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Error) > 64 {
		return ""
	}
	for _, c := range []byte(e.Error) {
		if c != '_' && (c < 'a' || c > 'z') {
			return ""
		}
	}
	return e.Error
}

var _ Provider = (*Introspection)(nil)
