package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/portcullis-mcp/portcullis/policy"
)

// Request is what providers read from a request.
type Request struct {
	// Headers by lower-cased name; Envoy joins the values of a repeated
	// header with ",".
	Headers map[string]string
	// SourceAddress is the peer's IP address.
	SourceAddress string
	// Principal is the peer's identity as Envoy saw it (source.principal):
	// the SPIFFE ID or subject of its client certificate.
	Principal string
	// Certificate is the peer's URL-encoded PEM client certificate
	// (source.certificate), when Envoy forwards it.
	Certificate string
}

// Result is a successful authentication.
type Result struct {
	Identity policy.Identity
	// CredentialHeader is the header that carried the credential, removed
	// before the request goes upstream unless forward_credentials is set;
	// empty when the credential was not a header (mTLS).
	CredentialHeader string
	// CredentialKey identifies the credential without revealing it (a
	// SHA-256 digest); lockout counts failures under it.
	CredentialKey string
}

// Errors a Provider returns when it does not authenticate the request.
var (
	// ErrNoCredential: the request carries no credential of the provider's
	// kind. The next provider is tried.
	ErrNoCredential = errors.New("no credential")
	// ErrNotMine: the request carries a credential of the provider's kind
	// that another provider may accept (a JWT from another issuer, a token
	// that is not a JWT). The next provider is tried; if none accepts the
	// credential, the request is refused as invalid_token.
	ErrNotMine = errors.New("credential not for this provider")
)

// ErrorKind classifies a failed authentication.
type ErrorKind int

const (
	// Invalid: a credential was presented and is bad (401 invalid_token).
	// It counts toward lockout.
	Invalid ErrorKind = iota + 1
	// Malformed: the request carries credentials in a form no provider can
	// read, such as two Authorization headers (401 invalid_request).
	Malformed
	// Unavailable: the credential cannot be checked now — the
	// introspection endpoint or the JWKS is unreachable (503). It never
	// counts toward lockout.
	Unavailable
)

// Error is a failed authentication. Description is safe to show the client
// (it becomes error_description); Err holds the detail for the log and
// never reaches the client.
type Error struct {
	Kind        ErrorKind
	Provider    string
	Description string
	Err         error
	// CredentialKey identifies the rejected credential for lockout.
	CredentialKey string
}

func (e *Error) Error() string {
	msg := e.Provider + ": " + e.Description
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Invalidf returns an Invalid error with a client-safe description.
func Invalidf(provider string, err error, format string, args ...any) *Error {
	return &Error{Kind: Invalid, Provider: provider, Description: fmt.Sprintf(format, args...), Err: err}
}

// Unavailablef returns an Unavailable error.
func Unavailablef(provider string, err error, format string, args ...any) *Error {
	return &Error{Kind: Unavailable, Provider: provider, Description: fmt.Sprintf(format, args...), Err: err}
}

// Provider authenticates one kind of credential. Authenticate returns a
// Result, or ErrNoCredential, ErrNotMine or an *Error. Providers are safe for
// concurrent use.
type Provider interface {
	Name() string
	Authenticate(ctx context.Context, r *Request) (*Result, error)
}

// CredentialKey returns the key under which a credential is cached and
// counted: the hex SHA-256 of the provider name and the credential.
func CredentialKey(provider, credential string) string {
	h := sha256.New()
	h.Write([]byte(provider))
	h.Write([]byte{0})
	h.Write([]byte(credential))
	return hex.EncodeToString(h.Sum(nil))
}
