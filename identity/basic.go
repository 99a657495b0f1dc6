package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-mcp/portcullis/policy"
)

// BasicOptions configure a [Basic] provider.
type BasicOptions struct {
	// Name is the provider's name, reported in the identity and in errors.
	// Default "basic".
	Name string
	// UsersFile is the YAML file of users and their bcrypt hashes.
	// Required. Its form:
	//
	//	users:
	//	  - username: alice
	//	    bcrypt: "$2a$10$..."   # htpasswd -nbB, or bcrypt.GenerateFromPassword
	//	    subject: alice         # default: the username
	//	    client_id: legacy
	//	    roles: [viewer]
	//	    scopes: [mcp:tools]
	UsersFile string
	// Logger receives reloads and reload failures; nil discards.
	Logger *slog.Logger
	// MeterProvider provides the cache metrics; nil means none.
	MeterProvider metric.MeterProvider
}

// Basic authenticates requests by HTTP basic authentication (RFC 7617)
// against bcrypt hashes.
//
// A bcrypt comparison is deliberately slow, so successful verifications
// are cached for 5 minutes under the credential's [CredentialKey]
// (never the password itself) while Run is running; without Run every
// request costs a comparison. Run also reloads the users file when it
// changes; a reload drops the cached verifications.
//
// Build one with [NewBasic]; the zero value is not usable. Basic is safe
// for concurrent use.
type Basic struct {
	name  string
	file  *credFile
	users atomic.Pointer[basicTable]
	cache credCache[basicVerified]
	// compare is bcrypt.CompareHashAndPassword; tests count the calls.
	compare func(hash, password []byte) error

	cacheMetrics cacheMetrics
}

const (
	// basicCacheTTL is how long a verified credential is remembered.
	basicCacheTTL = 5 * time.Minute
	// basicCacheSize bounds the verified credentials remembered.
	basicCacheSize = 10000
	// bcryptMaxPassword is the longest password bcrypt reads; it ignores
	// the rest, so a longer one is never the right password.
	bcryptMaxPassword = 72
)

// basicUserEntry is one entry of the users file.
type basicUserEntry struct {
	Username string   `yaml:"username"`
	Bcrypt   string   `yaml:"bcrypt"`
	Subject  string   `yaml:"subject"`
	ClientID string   `yaml:"client_id"`
	Roles    []string `yaml:"roles"`
	Scopes   []string `yaml:"scopes"`
}

type basicUsersFile struct {
	Users []basicUserEntry `yaml:"users"`
}

type basicTable struct {
	users map[string]*basicUserEntry
	// dummy is compared for unknown users, so that the time taken does not
	// tell which user names exist. Its cost is the one most users have.
	dummy []byte
}

// basicVerified is a cached verification. It holds the table it was
// verified against: after a reload it no longer counts.
type basicVerified struct {
	table *basicTable
	user  *basicUserEntry
}

// NewBasic returns a basic auth provider with the users of opts.UsersFile.
// An error names the file and, for a bad entry, its index.
func NewBasic(opts *BasicOptions) (*Basic, error) {
	o := BasicOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = "basic"
	}
	if o.UsersFile == "" {
		return nil, fmt.Errorf("basic provider %q: users_file is required", o.Name)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Basic{name: o.Name, compare: bcrypt.CompareHashAndPassword,
		cacheMetrics: newCacheMetrics(o.MeterProvider, o.Name, cacheBasic)}
	b.cache.size = basicCacheSize
	b.file = &credFile{path: o.UsersFile, what: "users file", provider: o.Name, logger: logger, apply: b.apply}
	if err := b.file.load(); err != nil {
		return nil, fmt.Errorf("basic provider %q: %w", o.Name, err)
	}
	return b, nil
}

// Name returns the provider's name.
func (b *Basic) Name() string { return b.name }

