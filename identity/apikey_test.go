package identity

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis-mcp/portcullis/policy"
)

const (
	apiKeyCI    = "pk_live_4f9c2b7e8a1d4c6b9e0f3a5d7c2b1e8f"
	apiKeyAdmin = "pk_live_0a1b2c3d4e5f60718293a4b5c6d7e8f9"
)

// apiKeyFile returns a keys file for the given key → subject pairs.
func apiKeyFile(keys ...string) string {
	var b strings.Builder
	b.WriteString("keys:\n")
	for i := 0; i+1 < len(keys); i += 2 {
		b.WriteString("  - sha256: \"" + HashAPIKey(keys[i]) + "\"\n    subject: " + keys[i+1] + "\n")
	}
	return b.String()
}

func newTestAPIKey(t *testing.T, content string, opts *APIKeyOptions) *APIKey {
	t.Helper()
	path := filepath.Join(t.TempDir(), "apikey_keys.yaml")
	replaceCredFile(t, path, content)
	o := APIKeyOptions{}
	if opts != nil {
		o = *opts
	}
	o.KeysFile = path
	a, err := NewAPIKey(&o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ExampleHashAPIKey() {
	// The keys file holds digests: hand out the key, store its hash.
	fmt.Println(HashAPIKey("test"))
	// Output: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
}

func TestAPIKeyHashAPIKey(t *testing.T) {
	// echo -n test | sha256sum
	if got, want := HashAPIKey("test"), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; got != want {
		t.Errorf("HashAPIKey(test) = %s, want %s", got, want)
	}
}

func TestAPIKeyAuthenticate(t *testing.T) {
	file := `# CI and admin keys
keys:
  - sha256: "` + HashAPIKey(apiKeyCI) + `"
    subject: ci-bot
    client_id: ci
    roles: [deployer]
    scopes: [mcp:tools, mcp:read]
  - sha256: "` + strings.ToUpper(HashAPIKey(apiKeyAdmin)) + `"
    subject: admin
`
	a := newTestAPIKey(t, file, &APIKeyOptions{Name: "keys"})
	lastByte := apiKeyCI[:len(apiKeyCI)-1] + "0"
	long := strings.Repeat("k", MaxTokenBytes+1)
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    *Result
		err     error
		kind    ErrorKind
		desc    string
		credKey string // for Invalid errors
	}{
		{
			name:    "good",
			headers: map[string]string{"x-api-key": apiKeyCI},
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "keys", Kind: policy.KindAPIKey, Subject: "ci-bot", ClientID: "ci",
					Roles: []string{"deployer"}, Scopes: []string{"mcp:tools", "mcp:read"}, Claims: map[string]any{}},
				CredentialHeader: "x-api-key",
				CredentialKey:    CredentialKey("keys", apiKeyCI),
			},
		},
		{
			name:    "upper-case digest, no roles",
			headers: map[string]string{"x-api-key": " " + apiKeyAdmin + " "},
			want: &Result{
				Identity: policy.Identity{Authenticated: true, Provider: "keys", Kind: policy.KindAPIKey, Subject: "admin",
					Roles: []string{}, Scopes: []string{}, Claims: map[string]any{}},
				CredentialHeader: "x-api-key",
				CredentialKey:    CredentialKey("keys", apiKeyAdmin),
			},
		},
		{name: "absent", headers: map[string]string{"authorization": "Bearer " + apiKeyCI}, err: ErrNoCredential},
		{name: "unknown", headers: map[string]string{"x-api-key": "pk_live_nope"}, kind: Invalid, desc: "unknown API key", credKey: CredentialKey("keys", "pk_live_nope")},
		{name: "last byte differs", headers: map[string]string{"x-api-key": lastByte}, kind: Invalid, desc: "unknown API key", credKey: CredentialKey("keys", lastByte)},
		{name: "prefix of a key", headers: map[string]string{"x-api-key": apiKeyCI[:10]}, kind: Invalid, desc: "unknown API key", credKey: CredentialKey("keys", apiKeyCI[:10])},
		{name: "empty", headers: map[string]string{"x-api-key": ""}, kind: Malformed, desc: "the x-api-key header is empty"},
		{name: "blank", headers: map[string]string{"x-api-key": "   "}, kind: Malformed, desc: "the x-api-key header is empty"},
		{name: "repeated", headers: map[string]string{"x-api-key": apiKeyCI + "," + apiKeyAdmin}, kind: Malformed, desc: "more than one x-api-key header"},
		{name: "too large", headers: map[string]string{"x-api-key": long}, kind: Invalid, desc: "the API key is too large", credKey: CredentialKey("keys", long)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Authenticate(credTestContext(t), &Request{Headers: tc.headers})
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
				want := Error{Kind: tc.kind, Provider: "keys", Description: tc.desc, CredentialKey: tc.credKey}
				ie.Err = nil
				if diff := cmp.Diff(want, *ie); diff != "" {
					t.Errorf("error (-want +got):\n%s", diff)
				}
				for _, k := range []string{apiKeyCI, apiKeyAdmin, lastByte} {
					if strings.Contains(err.Error(), k) {
						t.Errorf("the error reveals a key: %v", err)
					}
				}
			}
		})
	}
}

