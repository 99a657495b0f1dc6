package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	long := strings.Repeat("a", MaxTokenBytes+1)
	for _, tc := range []struct {
		name   string
		header string
		absent bool
		token  string
		err    error
		kind   ErrorKind
	}{
		{name: "absent", absent: true, err: ErrNoCredential},
		{name: "bearer", header: "Bearer abc.def.ghi", token: "abc.def.ghi"},
		{name: "lower-case scheme", header: "bearer abc", token: "abc"},
		{name: "upper-case scheme", header: "BEARER abc", token: "abc"},
		{name: "padding", header: "Bearer YWJj==", token: "YWJj=="},
		{name: "extra spaces", header: "  Bearer   abc ", token: "abc"},
		{name: "basic is not bearer", header: "Basic YWxpY2U6eA==", err: ErrNoCredential},
		{name: "bearer with no token", header: "Bearer", kind: Malformed},
		{name: "bearer with blank token", header: "Bearer    ", kind: Malformed},
		{name: "two headers", header: "Bearer abc,Bearer def", kind: Malformed},
		{name: "two headers other scheme first", header: "Basic x,Bearer def", kind: Malformed},
		{name: "bad characters", header: "Bearer a b", kind: Malformed},
		{name: "equals inside", header: "Bearer a=b", kind: Malformed},
		{name: "too large", header: "Bearer " + long, kind: Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if !tc.absent {
				h["authorization"] = tc.header
			}
			tok, err := BearerToken("p", h)
			var ie *Error
			switch {
			case tc.kind != 0:
				if !errors.As(err, &ie) || ie.Kind != tc.kind {
					t.Fatalf("err = %v, want kind %d", err, tc.kind)
				}
				if ie.Kind == Invalid && ie.CredentialKey == "" {
					t.Error("an invalid credential has no key for lockout")
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			default:
				if err != nil || tok != tc.token {
					t.Fatalf("got %q, %v; want %q", tok, err, tc.token)
				}
			}
		})
	}
}

func TestCredentialKey(t *testing.T) {
	a, b := CredentialKey("p", "secret"), CredentialKey("q", "secret")
	if a == b || len(a) != 64 || strings.Contains(a, "secret") {
		t.Errorf("keys %q %q", a, b)
	}
}
