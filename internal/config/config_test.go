package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// messages returns the text of each joined error.
func messages(err error) []string {
	if err == nil {
		return nil
	}
	var out []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "misspelled top-level key",
			yaml: "polcy:\n  paths: [x]\n",
			want: []string{`polcy (line 1): unknown key (did you mean "policy"?)`},
		},
		{
			name: "misspelled nested key in a list",
			yaml: "authn:\n  providers:\n    - name: corp\n      jwt: { isuer: x }\n",
			want: []string{`authn.providers[0].jwt.isuer (line 4): unknown key (did you mean "issuer"?)`},
		},
		{
			name: "unknown key far from any",
			yaml: "grpc:\n  zzzzzzzzzz: 1\n",
			want: []string{`grpc.zzzzzzzzzz (line 2): unknown key`},
		},
		{
			name: "every problem is listed",
			yaml: "grpc:\n  listn: x\npolicy:\n  watch: maybe\n  bundle: { polling: 5 }\n",
			want: []string{
				`grpc.listn (line 2): unknown key (did you mean "listen"?)`,
				`policy.watch (line 4): want true or false, got "maybe"`,
				`policy.bundle.polling (line 5): "5" is not a duration such as "250ms" or "30s"`,
			},
		},
		{
			name: "wrong shapes",
			yaml: "policy:\n  paths: rego\nextauthz: [1]\n",
			want: []string{
				`policy.paths (line 2): want a list, got "rego"`,
				`extauthz (line 3): want a mapping, got a list`,
			},
		},
		{
			name: "integer overflow",
			yaml: "extauthz:\n  max_json_depth: 99999999999999999999\n",
			want: []string{`extauthz.max_json_depth (line 2): want an integer, got "99999999999999999999"`},
		},
		{
			name: "unset variable",
			yaml: "policy:\n  bundle: { url: \"${BUNDLE_URL}\" }\n",
			want: []string{`policy.bundle.url (line 2): environment variable BUNDLE_URL is not set`},
		},
		{
			name: "negative duration",
			yaml: "ratelimit:\n  redis: { timeout: -1s }\n",
			want: []string{`ratelimit.redis.timeout (line 2): duration "-1s" is negative`},
		},
		{
			name: "duplicate key",
			yaml: "admin: { listen: \":1\", listen: \":2\" }\n",
			want: []string{`admin.listen (line 1): duplicate key`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "/", env(nil))
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Line == 0 {
				t.Errorf("error %v is not a located *FieldError", err)
			}
			if diff := cmp.Diff(tc.want, messages(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseExpandsAndDefaults(t *testing.T) {
	yaml := `
grpc:
  listen: "${HOST:-127.0.0.1}:${PORT}"
policy:
  paths: ["${POLICY_DIR}", "lit$$eral"]
  watch: false
`
	cfg, err := Parse([]byte(yaml), "/etc/portcullis", env(map[string]string{"PORT": "7000", "POLICY_DIR": "rego"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.dir = "/etc/portcullis"
	want.GRPC.Listen = "127.0.0.1:7000"
	want.Policy.Paths = []string{"rego", "lit$eral"}
	want.Policy.Watch = false
	if diff := cmp.Diff(want, *cfg, cmp.AllowUnexported(Config{})); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if got := cfg.Path("rego"); got != "/etc/portcullis/rego" {
		t.Errorf("Path(rego) = %q", got)
	}
	if got := cfg.Path("/abs"); got != "/abs" {
		t.Errorf("Path(/abs) = %q", got)
	}
}

func TestExpansionDoesNotInjectStructure(t *testing.T) {
	// A variable's value is a plain string even when it looks like YAML.
	cfg, err := Parse([]byte("policy:\n  decision: ${D}\n"), "/", env(map[string]string{"D": "a\nwatch: false"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.Decision != "a\nwatch: false" || !cfg.Policy.Watch {
		t.Errorf("decision = %q, watch = %v", cfg.Policy.Decision, cfg.Policy.Watch)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	cfg, err := Parse([]byte("# nothing\n"), "/x", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPC.Listen != ":9191" || cfg.Admin.Listen != ":9192" || cfg.Policy.Decision != "mcp/authz/decision" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "valid", yaml: "policy: { paths: [p.rego] }\nauthn: { allow_anonymous: true }\n"},
		{
			name: "missing files and bad values",
			yaml: `
grpc: { listen: "nope", tls: { cert_file: c.pem } }
policy: { paths: [p.rego, missing.rego], decision: "data.x" }
ratelimit: { backend: mongo, failure_mode: maybe }
telemetry: { log_level: loud }
authn: { allow_anonymous: true }
`,
			want: []string{
				`grpc.listen: "nope" is not host:port`,
				`grpc.tls: cert_file and key_file go together`,
				`grpc.tls.cert_file: ` + filepath.Join(dir, "c.pem") + `: no such file or directory`,
				`policy.paths[1]: ` + filepath.Join(dir, "missing.rego") + `: no such file or directory`,
				`policy.decision: "data.x" is not a rule path such as mcp/authz/decision`,
				`ratelimit.backend: "mongo" is not one of [memory redis]`,
				`ratelimit.failure_mode: "maybe" is not one of [allow deny]`,
				`telemetry.log_level: "loud" is not one of [debug info warn error]`,
			},
		},
		{
			name: "no policy",
			yaml: "admin: { listen: \":0\" }\n",
			want: []string{`authn: no providers and allow_anonymous is false: every request would be refused`, `policy: set paths or bundle.url`},
		},
		{
			name: "both policy sources",
			yaml: "policy: { paths: [p.rego], bundle: { url: \"http://b/x.tar.gz\" } }\nauthn: { allow_anonymous: true }\n",
			want: []string{`policy: set paths or bundle.url, not both`},
		},
		{
			name: "bad bundle url",
			yaml: "policy: { bundle: { url: \"ftp://b/x\" } }\nauthn: { allow_anonymous: true }\n",
			want: []string{`policy.bundle.url: "ftp://b/x" is not an http(s) URL`},
		},
		{
			name: "providers",
			yaml: `policy: { paths: [p.rego] }
authn:
  providers:
    - { name: a, jwt: {}, mtls: {} }
    - name: corp
      jwt: { issuer: "https://idp.example.com", algorithms: [RS256, HS256, none], claims: { subject: sub, group: groups } }
    - name: corp
      api_key: { keys_file: keys.yaml }
    - { name: opaque, introspection: { url: "idp", client_id: "" } }
    - { name: mesh, mtls: {} }
    - { name: legacy, basic: {} }
    - name: ok
      jwt: { issuer: "https://idp.example.com", discovery: true, audiences: [x] }
  lockout: { max_failures: 3, window: 0s }
`,
			want: []string{
				`authn.providers[0]: set exactly one of jwt, api_key, introspection, mtls, basic`,
				`authn.providers[1].jwt: set exactly one of jwks_url, jwks_file, discovery`,
				`authn.providers[1].jwt.audiences: required when authn.resource is not set (RFC 8707: tokens must name this resource)`,
				`authn.providers[1].jwt.algorithms[1]: "HS256" is not one of [RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA]`,
				`authn.providers[1].jwt.algorithms[2]: "none" is not one of [RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA]`,
				`authn.providers[1].jwt.claims.group: unknown identity field (want subject, roles, scopes, client_id)`,
				`authn.providers[2].name: duplicate provider name "corp"`,
				`authn.providers[2].api_key.keys_file: ` + filepath.Join(dir, "keys.yaml") + `: no such file or directory`,
				`authn.providers[3].introspection.url: "idp" is not an http(s) URL`,
				`authn.providers[3].introspection.client_id: required`,
				`authn.providers[3].introspection.client_secret_file: required`,
				`authn.providers[4].mtls.trust_domain: required`,
				`authn.providers[5].basic.users_file: required`,
				`authn.lockout.window: must be a positive duration`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), dir, env(nil))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, messages(cfg.Validate())); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDurationRoundTrip(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("250ms")); err != nil || d.Std() != 250*time.Millisecond {
		t.Fatalf("got %v, %v", d, err)
	}
	b, _ := d.MarshalText()
	if string(b) != "250ms" {
		t.Errorf("MarshalText = %q", b)
	}
}
