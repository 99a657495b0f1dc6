package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func writeKey(t *testing.T, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenCmd(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		key  any
		pub  any
		alg  string
	}{{"ES256", ec, &ec.PublicKey, "ES256"}, {"EdDSA", ed, ed.Public(), "EdDSA"}} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"token", "--key", writeKey(t, tc.key), "--sub", "carol", "--iss", "https://idp.test",
				"--aud", "a1", "--aud", "a2", "--claim", `roles=["user","ops"]`, "--claim", "scope=read write", "--ttl", "2m", "--kid", "k1"},
				func(string) string { return "" }, nil, &out, &errb)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			claims := jwt.MapClaims{}
			tok, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), claims, func(*jwt.Token) (any, error) { return tc.pub, nil },
				jwt.WithValidMethods([]string{tc.alg}), jwt.WithIssuer("https://idp.test"), jwt.WithAudience("a2"))
			if err != nil {
				t.Fatal(err)
			}
			exp, _ := claims.GetExpirationTime()
			if claims["sub"] != "carol" || claims["scope"] != "read write" || tok.Header["kid"] != "k1" ||
				len(claims["roles"].([]any)) != 2 || time.Until(exp.Time) > 2*time.Minute || time.Until(exp.Time) < time.Minute {
				t.Errorf("claims %v header %v", claims, tok.Header)
			}
		})
	}
	for _, args := range [][]string{
		{"token", "--sub", "x"},
		{"token", "--key", writeKey(t, ec)},
		{"token", "--key", "/nonexistent", "--sub", "x"},
		{"token", "--key", writeKey(t, ec), "--sub", "x", "--claim", "novalue"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, func(string) string { return "" }, nil, &out, &errb); code != exitUsage || out.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, want 2 and nothing", args, code, out.String())
		}
	}
}
