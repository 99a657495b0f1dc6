package config

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"go.yaml.in/yaml/v3"
)

// fuzzMaxProblemBytes bounds the text of one reported problem: an error
// must locate the problem, not echo a huge input back.
const fuzzMaxProblemBytes = 4 << 10

// fuzzConfigSeeds are realistic and hostile files; more are in
// testdata/fuzz/FuzzParse.
var fuzzConfigSeeds = []string{
	"",
	"# only a comment\n",
	"~\n",
	`grpc:
  listen: ":9191"
  tls: { cert_file: tls.crt, key_file: tls.key }
authn:
  resource: https://mcp.example.com/mcp
  providers:
    - name: corp
      jwt:
        issuer: https://issuer.example
        audiences: [https://mcp.example.com/mcp]
        jwks_url: https://issuer.example/jwks
        algorithms: [RS256, ES256]
        claims: { roles: realm_access.roles }
    - name: keys
      api_key: { header: x-api-key, keys_file: keys.yaml }
    - name: mesh
      mtls: { trust_domain: cluster.local }
    - name: idp
      introspection: { url: "https://idp/introspect", client_id: pc, client_secret_file: secret, cache_ttl: 30s }
    - name: users
      basic:
  lockout: { max_failures: 5, window: 1m, block: 5m }
policy:
  paths: [policies/]
  decision: mcp/authz/decision
  watch: true
extauthz: { mcp_paths: [/mcp], max_body_bytes: 1048576, max_json_depth: 64 }
ratelimit:
  backend: redis
  config_paths: [ratelimit/]
  redis: { url: "${REDIS_URL}", timeout: 50ms }
mcp:
  upstreams:
    - name: files
      command: mcp-files
      args: [--root, /srv]
      env: { HOME: /tmp }
      env_files: { TOKEN: token.txt }
    - name: remote
      url: https://remote.example/mcp
      headers: { authorization: "Bearer ${TOKEN:-none}" }
      timeout: 10s
telemetry: { log_level: debug, log_format: text }
`,
	"polcy:\n  paths: [x]\n",
	"grpc:\n  listn: x\npolicy:\n  watch: maybe\n  bundle: { polling: 5 }\n",
	"policy:\n  paths: rego\nextauthz: [1]\n",
	"extauthz:\n  max_json_depth: 99999999999999999999\n",
	"policy:\n  bundle: { url: \"${BUNDLE_URL:-http://x}\", polling: -1s }\n",
	"policy:\n  decision: \"${1BAD}\"\n",
	"policy:\n  decision: \"${UNTERMINATED\"\n",
	"policy:\n  decision: \"$$${A}$\"\n",
	"a: &x [1]\nb: *x\n",
	"grpc: &g { listen: \":1\" }\nadmin: *g\n",
	"grpc:\n  listen: 1\n  listen: 2\n",
	"- a\n- b\n",
	"just a string\n",
	"authn:\n  providers:\n    - name: a\n      jwt:\n      api_key:\n",
	"authn:\n  providers: [{name: a, jwt: {claims: {x: [1]}}}]\n",
	"mcp:\n  upstreams: [{name: a, env: {K: {v: 1}}}]\n",
	"authn:\n  lockout: { max_failures: 0x10, window: 1.5h }\n",
	"extauthz: { max_body_bytes: -0, max_header_bytes: 1e3 }\n",
	"? grpc\n: { listen: \":1\" }\n",
	"!!binary grpc: x\n",
	"grpc: !!str\n",
	"{\"grpc\": {\"listen\": \":1\"}}",
	"---\ngrpc: {}\n---\nadmin: {}\n",
	"\t",
	"grpc:\n listen: [\n",
}

// FuzzParse decodes arbitrary YAML with Parse. Properties: it never
// panics; it returns a Config or an error; a file that is YAML at all is
// reported through *FieldError values (each joined error is one), with a
// Config that Validate can check; Validate never panics and reports only
// *FieldError values; and no reported problem is longer than 4 KiB.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzConfigSeeds {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	getenv := func(string) string { return "x" }
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, dir, getenv)
		var root yaml.Node
		yamlErr := yaml.Unmarshal(data, &root)
		if yamlErr == nil && !singleDocument(data) {
			// Parse takes one document; yaml.Unmarshal reads the first of several.
			yamlErr = errors.New("more than one YAML document")
		}
		switch {
		case err == nil:
			if cfg == nil {
				t.Fatal("no Config and no error")
			}
			if yamlErr != nil {
				t.Fatalf("Parse accepted what YAML refuses: %v", yamlErr)
			}
		case yamlErr != nil:
			// Not YAML: a plain error, no Config.
			if cfg != nil {
				t.Fatalf("Config returned for invalid YAML: %v", err)
			}
			fuzzCheckProblems(t, "Parse", err, false)
			return
		default:
			if cfg == nil {
				t.Fatalf("no Config with decoding problems: %v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) holds no *FieldError", err, err)
			}
			fuzzCheckProblems(t, "Parse", err, true)
		}
		if verr := cfg.Validate(); verr != nil {
			fuzzCheckProblems(t, "Validate", verr, true)
		}
	})
}

// fuzzCheckProblems checks each joined problem of err: a *FieldError when
// fieldErrors, and never longer than fuzzMaxProblemBytes.
func fuzzCheckProblems(t *testing.T, what string, err error, fieldErrors bool) {
	t.Helper()
	problems := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		problems = j.Unwrap()
	}
	for _, p := range problems {
		if fieldErrors {
			if _, ok := p.(*FieldError); !ok {
				t.Errorf("%s: problem %q is a %T, not a *FieldError", what, p, p)
			}
		}
		if msg := p.Error(); len(msg) > fuzzMaxProblemBytes {
			t.Errorf("%s: problem of %d bytes echoes its input: %.200q...", what, len(msg), msg)
		}
	}
}

// singleDocument reports whether data holds at most one YAML document.
func singleDocument(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		return true
	}
	return errors.Is(dec.Decode(&n), io.EOF)
}
