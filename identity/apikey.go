package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/portcullis-mcp/portcullis/policy"
)

// APIKeyOptions configure an [APIKey] provider.
type APIKeyOptions struct {
	// Name is the provider's name, reported in the identity and in errors.
	// Default "api_key".
	Name string
	// Header carries the key. Default "x-api-key". Keys cannot contain
	// ",": Envoy joins repeated headers with it.
	Header string
	// KeysFile is the YAML file of key digests. Required. Its form:
	//
	//	keys:
	//	  - sha256: "9f86d081884c7d65..."   # HashAPIKey(key): 64 hex digits
	//	    subject: ci-bot                 # required
	//	    client_id: ci
	//	    roles: [admin]
	//	    scopes: [mcp:tools]
	KeysFile string
	// Logger receives reloads and reload failures; nil discards.
	Logger *slog.Logger
}

// APIKey authenticates requests by a key in a header. The keys file holds
// SHA-256 digests of the keys, never the keys themselves.
//
// Build one with [NewAPIKey]; the zero value is not usable. APIKey is safe
// for concurrent use. Run reloads the keys file when it changes; without
// Run the keys loaded by NewAPIKey stay in use.
type APIKey struct {
	name   string
	header string
	file   *credFile
	keys   atomic.Pointer[apiKeyTable]
}

// apiKeyEntry is one entry of the keys file.
type apiKeyEntry struct {
	SHA256   string   `yaml:"sha256"`
	Subject  string   `yaml:"subject"`
	ClientID string   `yaml:"client_id"`
	Roles    []string `yaml:"roles"`
	Scopes   []string `yaml:"scopes"`
}

type apiKeysFile struct {
	Keys []apiKeyEntry `yaml:"keys"`
}

type apiKeyRecord struct {
	digest [sha256.Size]byte
	entry  apiKeyEntry
}

type apiKeyTable struct {
	byDigest map[[sha256.Size]byte]*apiKeyRecord
}

// NewAPIKey returns an API key provider with the keys of opts.KeysFile. An
// error names the file and, for a bad entry, its index.
func NewAPIKey(opts *APIKeyOptions) (*APIKey, error) {
	o := APIKeyOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = "api_key"
	}
	if o.Header == "" {
		o.Header = "x-api-key"
	}
	if !credIsHeaderName(o.Header) {
		return nil, fmt.Errorf("api key provider %q: header %q is not a valid header name", o.Name, o.Header)
	}
	if o.KeysFile == "" {
		return nil, fmt.Errorf("api key provider %q: keys_file is required", o.Name)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &APIKey{name: o.Name, header: strings.ToLower(o.Header)}
	a.file = &credFile{path: o.KeysFile, what: "keys file", provider: o.Name, logger: logger, apply: a.apply}
	if err := a.file.load(); err != nil {
		return nil, fmt.Errorf("api key provider %q: %w", o.Name, err)
	}
	return a, nil
}

// HashAPIKey returns the hex SHA-256 digest of key, the form the keys file
// holds.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Name returns the provider's name.
func (a *APIKey) Name() string { return a.name }

// Run reloads the keys file whenever it changes, until ctx ends. A file
// that fails to load is logged and the previous keys stay in use. Run
// returns an error only when it cannot watch the file.
func (a *APIKey) Run(ctx context.Context) error { return a.file.watch(ctx) }

// Authenticate looks up the key in the request's header. It returns
// ErrNoCredential when the header is absent.
func (a *APIKey) Authenticate(_ context.Context, r *Request) (*Result, error) {
	v, ok := r.Headers[a.header]
	if !ok {
		return nil, ErrNoCredential
	}
	key := strings.TrimSpace(v)
	switch {
	case strings.Contains(key, ","):
		return nil, malformed(a.name, "more than one "+a.header+" header")
	case key == "":
		return nil, malformed(a.name, "the "+a.header+" header is empty")
	case len(key) > MaxTokenBytes:
		return nil, &Error{Kind: Invalid, Provider: a.name, Description: "the API key is too large",
			CredentialKey: CredentialKey(a.name, key)}
	}
	digest := sha256.Sum256([]byte(key))
	rec := a.keys.Load().byDigest[digest]
	// The map finds the entry by a digest the caller cannot steer; the
	// constant-time comparison confirms it without leaking how much of it
	// matched.
	if rec == nil || subtle.ConstantTimeCompare(rec.digest[:], digest[:]) != 1 {
		return nil, &Error{Kind: Invalid, Provider: a.name, Description: "unknown API key",
			Err: errors.New("no entry of the keys file has the key's digest"), CredentialKey: CredentialKey(a.name, key)}
	}
	e := &rec.entry
	return &Result{
		Identity: policy.Identity{
			Authenticated: true,
			Provider:      a.name,
			Kind:          policy.KindAPIKey,
			Subject:       e.Subject,
			ClientID:      e.ClientID,
			Roles:         slices.Clone(e.Roles),
			Scopes:        slices.Clone(e.Scopes),
			Claims:        map[string]any{},
		},
		CredentialHeader: a.header,
		CredentialKey:    CredentialKey(a.name, key),
	}, nil
}

// apply parses a keys file and swaps it in.
func (a *APIKey) apply(data []byte) (int, error) {
	var f apiKeysFile
	if err := decodeCredFile(data, &f); err != nil {
		return 0, err
	}
	t := &apiKeyTable{byDigest: make(map[[sha256.Size]byte]*apiKeyRecord, len(f.Keys))}
	var errs []error
	for i, e := range f.Keys {
		p := fmt.Sprintf("keys[%d]", i)
		rec := &apiKeyRecord{entry: e}
		b, err := hex.DecodeString(e.SHA256)
		switch {
		case e.SHA256 == "":
			errs = append(errs, fmt.Errorf("%s.sha256: required", p))
		case err != nil || len(b) != sha256.Size:
			errs = append(errs, fmt.Errorf("%s.sha256: want the 64 hex digits of a SHA-256 digest (see HashAPIKey)", p))
		default:
			copy(rec.digest[:], b)
			if prev, dup := t.byDigest[rec.digest]; dup {
				errs = append(errs, fmt.Errorf("%s.sha256: the same digest as the entry for subject %q", p, prev.entry.Subject))
			}
		}
		if e.Subject == "" {
			errs = append(errs, fmt.Errorf("%s.subject: required", p))
		}
		rec.entry.Roles = credNonNil(e.Roles)
		rec.entry.Scopes = credNonNil(e.Scopes)
		t.byDigest[rec.digest] = rec
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	a.keys.Store(t)
	return len(t.byDigest), nil
}

// credNonNil returns s, or an empty list when s is nil, so that the policy
// sees [] rather than null.
func credNonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// credIsHeaderName reports whether s is an HTTP field name (an RFC 9110 token).
func credIsHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

var _ Provider = (*APIKey)(nil)
