package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

const (
	introspectionClientID     = "portcullis"
	introspectionClientSecret = "s3cret-client-value"
	introspectionToken        = "opaque-token-7d1f0c2e9b"
)

// introspectionT0 is the fake clock's start.
var introspectionT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// introspectionFake is an introspection endpoint whose answer each test
// chooses; it counts requests and keeps what the last one carried.
type introspectionFake struct {
	respond  func(w http.ResponseWriter, r *http.Request, token string)
	requests atomic.Int64

	mu   sync.Mutex
	last introspectionSeen
}

type introspectionSeen struct {
	Method, ContentType, Accept, Authorization string
	Form                                       url.Values
}

func (f *introspectionFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.last = introspectionSeen{Method: r.Method, ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"),
		Authorization: r.Header.Get("Authorization"), Form: r.PostForm}
	f.mu.Unlock()
	f.respond(w, r, r.PostForm.Get("token"))
}

// introspectionJSON answers every token with status and body.
func introspectionJSON(status int, body string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, _ *http.Request, _ string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// newTestIntrospection starts a fake endpoint and returns a provider for it
// whose cache is open (as while Run runs) and whose clock is at
// introspectionT0.
func newTestIntrospection(t *testing.T, respond func(http.ResponseWriter, *http.Request, string), opts *IntrospectionOptions) (*Introspection, *introspectionFake, *credLogRecorder) {
	t.Helper()
	fake := &introspectionFake{respond: respond}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	logs := &credLogRecorder{}
	o := IntrospectionOptions{}
	if opts != nil {
		o = *opts
	}
	o.URL = srv.URL + "/oauth2/introspect"
	if o.ClientID == "" {
		o.ClientID = introspectionClientID
		o.ClientSecret = introspectionClientSecret
	}
	o.Logger = slog.New(logs)
	if o.Now == nil {
		o.Now = func() time.Time { return introspectionT0 }
	}
	i, err := NewIntrospection(&o)
	if err != nil {
		t.Fatal(err)
	}
	if err := i.cache.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(i.cache.close)
	return i, fake, logs
}

func introspectionRequest(token string) *Request {
	return &Request{Headers: map[string]string{"authorization": "Bearer " + token}}
}

func TestIntrospectionAuthenticate(t *testing.T) {
	exp := introspectionT0.Add(time.Hour).Unix()
	full := fmt.Sprintf(`{"active":true,"scope":"mcp:tools mcp:read","client_id":"app-1","username":"alice","sub":"user-42",
		"exp":%d,"iat":%d,"nbf":%d,"aud":["https://mcp.example.com/mcp","other"],"iss":"https://as.example.com","roles":["admin"],"tenant":"acme"}`,
		exp, introspectionT0.Unix(), introspectionT0.Unix())
	unavailable := &Error{Kind: Unavailable, Provider: "opaque", Description: "the authorization server is unavailable"}
	invalid := func(desc string) *Error {
		return &Error{Kind: Invalid, Provider: "opaque", Description: desc, CredentialKey: CredentialKey("opaque", introspectionToken)}
	}
	huge := `{"active":true,"pad":"` + strings.Repeat("x", introspectionMaxBody) + `"}`
	for _, tc := range []struct {
		name      string
		respond   func(http.ResponseWriter, *http.Request, string)
		audiences []string
		timeout   time.Duration
		want      *Result
		wantErr   *Error
		requests  int64 // made by two identical calls
		errorLogs int
	}{
		{
			name:      "active",
			respond:   introspectionJSON(200, full),
			audiences: []string{"https://mcp.example.com/mcp"},
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "opaque", Kind: policy.KindIntrospection,
					Subject: "user-42", ClientID: "app-1", Roles: []string{"admin"}, Scopes: []string{"mcp:tools", "mcp:read"},
					Claims: map[string]any{"scope": "mcp:tools mcp:read", "client_id": "app-1", "username": "alice", "sub": "user-42",
						"exp": float64(exp), "iat": float64(introspectionT0.Unix()), "nbf": float64(introspectionT0.Unix()),
						"aud": []any{"https://mcp.example.com/mcp", "other"}, "iss": "https://as.example.com", "roles": []any{"admin"}, "tenant": "acme"}},
				CredentialHeader: "authorization",
				CredentialKey:    CredentialKey("opaque", introspectionToken),
			},
			requests: 1,
		},
		{
			name:    "active, minimal",
			respond: introspectionJSON(200, `{"active":true}`),
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "opaque", Kind: policy.KindIntrospection,
					Roles: []string{}, Scopes: []string{}, Claims: map[string]any{}},
				CredentialHeader: "authorization",
				CredentialKey:    CredentialKey("opaque", introspectionToken),
			},
			requests: 1,
		},
		{
			name:      "client credentials token: subject from client_id, aud a string",
			respond:   introspectionJSON(200, `{"active":true,"client_id":"svc","aud":"https://mcp.example.com/mcp","roles":"reader"}`),
			audiences: []string{"x", "https://mcp.example.com/mcp"},
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "opaque", Kind: policy.KindIntrospection,
					Subject: "svc", ClientID: "svc", Roles: []string{"reader"}, Scopes: []string{},
					Claims: map[string]any{"client_id": "svc", "aud": "https://mcp.example.com/mcp", "roles": "reader"}},
				CredentialHeader: "authorization",
				CredentialKey:    CredentialKey("opaque", introspectionToken),
			},
			requests: 1,
		},
		{name: "inactive, cached too", respond: introspectionJSON(200, `{"active":false}`), wantErr: invalid("token is not active"), requests: 1},
		{name: "expired", respond: introspectionJSON(200, fmt.Sprintf(`{"active":true,"sub":"a","exp":%d}`, introspectionT0.Unix()-10)),
			wantErr: invalid("token has expired"), requests: 1},
		{name: "expires now", respond: introspectionJSON(200, fmt.Sprintf(`{"active":true,"sub":"a","exp":%d}`, introspectionT0.Unix())),
			wantErr: invalid("token has expired"), requests: 1},
		{name: "audience mismatch", respond: introspectionJSON(200, `{"active":true,"aud":["https://other.example.com"]}`),
			audiences: []string{"https://mcp.example.com/mcp"}, wantErr: invalid("the token is not for this resource"), requests: 1},
		{name: "no audience when one is required", respond: introspectionJSON(200, `{"active":true}`),
			audiences: []string{"https://mcp.example.com/mcp"}, wantErr: invalid("the token is not for this resource"), requests: 1},
		{name: "500", respond: introspectionJSON(500, `{"error":"server_error"}`), wantErr: unavailable, requests: 2},
		{name: "503", respond: introspectionJSON(503, ``), wantErr: unavailable, requests: 2},
		{name: "401: bad client credentials", respond: introspectionJSON(401, `{"error":"invalid_client"}`), wantErr: unavailable, requests: 2, errorLogs: 2},
		{name: "403", respond: introspectionJSON(403, `forbidden`), wantErr: unavailable, requests: 2, errorLogs: 2},
		{name: "redirect is not followed", respond: func(w http.ResponseWriter, r *http.Request, _ string) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, wantErr: unavailable, requests: 2},
		{name: "garbage", respond: introspectionJSON(200, `<html>oops</html>`), wantErr: unavailable, requests: 2},
		{name: "JSON null", respond: introspectionJSON(200, `null`), wantErr: unavailable, requests: 2},
		{name: "JSON array", respond: introspectionJSON(200, `[true]`), wantErr: unavailable, requests: 2},
		{name: "no active", respond: introspectionJSON(200, `{"sub":"a"}`), wantErr: unavailable, requests: 2},
		{name: "active not a boolean", respond: introspectionJSON(200, `{"active":"true"}`), wantErr: unavailable, requests: 2},
		{name: "exp not a number", respond: introspectionJSON(200, `{"active":true,"exp":"soon"}`), wantErr: unavailable, requests: 2},
		{name: "exp out of range", respond: introspectionJSON(200, `{"active":true,"exp":1e300}`), wantErr: unavailable, requests: 2},
		{name: "scope not a string", respond: introspectionJSON(200, `{"active":true,"scope":["a"]}`), wantErr: unavailable, requests: 2},
		{name: "aud not strings", respond: introspectionJSON(200, `{"active":true,"aud":[1]}`), wantErr: unavailable, requests: 2},
		{name: "response over 1 MiB", respond: introspectionJSON(200, huge), wantErr: unavailable, requests: 2},
		{name: "slow", timeout: 50 * time.Millisecond, respond: func(w http.ResponseWriter, r *http.Request, _ string) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, wantErr: unavailable, requests: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, fake, logs := newTestIntrospection(t, tc.respond, &IntrospectionOptions{Name: "opaque", Audiences: tc.audiences, Timeout: tc.timeout})
			for call := range 2 {
				got, err := i.Authenticate(credTestContext(t), introspectionRequest(introspectionToken))
				if tc.want != nil {
					if err != nil {
						t.Fatalf("call %d: %v", call, err)
					}
					if diff := cmp.Diff(tc.want, got); diff != "" {
						t.Errorf("call %d: result (-want +got):\n%s", call, diff)
					}
				} else {
					var ie *Error
					if !errors.As(err, &ie) {
						t.Fatalf("call %d: err = %v, want an *Error", call, err)
					}
					if ie.Err == nil {
						t.Errorf("call %d: the error has no detail for the log", call)
					}
					msg := ie.Error()
					ie.Err = nil
					if diff := cmp.Diff(tc.wantErr, ie); diff != "" {
						t.Errorf("call %d: error (-want +got):\n%s", call, diff)
					}
					if strings.Contains(msg, introspectionToken) || strings.Contains(msg, introspectionClientSecret) {
						t.Errorf("the error reveals a secret: %s", msg)
					}
				}
				i.cache.wait()
			}
			if n := fake.requests.Load(); n != tc.requests {
				t.Errorf("%d requests to the endpoint, want %d", n, tc.requests)
			}
			if n := logs.count(slog.LevelError); n != tc.errorLogs {
				t.Errorf("%d error logs, want %d:\n%s", n, tc.errorLogs, logs.text())
			}
			if text := logs.text(); strings.Contains(text, introspectionToken) || strings.Contains(text, introspectionClientSecret) {
				t.Errorf("a secret was logged:\n%s", text)
			}
		})
	}
}

