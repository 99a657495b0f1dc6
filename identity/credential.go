package identity

import (
	"strings"
)

// MaxTokenBytes bounds a bearer token or API key; a longer one is refused
// as invalid before any parsing.
const MaxTokenBytes = 16 << 10

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header. The scheme is case-insensitive (RFC 9110). It returns
// ErrNoCredential when there is no Authorization header or it holds another
// scheme, and a Malformed *Error for an empty token, a token outside RFC
// 6750's b64token syntax, or two Authorization headers (which Envoy joins
// with ","). A token over MaxTokenBytes is Invalid.
func BearerToken(provider string, headers map[string]string) (string, error) {
	return schemeCredential(provider, headers, "bearer")
}

// BasicCredential returns the base64 credential of an "Authorization:
// Basic <credential>" header, with the same rules as BearerToken.
func BasicCredential(provider string, headers map[string]string) (string, error) {
	return schemeCredential(provider, headers, "basic")
}

func schemeCredential(provider string, headers map[string]string, scheme string) (string, error) {
	v, ok := headers["authorization"]
	if !ok {
		return "", ErrNoCredential
	}
	v = strings.TrimSpace(v)
	s, cred, _ := strings.Cut(v, " ")
	if !strings.EqualFold(s, scheme) {
		if strings.Contains(v, ",") {
			return "", malformed(provider, "more than one Authorization header")
		}
		return "", ErrNoCredential
	}
	cred = strings.TrimLeft(cred, " ")
	switch {
	case strings.Contains(cred, ","):
		return "", malformed(provider, "more than one Authorization header")
	case cred == "":
		return "", malformed(provider, "the Authorization header has no credential")
	case len(cred) > MaxTokenBytes:
		return "", &Error{Kind: Invalid, Provider: provider, Description: "the token is too large", CredentialKey: CredentialKey(provider, cred)}
	case !isB64Token(cred):
		return "", malformed(provider, "the credential is not a valid token")
	}
	return cred, nil
}

func malformed(provider, desc string) *Error {
	return &Error{Kind: Malformed, Provider: provider, Description: desc}
}

// b64TokenChars marks the bytes of RFC 6750's b64token before its padding.
var b64TokenChars = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", byte(c)) >= 0
	}
	return t
}()

// isB64Token reports whether s matches RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64TokenChars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
