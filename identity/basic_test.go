package identity

import (
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-mcp/portcullis/policy"
)

// basicHash returns a bcrypt hash of password at the lowest cost, to keep
// the tests fast.
func basicHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func basicHeader(userPass string) map[string]string {
	return map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))}
}

// newTestBasic returns a Basic provider for content whose compare calls
// are counted.
func newTestBasic(t *testing.T, content string) (*Basic, *atomic.Int64, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "basic_users.yaml")
	replaceCredFile(t, path, content)
	b, err := NewBasic(&BasicOptions{Name: "legacy", UsersFile: path})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	b.compare = func(hash, password []byte) error {
		n.Add(1)
		return bcrypt.CompareHashAndPassword(hash, password)
	}
	return b, &n, path
}

func TestBasicAuthenticate(t *testing.T) {
	long := strings.Repeat("p", bcryptMaxPassword)
	users := `users:
  - username: alice
    bcrypt: "` + basicHash(t, "wonderland") + `"
  - username: bob
    bcrypt: "` + basicHash(t, "builder:with:colons") + `"
    subject: user-bob
    client_id: legacy-app
    roles: [editor]
    scopes: [mcp:tools]
  - username: carol
    bcrypt: "` + basicHash(t, long) + `"
`
	b, compares, _ := newTestBasic(t, users)
	invalid := func(cred string) *Error {
		return &Error{Kind: Invalid, Provider: "legacy", Description: "invalid username or password",
			CredentialKey: CredentialKey("legacy", base64.StdEncoding.EncodeToString([]byte(cred)))}
	}
	for _, tc := range []struct {
		name     string
		headers  map[string]string
		want     *Result
		err      error
		wantErr  *Error
		compares int64
	}{
		{
			name:    "good",
			headers: basicHeader("alice:wonderland"),
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "legacy", Kind: policy.KindBasic, Subject: "alice",
					Roles: []string{}, Scopes: []string{}, Claims: map[string]any{"username": "alice"}},
				CredentialHeader: "authorization",
				CredentialKey:    CredentialKey("legacy", base64.StdEncoding.EncodeToString([]byte("alice:wonderland"))),
			},
			compares: 1,
		},
		{
			name:    "password with colons, all fields",
			headers: basicHeader("bob:builder:with:colons"),
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "legacy", Kind: policy.KindBasic, Subject: "user-bob", ClientID: "legacy-app",
					Roles: []string{"editor"}, Scopes: []string{"mcp:tools"}, Claims: map[string]any{"username": "bob"}},
				CredentialHeader: "authorization",
				CredentialKey:    CredentialKey("legacy", base64.StdEncoding.EncodeToString([]byte("bob:builder:with:colons"))),
			},
			compares: 1,
		},
		{name: "wrong password", headers: basicHeader("alice:looking-glass"), wantErr: invalid("alice:looking-glass"), compares: 1},
		{name: "unknown user costs a comparison too", headers: basicHeader("mallory:wonderland"), wantErr: invalid("mallory:wonderland"), compares: 1},
		{name: "empty user name", headers: basicHeader(":wonderland"), wantErr: invalid(":wonderland"), compares: 1},
		{name: "empty password", headers: basicHeader("alice:"), wantErr: invalid("alice:"), compares: 1},
		{name: "password longer than bcrypt reads", headers: basicHeader("carol:" + long + "x"), wantErr: invalid("carol:" + long + "x"), compares: 1},
		{name: "malformed base64", headers: map[string]string{"authorization": "Basic YWJj="},
			wantErr: &Error{Kind: Malformed, Provider: "legacy", Description: "the basic credential is not valid base64"}},
		{name: "missing colon", headers: basicHeader("alicewonderland"),
			wantErr: &Error{Kind: Malformed, Provider: "legacy", Description: "the basic credential has no ':' between user name and password"}},
		{name: "not a token", headers: map[string]string{"authorization": "Basic a:b"},
			wantErr: &Error{Kind: Malformed, Provider: "legacy", Description: "the credential is not a valid token"}},
		{name: "two headers", headers: map[string]string{"authorization": "Basic YTpi,Basic YzpE"},
			wantErr: &Error{Kind: Malformed, Provider: "legacy", Description: "more than one Authorization header"}},
		{name: "no header", headers: map[string]string{}, err: ErrNoCredential},
		{name: "bearer", headers: map[string]string{"authorization": "Bearer abc"}, err: ErrNoCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := compares.Load()
			got, err := b.Authenticate(credTestContext(t), &Request{Headers: tc.headers})
			if n := compares.Load() - before; n != tc.compares {
				t.Errorf("%d bcrypt comparisons, want %d", n, tc.compares)
			}
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
				if !errors.As(err, &ie) {
					t.Fatalf("err = %v, want an *Error", err)
				}
				ie.Err = nil
				if diff := cmp.Diff(tc.wantErr, ie); diff != "" {
					t.Errorf("error (-want +got):\n%s", diff)
				}
				for _, secret := range []string{"wonderland", "looking-glass", long} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error reveals a password: %v", err)
					}
				}
			}
		})
	}
}

