package identity

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/portcullis-mcp/portcullis/policy"
)

// MTLSOptions configure an [MTLS] provider.
type MTLSOptions struct {
	// Name is the provider's name, reported in the identity and in errors.
	// Default "mtls".
	Name string
	// TrustDomain is the SPIFFE trust domain whose workloads this provider
	// accepts ("cluster.local" in Istio). Required.
	TrustDomain string
}

// MTLS authenticates the mesh peer by the SPIFFE ID of its client
// certificate, as Envoy saw it: source.principal, or the URI SAN of
// source.certificate when Envoy sent no principal. Envoy has verified the
// certificate during the TLS handshake; MTLS only reads it.
//
// The identity's subject is the SPIFFE ID; its claims hold spiffe_id and
// trust_domain, and for Kubernetes workload IDs
// (spiffe://<td>/ns/<namespace>/sa/<service account>) namespace and
// service_account.
//
// Build one with [NewMTLS]; the zero value is not usable. MTLS is safe for
// concurrent use and has no background work.
type MTLS struct {
	name        string
	trustDomain string
}

// SPIFFE ID limits (SPIFFE-ID specification, section 2).
const (
	spiffeScheme         = "spiffe://"
	spiffeMaxIDBytes     = 2048
	spiffeMaxDomainBytes = 255
)

// NewMTLS returns an mTLS provider for opts.TrustDomain.
func NewMTLS(opts *MTLSOptions) (*MTLS, error) {
	o := MTLSOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = "mtls"
	}
	if o.TrustDomain == "" {
		return nil, fmt.Errorf("mtls provider %q: trust_domain is required", o.Name)
	}
	if err := checkTrustDomain(o.TrustDomain); err != nil {
		return nil, fmt.Errorf("mtls provider %q: trust_domain: %w", o.Name, err)
	}
	return &MTLS{name: o.Name, trustDomain: o.TrustDomain}, nil
}

// Name returns the provider's name.
func (m *MTLS) Name() string { return m.name }

// Authenticate reads the peer's SPIFFE ID. It returns ErrNoCredential when
// the request has neither a principal nor a certificate, ErrNotMine when
// the peer's identity is not a SPIFFE ID or belongs to another trust
// domain, and an Invalid *Error for a malformed SPIFFE ID or certificate.
func (m *MTLS) Authenticate(_ context.Context, r *Request) (*Result, error) {
	var id string
	switch {
	case r.Principal != "":
		if len(r.Principal) < len(spiffeScheme) || !strings.EqualFold(r.Principal[:len(spiffeScheme)], spiffeScheme) {
			return nil, ErrNotMine // a certificate subject, not a SPIFFE ID
		}
		id = r.Principal
	case r.Certificate != "":
		var err error
		id, err = m.certificateID(r.Certificate)
		if err != nil {
			return nil, err
		}
	default:
		return nil, ErrNoCredential
	}
	key := CredentialKey(m.name, id)
	td, path, err := parseSPIFFEID(id)
	if err != nil {
		return nil, &Error{Kind: Invalid, Provider: m.name, Description: "the peer's SPIFFE ID is malformed",
			Err: err, CredentialKey: key}
	}
	if td != m.trustDomain {
		return nil, ErrNotMine
	}
	claims := map[string]any{"spiffe_id": id, "trust_domain": td}
	if seg := strings.Split(path, "/"); len(seg) == 5 && seg[1] == "ns" && seg[3] == "sa" {
		claims["namespace"] = seg[2]
		claims["service_account"] = seg[4]
	}
	return &Result{
		Identity: policy.Identity{
			Authenticated: true,
			Provider:      m.name,
			Kind:          policy.KindMTLS,
			Subject:       id,
			Roles:         []string{},
			Scopes:        []string{},
			Claims:        claims,
		},
		CredentialKey: key,
	}, nil
}

// certificateID returns the SPIFFE ID in the URI SAN of a URL-encoded PEM
// certificate, or ErrNotMine when it has none.
func (m *MTLS) certificateID(encoded string) (string, error) {
	invalid := func(desc string, err error) error {
		return &Error{Kind: Invalid, Provider: m.name, Description: desc, Err: err,
			CredentialKey: CredentialKey(m.name, encoded)}
	}
	// PathUnescape, not QueryUnescape: a "+" in the base64 stays a "+".
	text, err := url.PathUnescape(encoded)
	if err != nil {
		return "", invalid("the client certificate cannot be read", err)
	}
	block, _ := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE" {
		return "", invalid("the client certificate cannot be read", errors.New("no PEM CERTIFICATE block"))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", invalid("the client certificate cannot be read", err)
	}
	var ids []string
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			ids = append(ids, u.String())
		}
	}
	switch len(ids) {
	case 0:
		return "", ErrNotMine
	case 1:
		return ids[0], nil
	default:
		return "", invalid("the client certificate has more than one SPIFFE ID", fmt.Errorf("%d SPIFFE URI SANs", len(ids)))
	}
}

// parseSPIFFEID checks id against the SPIFFE ID syntax and returns its
// trust domain and path. A workload ID has a path: "spiffe://td" alone is
// refused.
func parseSPIFFEID(id string) (trustDomain, path string, err error) {
	if len(id) > spiffeMaxIDBytes {
		return "", "", fmt.Errorf("longer than %d bytes", spiffeMaxIDBytes)
	}
	rest, ok := strings.CutPrefix(id, spiffeScheme)
	if !ok {
		return "", "", errors.New(`the scheme is not "spiffe://"`)
	}
	trustDomain, path, _ = strings.Cut(rest, "/")
	if err := checkTrustDomain(trustDomain); err != nil {
		return "", "", err
	}
	if len(rest) == len(trustDomain) {
		return "", "", errors.New("no path")
	}
	path = "/" + path
	for seg := range strings.SplitSeq(path[1:], "/") {
		switch seg {
		case "":
			return "", "", errors.New("empty path segment")
		case ".", "..":
			return "", "", errors.New("dot path segment")
		}
		for i := range len(seg) {
			if c := seg[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return "", "", fmt.Errorf("character %q not allowed in the path", c)
			}
		}
	}
	return trustDomain, path, nil
}

// checkTrustDomain checks a SPIFFE trust domain name: lower-case letters,
// digits, ".", "-" and "_".
func checkTrustDomain(td string) error {
	switch {
	case td == "":
		return errors.New("empty trust domain")
	case len(td) > spiffeMaxDomainBytes:
		return fmt.Errorf("trust domain longer than %d bytes", spiffeMaxDomainBytes)
	}
	for i := range len(td) {
		if c := td[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("character %q not allowed in a trust domain (lower-case letters, digits, '.', '-', '_')", c)
		}
	}
	return nil
}

var _ Provider = (*MTLS)(nil)