// Run caches verified credentials and reloads the users file whenever it
// changes, until ctx ends. A file that fails to load is logged and the
// previous users stay. Run returns an error only when it cannot watch the
// file; call it once.
func (b *Basic) Run(ctx context.Context) error {
	if err := b.cache.open(); err != nil {
		return fmt.Errorf("basic provider %q: %w", b.name, err)
	}
	defer b.cache.close()
	return b.file.watch(ctx)
}

// Authenticate checks the request's "Authorization: Basic" credential. It
// returns ErrNoCredential when there is none.
func (b *Basic) Authenticate(ctx context.Context, r *Request) (*Result, error) {
	cred, err := BasicCredential(b.name, r.Headers)
	if err != nil {
		return nil, err
	}
	key := CredentialKey(b.name, cred)
	t := b.users.Load()
	if v, ok := b.cache.get(key); ok && v.table == t {
		b.cacheMetrics.record(ctx, true)
		return b.result(v.user, key), nil
	}
	b.cacheMetrics.record(ctx, false)
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return nil, malformed(b.name, "the basic credential is not valid base64")
	}
	username, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil, malformed(b.name, "the basic credential has no ':' between user name and password")
	}
	u := t.users[username]
	hash := t.dummy
	if u != nil {
		hash = []byte(u.Bcrypt)
	}
	// Compare even for an unknown user, so that the time taken is the same.
	err = b.compare(hash, []byte(password))
	switch {
	case u == nil:
		err = errors.New("no such user")
	case len(password) > bcryptMaxPassword:
		err = errors.New("password longer than bcrypt reads")
	case err != nil:
		err = errors.New("wrong password")
	}
	if err != nil {
		return nil, &Error{Kind: Invalid, Provider: b.name, Description: "invalid username or password",
			Err: err, CredentialKey: key}
	}
	b.cache.set(key, basicVerified{table: t, user: u}, basicCacheTTL)
	return b.result(u, key), nil
}

func (b *Basic) result(u *basicUserEntry, key string) *Result {
	return &Result{
		Identity: policy.Identity{
			Authenticated: true,
			Provider:      b.name,
			Kind:          policy.KindBasic,
			Subject:       u.Subject,
			ClientID:      u.ClientID,
			Roles:         slices.Clone(u.Roles),
			Scopes:        slices.Clone(u.Scopes),
			Claims:        map[string]any{"username": u.Username},
		},
		CredentialHeader: "authorization",
		CredentialKey:    key,
	}
}

// apply parses a users file and swaps it in.
func (b *Basic) apply(data []byte) (int, error) {
	var f basicUsersFile
	if err := decodeCredFile(data, &f); err != nil {
		return 0, err
	}
	t := &basicTable{users: make(map[string]*basicUserEntry, len(f.Users))}
	costs := map[int]int{}
	var errs []error
	for i, e := range f.Users {
		p := fmt.Sprintf("users[%d]", i)
		switch {
		case e.Username == "":
			errs = append(errs, fmt.Errorf("%s.username: required", p))
		case strings.Contains(e.Username, ":"):
			errs = append(errs, fmt.Errorf("%s.username: must not contain ':'", p))
		case t.users[e.Username] != nil:
			errs = append(errs, fmt.Errorf("%s.username: duplicate user %q", p, e.Username))
		}
		if cost, err := bcrypt.Cost([]byte(e.Bcrypt)); err != nil {
			errs = append(errs, fmt.Errorf("%s.bcrypt: not a bcrypt hash", p))
		} else {
			costs[cost]++
		}
		u := e
		if u.Subject == "" {
			u.Subject = u.Username
		}
		u.Roles = credNonNil(u.Roles)
		u.Scopes = credNonNil(u.Scopes)
		t.users[u.Username] = &u
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	cost, n := bcrypt.DefaultCost, 0
	for c, k := range costs {
		if k > n || k == n && c > cost {
			cost, n = c, k
		}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return 0, fmt.Errorf("generate the comparison hash for unknown users: %w", err)
	}
	t.dummy = dummy
	b.users.Store(t)
	return len(t.users), nil
}

var _ Provider = (*Basic)(nil)
