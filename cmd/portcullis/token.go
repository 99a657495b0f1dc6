package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenCmd mints a JWT for development and tests, signed with the PEM
// private key at --key (RS256 for RSA, ES256 for P-256, EdDSA for
// Ed25519).
func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", stderr)
	keyPath := fs.String("key", "", "PEM private key (PKCS #8, or SEC 1 / PKCS #1)")
	sub := fs.String("sub", "", "subject (sub)")
	iss := fs.String("iss", "", "issuer (iss)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	kid := fs.String("kid", "", "key id (kid) in the header")
	var auds, claims multiFlag
	fs.Var(&auds, "aud", "audience (repeatable)")
	fs.Var(&claims, "claim", "extra claim k=v (repeatable; roles and scope as a space-separated list; v parsed as JSON when it is)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *keyPath == "" || *sub == "" {
		return usagef("token: --key and --sub are required")
	}
	key, err := loadPrivateKey(*keyPath)
	if err != nil {
		return usageError{err}
	}
	c := jwt.MapClaims{"sub": *sub}
	if *iss != "" {
		c["iss"] = *iss
	}
	if len(auds) > 0 {
		c["aud"] = []string(auds)
	}
	for _, kv := range claims {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usagef("token: --claim %q: want k=v", kv)
		}
		c[k] = claimValue(v)
	}
	tok, err := mintToken(key, *kid, c, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// claimValue is v as JSON when it parses as an array, object or number,
// else the string.
func claimValue(v string) any {
	if v != "" && strings.ContainsAny(v[:1], "[{0123456789") {
		var x any
		if err := json.Unmarshal([]byte(v), &x); err == nil {
			return x
		}
	}
	return v
}

// mintToken signs claims with key, adding iat, nbf and exp.
func mintToken(key crypto.Signer, kid string, claims jwt.MapClaims, ttl time.Duration, now time.Time) (string, error) {
	var method jwt.SigningMethod
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		method = jwt.SigningMethodRS256
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("token: only P-256 EC keys (ES256)")
		}
		method = jwt.SigningMethodES256
	case ed25519.PublicKey:
		method = jwt.SigningMethodEdDSA
	default:
		return "", fmt.Errorf("token: unsupported key type %T", k)
	}
	claims["iat"] = now.Unix()
	claims["nbf"] = now.Unix()
	claims["exp"] = now.Add(ttl).Unix()
	t := jwt.NewWithClaims(method, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(key)
}

func loadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var k any
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
	}
	return s, nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
