package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

// mtlsCert returns a self-signed PEM certificate with the given URI SANs.
func mtlsCert(t testing.TB, uris ...string) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "workload"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// mtlsEnvoyEncode percent-encodes a PEM certificate the way Envoy fills
// source.certificate: everything but unreserved characters is escaped.
func mtlsEnvoyEncode(s string) string {
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func TestMTLSAuthenticate(t *testing.T) {
	m, err := NewMTLS(&MTLSOptions{Name: "mesh", TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	const k8sID = "spiffe://cluster.local/ns/tools/sa/mcp-client"
	k8sIdentity := func(id string) policy.Identity {
		return policy.Identity{Authenticated: true, Provider: "mesh", Kind: policy.KindMTLS, Subject: id,
			Roles: []string{}, Scopes: []string{},
			Claims: map[string]any{"spiffe_id": id, "trust_domain": "cluster.local", "namespace": "tools", "service_account": "mcp-client"}}
	}
	k8sCert := mtlsCert(t, k8sID)
	for _, tc := range []struct {
		name string
		req  Request
		want *Result
		err  error
		desc string // of an Invalid error
	}{
		{
			name: "principal",
			req:  Request{Principal: k8sID},
			want: &Result{Identity: k8sIdentity(k8sID), CredentialKey: CredentialKey("mesh", k8sID)},
		},
		{
			name: "principal, not a Kubernetes path",
			req:  Request{Principal: "spiffe://cluster.local/region/eu/workload/indexer-1"},
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "mesh", Kind: policy.KindMTLS, Subject: "spiffe://cluster.local/region/eu/workload/indexer-1",
					Roles: []string{}, Scopes: []string{},
					Claims: map[string]any{"spiffe_id": "spiffe://cluster.local/region/eu/workload/indexer-1", "trust_domain": "cluster.local"}},
				CredentialKey: CredentialKey("mesh", "spiffe://cluster.local/region/eu/workload/indexer-1"),
			},
		},
		{
			name: "longer path under ns/sa is not a Kubernetes ID",
			req:  Request{Principal: "spiffe://cluster.local/ns/a/sa/b/c"},
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "mesh", Kind: policy.KindMTLS, Subject: "spiffe://cluster.local/ns/a/sa/b/c",
					Roles: []string{}, Scopes: []string{},
					Claims: map[string]any{"spiffe_id": "spiffe://cluster.local/ns/a/sa/b/c", "trust_domain": "cluster.local"}},
				CredentialKey: CredentialKey("mesh", "spiffe://cluster.local/ns/a/sa/b/c"),
			},
		},
		{
			name: "certificate, Envoy's encoding",
			req:  Request{Certificate: mtlsEnvoyEncode(k8sCert)},
			want: &Result{Identity: k8sIdentity(k8sID), CredentialKey: CredentialKey("mesh", k8sID)},
		},
		{
			name: "certificate, path escaping keeps '+'",
			req:  Request{Certificate: url.PathEscape(k8sCert)},
			want: &Result{Identity: k8sIdentity(k8sID), CredentialKey: CredentialKey("mesh", k8sID)},
		},
		{
			name: "principal wins over certificate",
			req:  Request{Principal: k8sID, Certificate: mtlsEnvoyEncode(mtlsCert(t, "spiffe://cluster.local/ns/other/sa/x"))},
			want: &Result{Identity: k8sIdentity(k8sID), CredentialKey: CredentialKey("mesh", k8sID)},
		},
		{name: "nothing", req: Request{Headers: map[string]string{"authorization": "Bearer x"}}, err: ErrNoCredential},
		{name: "foreign trust domain", req: Request{Principal: "spiffe://example.org/ns/tools/sa/mcp-client"}, err: ErrNotMine},
		{name: "trust domain with our name as a suffix", req: Request{Principal: "spiffe://evil-cluster.local/ns/a/sa/b"}, err: ErrNotMine},
		{name: "foreign trust domain, certificate", req: Request{Certificate: mtlsEnvoyEncode(mtlsCert(t, "spiffe://example.org/w"))}, err: ErrNotMine},
		{name: "not SPIFFE", req: Request{Principal: "CN=client,O=Example"}, err: ErrNotMine},
		{name: "DNS-like principal", req: Request{Principal: "client.example.com"}, err: ErrNotMine},
		{name: "certificate without URI SAN", req: Request{Certificate: mtlsEnvoyEncode(mtlsCert(t))}, err: ErrNotMine},
		{name: "certificate with an https URI SAN", req: Request{Certificate: mtlsEnvoyEncode(mtlsCert(t, "https://example.com/x"))}, err: ErrNotMine},
		{name: "certificate with two SPIFFE IDs", req: Request{Certificate: mtlsEnvoyEncode(mtlsCert(t, k8sID, "spiffe://cluster.local/ns/x/sa/y"))},
			desc: "the client certificate has more than one SPIFFE ID"},
		{name: "garbage certificate", req: Request{Certificate: "not%20a%20certificate"}, desc: "the client certificate cannot be read"},
		{name: "bad escaping", req: Request{Certificate: "%zz"}, desc: "the client certificate cannot be read"},
		{name: "corrupt DER", req: Request{Certificate: mtlsEnvoyEncode(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}})))},
			desc: "the client certificate cannot be read"},
		{name: "wrong PEM type", req: Request{Certificate: mtlsEnvoyEncode(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})))},
			desc: "the client certificate cannot be read"},
		{name: "certificate with a malformed SPIFFE ID", req: Request{Certificate: mtlsEnvoyEncode(mtlsCert(t, "spiffe://cluster.local/a//b"))},
			desc: "the peer's SPIFFE ID is malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.Authenticate(credTestContext(t), &tc.req)
			switch {
			case tc.want != nil:
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("result (-want +got):\n%s", diff)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			default:
				var ie *Error
				if !errors.As(err, &ie) || ie.Kind != Invalid || ie.Description != tc.desc || ie.CredentialKey == "" || ie.Provider != "mesh" {
					t.Fatalf("err = %#v, want Invalid %q with a credential key", err, tc.desc)
				}
			}
		})
	}
}