func TestAPIKeyResultIsACopy(t *testing.T) {
	a := newTestAPIKey(t, "keys:\n  - sha256: \""+HashAPIKey(apiKeyCI)+"\"\n    subject: s\n    roles: [r]\n", nil)
	req := &Request{Headers: map[string]string{"x-api-key": apiKeyCI}}
	res, err := a.Authenticate(credTestContext(t), req)
	if err != nil {
		t.Fatal(err)
	}
	res.Identity.Roles[0] = "changed"
	res, err = a.Authenticate(credTestContext(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity.Roles[0] != "r" {
		t.Errorf("a caller's change reached the key table: roles %q", res.Identity.Roles)
	}
}

func TestAPIKeyHeaderOption(t *testing.T) {
	a := newTestAPIKey(t, apiKeyFile(apiKeyCI, "ci"), &APIKeyOptions{Header: "X-Portal-Key"})
	res, err := a.Authenticate(credTestContext(t), &Request{Headers: map[string]string{"x-portal-key": apiKeyCI}})
	if err != nil {
		t.Fatal(err)
	}
	if res.CredentialHeader != "x-portal-key" || res.Identity.Provider != "api_key" {
		t.Errorf("header %q, provider %q; want x-portal-key, api_key", res.CredentialHeader, res.Identity.Provider)
	}
	if _, err := a.Authenticate(credTestContext(t), &Request{Headers: map[string]string{"x-api-key": apiKeyCI}}); !errors.Is(err, ErrNoCredential) {
		t.Errorf("the default header was read: %v", err)
	}
}

func TestAPIKeyNewErrors(t *testing.T) {
	good := HashAPIKey(apiKeyCI)
	for _, tc := range []struct {
		name string
		file string // "" means no file
		opts APIKeyOptions
		want []string
	}{
		{name: "no keys file", opts: APIKeyOptions{Name: "k"}, want: []string{`api key provider "k": keys_file is required`}},
		{name: "bad header", opts: APIKeyOptions{Header: "x api key", KeysFile: "x"}, want: []string{"not a valid header name"}},
		{name: "missing file", opts: APIKeyOptions{KeysFile: "/nonexistent/apikey_keys.yaml"}, want: []string{"keys file", "/nonexistent/apikey_keys.yaml"}},
		{name: "unknown key", file: "keys:\n  - sha256: \"" + good + "\"\n    subject: a\n    role: [x]\n",
			want: []string{"apikey_bad.yaml", "keys[0].role (line 4): unknown key"}},
		{name: "unknown top-level key", file: "key: []\n", want: []string{"key (line 1): unknown key"}},
		{name: "short digest", file: "keys:\n  - sha256: abc\n    subject: a\n", want: []string{"keys[0].sha256: want the 64 hex digits"}},
		{name: "not hex", file: "keys:\n  - sha256: \"" + strings.Repeat("g", 64) + "\"\n    subject: a\n", want: []string{"keys[0].sha256: want the 64 hex digits"}},
		{name: "no digest", file: "keys:\n  - subject: a\n", want: []string{"keys[0].sha256: required"}},
		{name: "no subject", file: "keys:\n  - sha256: \"" + good + "\"\n", want: []string{"keys[0].subject: required"}},
		{name: "duplicate digest", file: apiKeyFile(apiKeyCI, "a", apiKeyAdmin, "b") + "  - sha256: \"" + strings.ToUpper(good) + "\"\n    subject: c\n",
			want: []string{`keys[2].sha256: the same digest as the entry for subject "a"`}},
		{name: "every problem", file: "keys:\n  - sha256: x\n  - subject: b\n", want: []string{"keys[0].sha256", "keys[0].subject", "keys[1].sha256"}},
		{name: "not a list", file: "keys: {sha256: x}\n", want: []string{"keys (line 1): want a list, got a mapping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if tc.file != "" {
				o.KeysFile = filepath.Join(t.TempDir(), "apikey_bad.yaml")
				replaceCredFile(t, o.KeysFile, tc.file)
			}
			_, err := NewAPIKey(&o)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestAPIKeyNilOptions(t *testing.T) {
	if _, err := NewAPIKey(nil); err == nil || !strings.Contains(err.Error(), "keys_file is required") {
		t.Errorf("NewAPIKey(nil) = %v, want keys_file is required", err)
	}
}

func TestAPIKeyEmptyFileHasNoKeys(t *testing.T) {
	a := newTestAPIKey(t, "keys: []\n", nil)
	_, err := a.Authenticate(credTestContext(t), &Request{Headers: map[string]string{"x-api-key": apiKeyCI}})
	var ie *Error
	if !errors.As(err, &ie) || ie.Kind != Invalid {
		t.Errorf("err = %v, want Invalid", err)
	}
}

func TestAPIKeyReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "apikey_keys.yaml")
	replaceCredFile(t, path, apiKeyFile(apiKeyCI, "ci-bot"))
	logs := &credLogRecorder{}
	a, err := NewAPIKey(&APIKeyOptions{KeysFile: path, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 10)
	a.file.onReload = func(err error) { reloaded <- err }
	runProvider(t, a.Run)

	subject := func(key string) string {
		t.Helper()
		res, err := a.Authenticate(credTestContext(t), &Request{Headers: map[string]string{"x-api-key": key}})
		if err != nil {
			return "error"
		}
		return res.Identity.Subject
	}

	// A bad file is refused and the old keys stay.
	replaceCredFile(t, path, "keys:\n  - sha256: nope\n")
	if err := waitReload(t, reloaded); err == nil {
		t.Fatal("a bad keys file was accepted")
	}
	if got := subject(apiKeyCI); got != "ci-bot" {
		t.Errorf("after a bad reload the old key authenticates as %q, want ci-bot", got)
	}
	if logs.count(slog.LevelError) != 1 || !strings.Contains(logs.text(), "keys[0].sha256") {
		t.Errorf("the bad reload was not logged as an error:\n%s", logs.text())
	}

	// A good file, written in place, replaces the keys.
	if err := os.WriteFile(path, []byte(apiKeyFile(apiKeyAdmin, "admin")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := waitReload(t, reloaded); err != nil {
		t.Fatalf("good file refused: %v", err)
	}
	if got := subject(apiKeyAdmin); got != "admin" {
		t.Errorf("new key authenticates as %q, want admin", got)
	}
	if got := subject(apiKeyCI); got != "error" {
		t.Errorf("the removed key still authenticates as %q", got)
	}

	// An unrelated file in the directory does not reload.
	replaceCredFile(t, filepath.Join(dir, "other.yaml"), "x")
	// A change back to the first keys does.
	replaceCredFile(t, path, apiKeyFile(apiKeyCI, "ci-bot-2"))
	if err := waitReload(t, reloaded); err != nil {
		t.Fatalf("good file refused: %v", err)
	}
	if got := subject(apiKeyCI); got != "ci-bot-2" {
		t.Errorf("key authenticates as %q, want ci-bot-2", got)
	}
	for _, k := range []string{apiKeyCI, apiKeyAdmin} {
		if strings.Contains(logs.text(), k) {
			t.Errorf("a key was logged:\n%s", logs.text())
		}
	}
}

func TestAPIKeyRunEndsWithContext(t *testing.T) {
	a := newTestAPIKey(t, apiKeyFile(apiKeyCI, "ci"), nil)
	runProvider(t, a.Run) // the cleanup checks that Run returns
}