func TestIntrospectionLogsOAuthErrorCode(t *testing.T) {
	i, _, logs := newTestIntrospection(t, introspectionJSON(401, `{"error":"invalid_client","error_description":"bad secret `+introspectionClientSecret+`"}`), nil)
	_, err := i.Authenticate(credTestContext(t), introspectionRequest(introspectionToken))
	var ie *Error
	if !errors.As(err, &ie) || ie.Kind != Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	text := logs.text()
	if !strings.Contains(text, "invalid_client") || !strings.Contains(text, "status=401") {
		t.Errorf("the log does not say why:\n%s", text)
	}
	if strings.Contains(text, introspectionClientSecret) {
		t.Errorf("a secret was logged:\n%s", text)
	}
}

func TestIntrospectionEndpointDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	i, err := NewIntrospection(&IntrospectionOptions{URL: srv.URL, ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = i.Authenticate(credTestContext(t), introspectionRequest(introspectionToken))
	var ie *Error
	if !errors.As(err, &ie) || ie.Kind != Unavailable || ie.Description != introspectionUnavailable || ie.CredentialKey != "" {
		t.Errorf("err = %#v, want Unavailable without a credential key", err)
	}
}

func TestIntrospectionNoBearerToken(t *testing.T) {
	i, fake, _ := newTestIntrospection(t, introspectionJSON(200, `{"active":true}`), nil)
	for _, h := range []map[string]string{{}, {"authorization": "Basic YTpi"}, {"x-api-key": "k"}} {
		if _, err := i.Authenticate(credTestContext(t), &Request{Headers: h}); !errors.Is(err, ErrNoCredential) {
			t.Errorf("headers %v: err = %v, want ErrNoCredential", h, err)
		}
	}
	_, err := i.Authenticate(credTestContext(t), &Request{Headers: map[string]string{"authorization": "Bearer a,Bearer b"}})
	var ie *Error
	if !errors.As(err, &ie) || ie.Kind != Malformed {
		t.Errorf("two tokens: err = %v, want Malformed", err)
	}
	if n := fake.requests.Load(); n != 0 {
		t.Errorf("%d requests to the endpoint, want none", n)
	}
}

func TestIntrospectionClientCredentials(t *testing.T) {
	const id, secret = "portcullis client:1", "p@ss:w%rd+x"
	i, fake, _ := newTestIntrospection(t, introspectionJSON(200, `{"active":true}`), &IntrospectionOptions{ClientID: id, ClientSecret: secret})
	if _, err := i.Authenticate(credTestContext(t), introspectionRequest("tok/en+with~chars==")); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	got := fake.last
	fake.mu.Unlock()
	want := introspectionSeen{
		Method:        http.MethodPost,
		ContentType:   "application/x-www-form-urlencoded",
		Accept:        "application/json",
		Authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte("portcullis+client%3A1:p%40ss%3Aw%25rd%2Bx")),
		Form:          url.Values{"token": {"tok/en+with~chars=="}, "token_type_hint": {"access_token"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	// What the server recovers by the RFC 6749 rules.
	req := &http.Request{Header: http.Header{"Authorization": {got.Authorization}}}
	u, p, ok := req.BasicAuth()
	if !ok {
		t.Fatal("no basic auth")
	}
	if u, _ = url.QueryUnescape(u); u != id {
		t.Errorf("client id %q, want %q", u, id)
	}
	if p, _ = url.QueryUnescape(p); p != secret {
		t.Error("the client secret did not survive the encoding")
	}
}

func TestIntrospectionCacheFollowsExp(t *testing.T) {
	var clock atomic.Int64
	clock.Store(introspectionT0.UnixNano())
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	exps := map[string]int64{
		"short": introspectionT0.Add(10 * time.Second).Unix(),
		"long":  introspectionT0.Add(time.Hour).Unix(),
	}
	respond := func(w http.ResponseWriter, _ *http.Request, token string) {
		fmt.Fprintf(w, `{"active":true,"sub":%q,"exp":%d}`, token, exps[token])
	}
	i, fake, _ := newTestIntrospection(t, respond, &IntrospectionOptions{
		CacheTTL: time.Minute,
		Now:      func() time.Time { return time.Unix(0, clock.Load()) },
	})
	steps := []struct {
		name     string
		advance  time.Duration
		token    string
		ok       bool
		requests int64 // in total
	}{
		{"short: first", 0, "short", true, 1},
		{"short: cached before exp", 5 * time.Second, "short", true, 1},
		{"short: asked again after exp, now expired", 6 * time.Second, "short", false, 2},
		{"short: the expiry is cached", 30 * time.Second, "short", false, 2},
		{"long: first", 0, "long", true, 3},
		{"long: cached within the TTL", 59 * time.Second, "long", true, 3},
		{"long: asked again after the TTL", 2 * time.Second, "long", true, 4},
	}
	for _, s := range steps {
		advance(s.advance)
		_, err := i.Authenticate(credTestContext(t), introspectionRequest(s.token))
		if (err == nil) != s.ok {
			t.Errorf("%s: err = %v, want ok %v", s.name, err, s.ok)
		}
		if n := fake.requests.Load(); n != s.requests {
			t.Errorf("%s: %d requests in total, want %d", s.name, n, s.requests)
		}
		i.cache.wait()
	}
}

func TestIntrospectionNoCacheWithoutRun(t *testing.T) {
	fake := &introspectionFake{respond: introspectionJSON(200, `{"active":true}`)}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	i, err := NewIntrospection(&IntrospectionOptions{URL: srv.URL, ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := i.Authenticate(credTestContext(t), introspectionRequest(introspectionToken)); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.requests.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestIntrospectionRunCaches(t *testing.T) {
	fake := &introspectionFake{respond: introspectionJSON(200, `{"active":true}`)}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	i, err := NewIntrospection(&IntrospectionOptions{URL: srv.URL, ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	runProvider(t, i.Run)
	// Run opens the cache in its goroutine: ask until an answer is served
	// from it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := fake.requests.Load()
		if _, err := i.Authenticate(credTestContext(t), introspectionRequest(introspectionToken)); err != nil {
			t.Fatal(err)
		}
		if fake.requests.Load() == before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no answer was cached while Run was running")
		}
		i.cache.wait()
		time.Sleep(10 * time.Millisecond)
	}
}

// introspectionRoundTrip is an http.RoundTripper made of a function.
type introspectionRoundTrip func(*http.Request) (*http.Response, error)

func (f introspectionRoundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestIntrospectionCollapsesConcurrentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var calls atomic.Int64
		rt := introspectionRoundTrip(func(r *http.Request) (*http.Response, error) {
			calls.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
			return &http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{},
				Body: io.NopCloser(strings.NewReader(`{"active":true,"sub":"alice"}`)), Request: r}, nil
		})
		i, err := NewIntrospection(&IntrospectionOptions{URL: "https://as.example.com/introspect", ClientID: "c", ClientSecret: "s",
			HTTPClient: &http.Client{Transport: rt}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()

		const callers = 8
		subjects := make(chan string, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				res, err := i.Authenticate(ctx, introspectionRequest(introspectionToken))
				if err != nil {
					subjects <- err.Error()
					return
				}
				subjects <- res.Identity.Subject
			})
		}
		// A caller that gives up leaves the shared request running.
		impatient := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := i.Authenticate(ctx, introspectionRequest(introspectionToken))
			impatient <- err
		}()

		synctest.Wait() // every caller waits on the one request
		if n := calls.Load(); n != 1 {
			t.Errorf("%d requests to the endpoint while the callers wait, want 1", n)
		}
		time.Sleep(1500 * time.Millisecond) // less than the 2s timeout
		var ie *Error
		if err := <-impatient; !errors.As(err, &ie) || ie.Kind != Unavailable || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("impatient caller: err = %v, want Unavailable (deadline exceeded)", err)
		}
		close(release)
		wg.Wait()
		close(subjects)
		for s := range subjects {
			if s != "alice" {
				t.Errorf("a caller got %q, want alice", s)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("%d requests to the endpoint, want 1", n)
		}
	})
}

func TestIntrospectionNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *IntrospectionOptions
		want []string
	}{
		{"nil options", nil, []string{`introspection provider "introspection"`, "url: required", "client_id: required", "client secret: required"}},
		{"not a URL", &IntrospectionOptions{URL: "as.example.com/introspect", ClientID: "c", ClientSecret: "s"}, []string{`url: "as.example.com/introspect" is not an http(s) URL`}},
		{"ftp", &IntrospectionOptions{URL: "ftp://as.example.com/", ClientID: "c", ClientSecret: "s"}, []string{"is not an http(s) URL"}},
		{"negative", &IntrospectionOptions{URL: "https://as", ClientID: "c", ClientSecret: "s", CacheTTL: -1, Timeout: -1, CacheSize: -1},
			[]string{"cache_ttl: must not be negative", "timeout: must not be negative", "cache size: must not be negative"}},
		{"empty audience", &IntrospectionOptions{URL: "https://as", ClientID: "c", ClientSecret: "s", Audiences: []string{"a", ""}}, []string{"audiences[1]: empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewIntrospection(tc.opts)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := NewIntrospection(&IntrospectionOptions{URL: "https://as", ClientID: "c", ClientSecret: introspectionClientSecret, CacheTTL: -1}); err == nil ||
		strings.Contains(err.Error(), introspectionClientSecret) {
		t.Errorf("err = %v: want an error without the secret", err)
	}
}

func TestIntrospectionOptionsAreCopied(t *testing.T) {
	auds := []string{"https://mcp.example.com/mcp"}
	opts := &IntrospectionOptions{URL: "https://as", ClientID: "c", ClientSecret: "s", Audiences: auds}
	i, err := NewIntrospection(opts)
	if err != nil {
		t.Fatal(err)
	}
	auds[0] = "changed"
	opts.URL = "https://elsewhere"
	if i.audiences[0] != "https://mcp.example.com/mcp" || i.endpoint != "https://as" {
		t.Error("changing the options changed the provider")
	}
	if i.cacheTTL != introspectionDefaultTTL || i.timeout != introspectionDefaultTimeout || i.cache.size != introspectionDefaultSize {
		t.Errorf("defaults: ttl %v, timeout %v, size %d", i.cacheTTL, i.timeout, i.cache.size)
	}
}
