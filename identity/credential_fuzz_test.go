package identity

import (
	"errors"
	"strings"
	"testing"
	"unicode"
)

// FuzzBearerToken reads arbitrary Authorization headers. Properties: it
// never panics; a returned token is a non-empty RFC 6750 b64token (no ",",
// space or control character), at most MaxTokenBytes, found in the header;
// a refusal is ErrNoCredential or a Malformed or Invalid *Error whose
// Description never echoes the credential: it does not contain it, and it
// stays the same when every letter and digit of the credential changes.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{
		"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
		"bearer abc",
		"BEARER   abc==",
		"  Bearer abc  ",
		"Bearer abc=def",
		"Bearer a,Bearer b",
		"Bearer a, b",
		"Basic dXNlcjpwYXNz",
		"Basic a, Bearer b",
		"Bearer",
		"Bearer ",
		"Bearer\tabc",
		"Bearer a b",
		"Bearer a\x00",
		"Bearer a\r\nx-injected: 1",
		"Bearer \xff\xfe",
		"Bearer ~+/-._",
		"Bearer =",
		"Bearerabc",
		"Token abc",
		"",
		"\u00a0Bearer abc",
		"Bearer " + strings.Repeat("A", MaxTokenBytes),
		"Bearer " + strings.Repeat("A", MaxTokenBytes+1),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := BearerToken("p", map[string]string{"authorization": s})
		if err == nil {
			switch {
			case tok == "":
				t.Fatal("empty token without error")
			case len(tok) > MaxTokenBytes:
				t.Fatalf("token of %d bytes", len(tok))
			case !strings.Contains(s, tok):
				t.Fatalf("token %q is not in the header %q", tok, s)
			case !isB64Token(tok):
				t.Fatalf("token %q is not a b64token", tok)
			}
			for i := 0; i < len(tok); i++ {
				if c := tok[i]; c == ',' || c == ' ' || c < 0x20 || c >= 0x7f {
					t.Fatalf("token %q holds byte %#x", tok, c)
				}
			}
			return
		}
		if tok != "" {
			t.Fatalf("token %q returned with error %v", tok, err)
		}
		if err == ErrNoCredential {
			return
		}
		var ie *Error
		if !errors.As(err, &ie) || err != error(ie) {
			t.Fatalf("error %v (%T) is neither ErrNoCredential nor an *Error", err, err)
		}
		if ie.Kind != Malformed && ie.Kind != Invalid {
			t.Fatalf("error kind %d", ie.Kind)
		}
		if ie.Description == "" || ie.Provider != "p" {
			t.Fatalf("error %+v lacks a description or the provider", ie)
		}
		if cred := fuzzCredential(s); len(cred) >= 8 && strings.Contains(ie.Description, cred) {
			t.Fatalf("description %q echoes the credential %q", ie.Description, cred)
		}
		// The description must not depend on the credential's letters and
		// digits.
		if s2, ok := fuzzRotateCredential(s); ok {
			_, err2 := BearerToken("p", map[string]string{"authorization": s2})
			ie2, ok := err2.(*Error)
			if !ok || ie2.Kind != ie.Kind || ie2.Description != ie.Description {
				t.Fatalf("%q: %v; with other letters and digits %q: %v", s, err, s2, err2)
			}
		}
	})
}

// fuzzCredential is what follows the scheme in an Authorization value.
func fuzzCredential(s string) string {
	_, cred, _ := strings.Cut(strings.TrimSpace(s), " ")
	return strings.TrimSpace(cred)
}

// fuzzRotateCredential returns s with every ASCII letter and digit after
// the scheme replaced by the next one (z by a, 9 by 0), or false when s has
// no scheme followed by a space.
func fuzzRotateCredential(s string) (string, bool) {
	lead := len(s) - len(strings.TrimLeftFunc(s, unicode.IsSpace))
	i := strings.IndexByte(s[lead:], ' ')
	if i < 0 {
		return "", false
	}
	cut := lead + i + 1
	b := []byte(s)
	for j := cut; j < len(b); j++ {
		switch c := b[j]; {
		case c >= 'a' && c <= 'z':
			b[j] = 'a' + (c-'a'+1)%26
		case c >= 'A' && c <= 'Z':
			b[j] = 'A' + (c-'A'+1)%26
		case c >= '0' && c <= '9':
			b[j] = '0' + (c-'0'+1)%10
		}
	}
	return string(b), true
}