func TestMTLSMalformedIDs(t *testing.T) {
	m, err := NewMTLS(&MTLSOptions{TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{
		"spiffe://cluster.local",
		"spiffe://cluster.local/",
		"spiffe://cluster.local/ns//sa/x",
		"spiffe://cluster.local/ns/x/",
		"spiffe://cluster.local/./x",
		"spiffe://cluster.local/a/..",
		"spiffe://Cluster.local/x",
		"spiffe://cluster.local/x?q=1",
		"spiffe://cluster.local/x#frag",
		"spiffe://user@cluster.local/x",
		"spiffe://cluster.local:8443/x",
		"spiffe://cluster.local/a%20b",
		"spiffe://cluster.local/a b",
		"spiffe:///x",
		"SPIFFE://cluster.local/x",
		"Spiffe://cluster.local/x",
		"spiffe://",
		"spiffe://cluster.local/" + strings.Repeat("a", spiffeMaxIDBytes),
	} {
		t.Run(id[:min(len(id), 40)], func(t *testing.T) {
			_, err := m.Authenticate(credTestContext(t), &Request{Principal: id})
			var ie *Error
			if !errors.As(err, &ie) || ie.Kind != Invalid || ie.Description != "the peer's SPIFFE ID is malformed" {
				t.Fatalf("err = %v, want Invalid malformed", err)
			}
			if ie.CredentialKey != CredentialKey("mtls", id) {
				t.Error("the error has no credential key")
			}
		})
	}
}

func TestMTLSParseSPIFFEID(t *testing.T) {
	for _, tc := range []struct {
		id, td, path string
	}{
		{"spiffe://cluster.local/ns/default/sa/default", "cluster.local", "/ns/default/sa/default"},
		{"spiffe://example.org/a", "example.org", "/a"},
		{"spiffe://td_1-x.y/A-b_c.d/E", "td_1-x.y", "/A-b_c.d/E"},
		{"spiffe://a/..b/c..", "a", "/..b/c.."},
	} {
		td, path, err := parseSPIFFEID(tc.id)
		if err != nil || td != tc.td || path != tc.path {
			t.Errorf("parseSPIFFEID(%q) = %q, %q, %v; want %q, %q", tc.id, td, path, err, tc.td, tc.path)
		}
	}
}

func TestMTLSNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts *MTLSOptions
		want string
	}{
		{"nil options", nil, `mtls provider "mtls": trust_domain is required`},
		{"no trust domain", &MTLSOptions{Name: "mesh"}, `mtls provider "mesh": trust_domain is required`},
		{"upper case", &MTLSOptions{TrustDomain: "Cluster.local"}, "trust_domain: character 'C' not allowed"},
		{"port", &MTLSOptions{TrustDomain: "cluster.local:443"}, "trust_domain: character ':' not allowed"},
		{"scheme", &MTLSOptions{TrustDomain: "spiffe://cluster.local"}, "trust_domain: character ':' not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewMTLS(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzMTLSSPIFFEID checks that the SPIFFE ID parser never panics and that
// what it accepts is well formed.
func FuzzMTLSSPIFFEID(f *testing.F) {
	for _, s := range []string{"spiffe://cluster.local/ns/a/sa/b", "spiffe://a", "spiffe://a//", "spiffe://a/./b", "spiffe://A/b", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		td, path, err := parseSPIFFEID(id)
		if err != nil {
			return
		}
		if "spiffe://"+td+path != id {
			t.Errorf("%q parsed into %q + %q", id, td, path)
		}
		if strings.Contains(path, "//") || strings.HasSuffix(path, "/") || strings.ContainsAny(id[len("spiffe:"):], "?#%@: ") {
			t.Errorf("accepted %q", id)
		}
	})
}