func TestBasicCache(t *testing.T) {
	b, compares, _ := newTestBasic(t, "users:\n  - username: alice\n    bcrypt: \""+basicHash(t, "wonderland")+"\"\n")
	if err := b.cache.open(); err != nil {
		t.Fatal(err)
	}
	defer b.cache.close()
	auth := func(userPass string) error {
		t.Helper()
		_, err := b.Authenticate(credTestContext(t), &Request{Headers: basicHeader(userPass)})
		return err
	}
	steps := []struct {
		name     string
		cred     string
		ok       bool
		compares int64 // in total
	}{
		{"first verification", "alice:wonderland", true, 1},
		{"cached", "alice:wonderland", true, 1},
		{"cached again", "alice:wonderland", true, 1},
		{"wrong password is not served from the cache", "alice:wonder", false, 2},
		{"wrong password is not cached", "alice:wonder", false, 3},
		{"good one still cached", "alice:wonderland", true, 3},
	}
	for _, s := range steps {
		err := auth(s.cred)
		if (err == nil) != s.ok {
			t.Errorf("%s: err = %v, want ok %v", s.name, err, s.ok)
		}
		if n := compares.Load(); n != s.compares {
			t.Errorf("%s: %d comparisons in total, want %d", s.name, n, s.compares)
		}
		b.cache.wait()
	}

	// A reload makes cached verifications count no more, even for a user
	// whose entry did not change.
	if _, err := b.apply([]byte("users:\n  - username: alice\n    bcrypt: \"" + basicHash(t, "new-password") + "\"\n")); err != nil {
		t.Fatal(err)
	}
	if err := auth("alice:wonderland"); err == nil {
		t.Error("the old password still works after a reload")
	}
	if err := auth("alice:new-password"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if n := compares.Load(); n != 5 {
		t.Errorf("%d comparisons in total, want 5", n)
	}
}

func TestBasicNoCacheWithoutRun(t *testing.T) {
	b, compares, _ := newTestBasic(t, "users:\n  - username: alice\n    bcrypt: \""+basicHash(t, "wonderland")+"\"\n")
	for range 2 {
		if _, err := b.Authenticate(credTestContext(t), &Request{Headers: basicHeader("alice:wonderland")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := compares.Load(); n != 2 {
		t.Errorf("%d comparisons, want 2", n)
	}
}

func TestBasicDummyHashCost(t *testing.T) {
	h5, err := bcrypt.GenerateFromPassword([]byte("x"), 5)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := newTestBasic(t, `users:
  - {username: a, bcrypt: "`+basicHash(t, "x")+`"}
  - {username: b, bcrypt: "`+string(h5)+`"}
  - {username: c, bcrypt: "`+string(h5)+`"}
`)
	cost, err := bcrypt.Cost(b.users.Load().dummy)
	if err != nil || cost != 5 {
		t.Errorf("dummy hash cost %d, %v; want 5, the most common", cost, err)
	}
}

func TestBasicNewErrors(t *testing.T) {
	h := basicHash(t, "x")
	for _, tc := range []struct {
		name string
		file string
		opts BasicOptions
		want []string
	}{
		{name: "no users file", opts: BasicOptions{Name: "legacy"}, want: []string{`basic provider "legacy": users_file is required`}},
		{name: "missing file", opts: BasicOptions{UsersFile: "/nonexistent/basic_users.yaml"}, want: []string{"users file", "/nonexistent/basic_users.yaml"}},
		{name: "unknown key", file: "users:\n  - username: a\n    bcrypt: \"" + h + "\"\n    password: x\n",
			want: []string{"basic_bad.yaml", "users[0].password (line 4): unknown key"}},
		{name: "no username", file: "users:\n  - bcrypt: \"" + h + "\"\n", want: []string{"users[0].username: required"}},
		{name: "colon in username", file: "users:\n  - username: a:b\n    bcrypt: \"" + h + "\"\n", want: []string{"users[0].username: must not contain ':'"}},
		{name: "duplicate", file: "users:\n  - {username: a, bcrypt: \"" + h + "\"}\n  - {username: a, bcrypt: \"" + h + "\"}\n",
			want: []string{`users[1].username: duplicate user "a"`}},
		{name: "not bcrypt", file: "users:\n  - username: a\n    bcrypt: plaintext-password\n", want: []string{"users[0].bcrypt: not a bcrypt hash"}},
		{name: "no hash", file: "users:\n  - username: a\n", want: []string{"users[0].bcrypt: not a bcrypt hash"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if tc.file != "" {
				o.UsersFile = filepath.Join(t.TempDir(), "basic_bad.yaml")
				replaceCredFile(t, o.UsersFile, tc.file)
			}
			_, err := NewBasic(&o)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "plaintext-password") || strings.Contains(err.Error(), h) {
				t.Errorf("the error reveals a secret: %v", err)
			}
		})
	}
}

func TestBasicReload(t *testing.T) {
	b, _, path := newTestBasic(t, "users:\n  - username: alice\n    bcrypt: \""+basicHash(t, "one")+"\"\n")
	reloaded := make(chan error, 10)
	b.file.onReload = func(err error) { reloaded <- err }
	runProvider(t, b.Run)
	ok := func(userPass string) bool {
		_, err := b.Authenticate(credTestContext(t), &Request{Headers: basicHeader(userPass)})
		return err == nil
	}
	if !ok("alice:one") {
		t.Fatal("alice:one refused")
	}

	replaceCredFile(t, path, "users:\n  - username: alice\n")
	if err := waitReload(t, reloaded); err == nil {
		t.Fatal("a bad users file was accepted")
	}
	if !ok("alice:one") {
		t.Error("after a bad reload the old password is refused")
	}

	replaceCredFile(t, path, "users:\n  - username: alice\n    bcrypt: \""+basicHash(t, "two")+"\"\n")
	if err := waitReload(t, reloaded); err != nil {
		t.Fatalf("good file refused: %v", err)
	}
	if ok("alice:one") || !ok("alice:two") {
		t.Error("the reload did not replace the password")
	}
}
