// Package config holds the configuration of the portcullis binary: the
// Config type, its defaults, strict decoding from YAML and validation.
//
// The lifecycle is: [Load] reads a file, expands ${VAR} references in
// values, and decodes it onto [Default] — an unknown key is an error that
// names its path; then [Config.Validate] reports every remaining problem at
// once. Relative file paths are resolved against the config file's
// directory.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration file.
type Config struct {
	GRPC      GRPC      `yaml:"grpc"`
	Admin     Admin     `yaml:"admin"`
	Authn     Authn     `yaml:"authn"`
	Policy    Policy    `yaml:"policy"`
	ExtAuthz  ExtAuthz  `yaml:"extauthz"`
	RateLimit RateLimit `yaml:"ratelimit"`
	MCP       MCP       `yaml:"mcp"`
	Telemetry Telemetry `yaml:"telemetry"`

	// dir is the directory relative paths are resolved against.
	dir string
}

// GRPC configures the gRPC listener of `portcullis serve`.
type GRPC struct {
	Listen string `yaml:"listen"`
	TLS    TLS    `yaml:"tls"`
	// ShutdownGrace bounds GracefulStop before in-flight RPCs are cut.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
}

// TLS configures a TLS server. Empty CertFile means plaintext.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Admin configures the admin HTTP listener.
type Admin struct {
	Listen string `yaml:"listen"`
}

// Authn configures who may call.
type Authn struct {
	Resource            string     `yaml:"resource"`
	ResourceMetadataURL string     `yaml:"resource_metadata_url"`
	AllowAnonymous      bool       `yaml:"allow_anonymous"`
	ForwardCredentials  bool       `yaml:"forward_credentials"`
	Providers           []Provider `yaml:"providers"`
	Lockout             Lockout    `yaml:"lockout"`
	// AuthorizationServers and ScopesSupported go into the Protected
	// Resource Metadata document; AuthorizationServers defaults to the
	// issuers of the JWT providers.
	AuthorizationServers []string      `yaml:"authorization_servers"`
	ScopesSupported      []string      `yaml:"scopes_supported"`
	IdentityToken        IdentityToken `yaml:"identity_token"`
}

// IdentityToken configures the x-portcullis-identity token.
type IdentityToken struct {
	// KeyFile is an Ed25519 private key (PKCS #8 PEM); empty generates one
	// at start.
	KeyFile string   `yaml:"key_file"`
	TTL     Duration `yaml:"ttl"`
}

// Provider is one identity provider; exactly one kind is set.
type Provider struct {
	Name          string         `yaml:"name"`
	JWT           *JWT           `yaml:"jwt"`
	APIKey        *APIKey        `yaml:"api_key"`
	Introspection *Introspection `yaml:"introspection"`
	MTLS          *MTLS          `yaml:"mtls"`
	Basic         *Basic         `yaml:"basic"`
}

// JWT configures bearer JWT validation.
type JWT struct {
	Issuer     string            `yaml:"issuer"`
	Audiences  []string          `yaml:"audiences"`
	JWKSURL    string            `yaml:"jwks_url"`
	JWKSFile   string            `yaml:"jwks_file"`
	Discovery  bool              `yaml:"discovery"`
	Algorithms []string          `yaml:"algorithms"`
	ClockSkew  Duration          `yaml:"clock_skew"`
	Claims     map[string]string `yaml:"claims"`
}

// APIKey configures API keys read from a header.
type APIKey struct {
	Header   string `yaml:"header"`
	KeysFile string `yaml:"keys_file"`
}

// Introspection configures OAuth2 token introspection (RFC 7662).
type Introspection struct {
	URL              string   `yaml:"url"`
	ClientID         string   `yaml:"client_id"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	CacheTTL         Duration `yaml:"cache_ttl"`
	// Timeout bounds one introspection request (default 2s).
	Timeout Duration `yaml:"timeout"`
	// Audiences, when set, must include the token's aud.
	Audiences []string `yaml:"audiences"`
}

// MTLS configures identity from the mesh peer's SPIFFE ID.
type MTLS struct {
	TrustDomain string `yaml:"trust_domain"`
}

// Basic configures HTTP basic authentication.
type Basic struct {
	UsersFile string `yaml:"users_file"`
}

// Lockout configures blocking after repeated authentication failures.
type Lockout struct {
	MaxFailures int      `yaml:"max_failures"`
	Window      Duration `yaml:"window"`
	Block       Duration `yaml:"block"`
}

// Policy configures the Rego engine.
type Policy struct {
	Paths    []string `yaml:"paths"`
	Bundle   Bundle   `yaml:"bundle"`
	Decision string   `yaml:"decision"`
	Watch    bool     `yaml:"watch"`
	DryRun   bool     `yaml:"dry_run"`
	// DecisionCacheSize bounds the decision cache (entries per loaded
	// policy); 0 disables it. See README "Decision cache".
	DecisionCacheSize int `yaml:"decision_cache_size"`
}

// Bundle configures an OPA bundle source.
type Bundle struct {
	URL     string   `yaml:"url"`
	Polling Duration `yaml:"polling"`
}

// ExtAuthz configures how Check requests are read.
type ExtAuthz struct {
	// MCPPaths are the request paths of the MCP endpoint: a request to one
	// of them must carry a valid MCP message.
	MCPPaths []string `yaml:"mcp_paths"`
	// MaxBodyBytes bounds the body Portcullis parses; a larger body is
	// refused with 413.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxJSONDepth bounds the nesting of a JSON body.
	MaxJSONDepth int `yaml:"max_json_depth"`
	// MaxHeaderBytes bounds the request headers, names and values added up;
	// more is refused with 431.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// RateLimit configures the rate-limit service.
type RateLimit struct {
	Backend         string   `yaml:"backend"`
	ConfigPaths     []string `yaml:"config_paths"`
	Redis           Redis    `yaml:"redis"`
	FailureMode     string   `yaml:"failure_mode"`
	ResponseHeaders bool     `yaml:"response_headers"`
}

// Redis configures the Redis store.
type Redis struct {
	URL          string   `yaml:"url"`
	ClusterAddrs []string `yaml:"cluster_addrs"`
	Timeout      Duration `yaml:"timeout"`
}

// MCP configures the bundled MCP server.
type MCP struct {
	Listen         string     `yaml:"listen"`
	AllowedOrigins []string   `yaml:"allowed_origins"`
	Upstreams      []Upstream `yaml:"upstreams"`
	// RequireIdentity refuses HTTP requests without a valid
	// x-portcullis-identity token (default true: behind Envoy).
	RequireIdentity bool `yaml:"require_identity"`
	// IdentityJWKSURL is where the identity token's key is fetched (the
	// ext_authz admin /identity/jwks.json) when authn.identity_token.key_file
	// is not in this configuration.
	IdentityJWKSURL string `yaml:"identity_jwks_url"`
	// StdioIdentity is the identity the policy sees on stdio.
	StdioIdentity StdioIdentity `yaml:"stdio_identity"`
	// BehindProxy accepts a public Host forwarded to a loopback listener.
	BehindProxy bool `yaml:"behind_proxy"`
	Stateful    bool `yaml:"stateful"`
	// MaxBodyBytes bounds a request body (413 beyond).
	MaxBodyBytes int `yaml:"max_body_bytes"`
}

// StdioIdentity is the caller on stdio, where no gateway authenticates.
type StdioIdentity struct {
	Subject string   `yaml:"subject"`
	Roles   []string `yaml:"roles"`
	Scopes  []string `yaml:"scopes"`
}

// Upstream is a bridged MCP server: a command spoken to over stdio, or a
// streamable HTTP URL.
type Upstream struct {
	Name    string            `yaml:"name"`
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args"`
	Env     map[string]string `yaml:"env"`
	// EnvFiles sets variables from files (secrets): name → file path.
	EnvFiles map[string]string `yaml:"env_files"`
	Cwd      string            `yaml:"cwd"`
	URL      string            `yaml:"url"`
	Headers  map[string]string `yaml:"headers"`
	// Timeout bounds one call to the upstream (default 30s).
	Timeout Duration `yaml:"timeout"`
}

// Telemetry configures logs, traces and metrics.
type Telemetry struct {
	ServiceName string `yaml:"service_name"`
	LogLevel    string `yaml:"log_level"`
	LogFormat   string `yaml:"log_format"`
	// RecordSubject records the caller's subject as enduser.id on the
	// portcullis.Check span. Off by default: a subject is personal data,
	// and traces often leave the cluster.
	RecordSubject bool  `yaml:"record_subject"`
	Audit         Audit `yaml:"audit"`
}

// Audit configures the audit stream: one record per decision and per tool
// call.
type Audit struct {
	// Output is "stderr", "none", or a file path (appended to, created
	// with mode 0600).
	Output string `yaml:"output"`
	// Format is "json" or "text".
	Format string `yaml:"format"`
}

// Audit outputs that are not file paths.
const (
	AuditStderr = "stderr"
	AuditNone   = "none"
)

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	return Config{
		GRPC:  GRPC{Listen: ":9191", ShutdownGrace: Duration(10 * time.Second)},
		Admin: Admin{Listen: ":9192"},
		Authn: Authn{
			Lockout:       Lockout{MaxFailures: 5, Window: Duration(time.Minute), Block: Duration(5 * time.Minute)},
			IdentityToken: IdentityToken{TTL: Duration(time.Minute)},
		},
		Policy: Policy{
			Decision: "mcp/authz/decision",
			Bundle:   Bundle{Polling: Duration(30 * time.Second)},
			Watch:    true,
			// Enough for the distinct (caller, call) pairs of a busy minute;
			// an entry is a few hundred bytes.
			DecisionCacheSize: 10000,
		},
		ExtAuthz: ExtAuthz{MCPPaths: []string{"/mcp"}, MaxBodyBytes: 1 << 20, MaxJSONDepth: 64, MaxHeaderBytes: 64 << 10},
		RateLimit: RateLimit{
			Backend:         "memory",
			Redis:           Redis{URL: "redis://127.0.0.1:6379/0", Timeout: Duration(50 * time.Millisecond)},
			FailureMode:     "allow",
			ResponseHeaders: true,
		},
		MCP: MCP{Listen: ":8080", RequireIdentity: true, MaxBodyBytes: 1 << 20, StdioIdentity: StdioIdentity{Subject: "stdio"}},
		Telemetry: Telemetry{ServiceName: "portcullis", LogLevel: "info", LogFormat: "json",
			Audit: Audit{Output: AuditStderr, Format: "json"}},
	}
}

// Load reads the file at path and decodes it onto [Default]. getenv
// resolves ${VAR} references. Load does not validate: call
// [Config.Validate]. The error, when not nil, joins every decoding problem;
// each is a *[FieldError]. With decoding problems the returned Config holds
// what could be decoded, so that Validate can report the rest.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, filepath.Dir(abs), getenv)
}

// Parse decodes YAML data onto [Default]; relative paths in it will be
// resolved against dir.
func Parse(data []byte, dir string, getenv func(string) string) (*Config, error) {
	return ParseOnto(Default(), data, dir, getenv)
}

// ParseOnto decodes YAML data onto base, as [Parse] does onto [Default]:
// every key the data sets replaces base's value (a list replaces the whole
// list). Relative paths that base already holds stay relative to dir too,
// so base should hold absolute paths.
func ParseOnto(base Config, data []byte, dir string, getenv func(string) string) (*Config, error) {
	cfg := base
	cfg.dir = dir
	root, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return &cfg, nil // an empty file (or only comments) means all defaults
	}
	d := decoder{getenv: getenv}
	d.decode("", root, reflect.ValueOf(&cfg).Elem())
	return &cfg, errors.Join(d.errs...)
}

// DecodeYAML decodes one YAML document into v, a pointer to a struct, as
// strictly as the configuration file: an unknown or duplicate key, an
// alias or a value of the wrong type is a *FieldError naming its path and
// line, and every problem is reported. ${VAR} references are not expanded.
// An empty document leaves v as it is. The files a configuration names
// (API keys, users) are read with it.
func DecodeYAML(data []byte, v any) error {
	root, err := parseDocument(data)
	if err != nil || root == nil {
		return err
	}
	d := decoder{}
	d.decode("", root, reflect.ValueOf(v).Elem())
	return errors.Join(d.errs...)
}

// parseDocument parses data as exactly one YAML document; nil means an
// empty one (nothing, or only comments).
func parseDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse YAML: more than one YAML document")
	}
	if root.Kind == 0 || len(root.Content) == 0 || root.Content[0].Tag == "!!null" {
		return nil, nil
	}
	return &root, nil
}

// Path resolves p against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// SetDir sets the directory relative paths are resolved against; for
// configurations built in code rather than loaded from a file.
func (c *Config) SetDir(dir string) { c.dir = dir }

var upstreamName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

var decisionPath = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$`)

// Validate reports every problem with the configuration, each as a
// *[FieldError], joined with errors.Join. It checks that every file the
// configuration names exists.
func (c *Config) Validate() error {
	v := validator{}
	v.listen("grpc.listen", c.GRPC.Listen)
	v.listen("admin.listen", c.Admin.Listen)
	v.listen("mcp.listen", c.MCP.Listen)
	v.positive("grpc.shutdown_grace", c.GRPC.ShutdownGrace)
	if (c.GRPC.TLS.CertFile == "") != (c.GRPC.TLS.KeyFile == "") {
		v.add("grpc.tls", "cert_file and key_file go together")
	}
	if c.GRPC.TLS.ClientCAFile != "" && c.GRPC.TLS.CertFile == "" {
		v.add("grpc.tls.client_ca_file", "needs cert_file and key_file")
	}
	v.file("grpc.tls.cert_file", c.Path(c.GRPC.TLS.CertFile))
	v.file("grpc.tls.key_file", c.Path(c.GRPC.TLS.KeyFile))
	v.file("grpc.tls.client_ca_file", c.Path(c.GRPC.TLS.ClientCAFile))

	c.validateAuthn(&v)

	p := c.Policy
	switch {
	case len(p.Paths) == 0 && p.Bundle.URL == "":
		v.add("policy", "set paths or bundle.url")
	case len(p.Paths) > 0 && p.Bundle.URL != "":
		v.add("policy", "set paths or bundle.url, not both")
	}
	for i, path := range p.Paths {
		v.exists(fmt.Sprintf("policy.paths[%d]", i), c.Path(path))
	}
	if p.Bundle.URL != "" {
		v.url("policy.bundle.url", p.Bundle.URL)
		v.positive("policy.bundle.polling", p.Bundle.Polling)
	}
	if p.DecisionCacheSize < 0 {
		v.add("policy.decision_cache_size", "must be 0 (no cache) or more")
	}
	if !decisionPath.MatchString(p.Decision) {
		v.add("policy.decision", fmt.Sprintf("%q is not a rule path such as mcp/authz/decision", clip(p.Decision)))
	}

	e := c.ExtAuthz
	for i, path := range e.MCPPaths {
		if len(path) == 0 || path[0] != '/' {
			v.add(fmt.Sprintf("extauthz.mcp_paths[%d]", i), "must start with /")
		}
	}
	if e.MaxBodyBytes <= 0 {
		v.add("extauthz.max_body_bytes", "must be positive")
	}
	if e.MaxHeaderBytes <= 0 {
		v.add("extauthz.max_header_bytes", "must be positive")
	}
	if e.MaxJSONDepth <= 0 || e.MaxJSONDepth > 1000 {
		v.add("extauthz.max_json_depth", "must be between 1 and 1000")
	}

	r := c.RateLimit
	v.oneOf("ratelimit.backend", r.Backend, "memory", "redis")
	v.oneOf("ratelimit.failure_mode", r.FailureMode, "allow", "deny")
	for i, path := range r.ConfigPaths {
		v.exists(fmt.Sprintf("ratelimit.config_paths[%d]", i), c.Path(path))
	}
	v.positive("ratelimit.redis.timeout", r.Redis.Timeout)
	if r.Backend == "redis" && r.Redis.URL == "" && len(r.Redis.ClusterAddrs) == 0 {
		v.add("ratelimit.redis", "set url or cluster_addrs")
	}

	if c.MCP.IdentityJWKSURL != "" {
		v.url("mcp.identity_jwks_url", c.MCP.IdentityJWKSURL)
	}
	if c.MCP.MaxBodyBytes <= 0 {
		v.add("mcp.max_body_bytes", "must be positive")
	}
	for i, o := range c.MCP.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			v.add(fmt.Sprintf("mcp.allowed_origins[%d]", i), fmt.Sprintf("%q is not an origin such as https://app.example.com", clip(o)))
		}
	}
	names := map[string]bool{}
	for i, u := range c.MCP.Upstreams {
		if u.Name != "" && !upstreamName.MatchString(u.Name) {
			v.add(fmt.Sprintf("mcp.upstreams[%d].name", i), fmt.Sprintf("%q must match %s", clip(u.Name), upstreamName))
		}
		if names[u.Name] {
			v.add(fmt.Sprintf("mcp.upstreams[%d].name", i), fmt.Sprintf("duplicate upstream name %q", clip(u.Name)))
		}
		names[u.Name] = true
	}
	for i, u := range c.MCP.Upstreams {
		path := fmt.Sprintf("mcp.upstreams[%d]", i)
		if u.Name == "" {
			v.add(path+".name", "required")
		}
		if (u.Command == "") == (u.URL == "") {
			v.add(path, "set command or url, not both")
		}
		if u.URL != "" {
			v.url(path+".url", u.URL)
		}
		for name, f := range u.EnvFiles {
			v.file(path+".env_files."+name, c.Path(f))
		}
	}

	t := c.Telemetry
	v.oneOf("telemetry.log_level", t.LogLevel, "debug", "info", "warn", "error")
	v.oneOf("telemetry.log_format", t.LogFormat, "json", "text")
	v.oneOf("telemetry.audit.format", t.Audit.Format, "json", "text")
	switch out := t.Audit.Output; out {
	case AuditStderr, AuditNone:
	case "":
		v.add("telemetry.audit.output", `want stderr, none or a file path`)
	case "stdout":
		// On stdio, stdout carries the MCP protocol.
		v.add("telemetry.audit.output", `stdout is not supported: use stderr or a file path`)
	default:
		if fi, err := os.Stat(c.Path(out)); err == nil && fi.IsDir() {
			v.add("telemetry.audit.output", clipPath(c.Path(out))+" is a directory, want a file")
		} else {
			v.exists("telemetry.audit.output", filepath.Dir(c.Path(out)))
		}
	}
	return errors.Join(v.errs...)
}

func (c *Config) validateAuthn(v *validator) {
	a := c.Authn
	if a.Resource != "" {
		v.url("authn.resource", a.Resource)
	}
	if a.ResourceMetadataURL != "" {
		v.url("authn.resource_metadata_url", a.ResourceMetadataURL)
	}
	for i, u := range a.AuthorizationServers {
		v.url(fmt.Sprintf("authn.authorization_servers[%d]", i), u)
	}
	if len(a.Providers) == 0 && !a.AllowAnonymous {
		v.add("authn", "no providers and allow_anonymous is false: every request would be refused")
	}
	names := map[string]bool{}
	for i, p := range a.Providers {
		path := fmt.Sprintf("authn.providers[%d]", i)
		if p.Name == "" {
			v.add(path+".name", "required")
		} else if names[p.Name] {
			v.add(path+".name", fmt.Sprintf("duplicate provider name %q", clip(p.Name)))
		}
		names[p.Name] = true
		kinds := 0
		for _, set := range []bool{p.JWT != nil, p.APIKey != nil, p.Introspection != nil, p.MTLS != nil, p.Basic != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			v.add(path, "set exactly one of jwt, api_key, introspection, mtls, basic")
			continue
		}
		switch {
		case p.JWT != nil:
			c.validateJWT(v, path+".jwt", p.JWT)
		case p.APIKey != nil:
			if p.APIKey.KeysFile == "" {
				v.add(path+".api_key.keys_file", "required")
			}
			v.file(path+".api_key.keys_file", c.Path(p.APIKey.KeysFile))
		case p.Introspection != nil:
			in := p.Introspection
			v.url(path+".introspection.url", in.URL)
			if in.ClientID == "" {
				v.add(path+".introspection.client_id", "required")
			}
			if in.ClientSecretFile == "" {
				v.add(path+".introspection.client_secret_file", "required")
			}
			v.file(path+".introspection.client_secret_file", c.Path(in.ClientSecretFile))
		case p.MTLS != nil:
			if p.MTLS.TrustDomain == "" {
				v.add(path+".mtls.trust_domain", "required")
			}
		case p.Basic != nil:
			if p.Basic.UsersFile == "" {
				v.add(path+".basic.users_file", "required")
			}
			v.file(path+".basic.users_file", c.Path(p.Basic.UsersFile))
		}
	}
	l := a.Lockout
	if l.MaxFailures < 0 {
		v.add("authn.lockout.max_failures", "must not be negative")
	}
	if l.MaxFailures > 0 {
		v.positive("authn.lockout.window", l.Window)
		v.positive("authn.lockout.block", l.Block)
	}
	v.file("authn.identity_token.key_file", c.Path(a.IdentityToken.KeyFile))
	v.positive("authn.identity_token.ttl", a.IdentityToken.TTL)
}

// jwtAlgorithms are the algorithms a JWT provider may allow: asymmetric
// only, never none or HMAC.
var jwtAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func (c *Config) validateJWT(v *validator, path string, j *JWT) {
	if j.Issuer == "" {
		v.add(path+".issuer", "required")
	} else {
		v.url(path+".issuer", j.Issuer)
	}
	sources := 0
	if j.JWKSURL != "" {
		sources++
		v.url(path+".jwks_url", j.JWKSURL)
	}
	if j.JWKSFile != "" {
		sources++
		v.file(path+".jwks_file", c.Path(j.JWKSFile))
	}
	if j.Discovery {
		sources++
	}
	if sources != 1 {
		v.add(path, "set exactly one of jwks_url, jwks_file, discovery")
	}
	if len(j.Audiences) == 0 && c.Authn.Resource == "" {
		v.add(path+".audiences", "required when authn.resource is not set (RFC 8707: tokens must name this resource)")
	}
	for i, alg := range j.Algorithms {
		if !slices.Contains(jwtAlgorithms, alg) {
			v.add(fmt.Sprintf("%s.algorithms[%d]", path, i), fmt.Sprintf("%q is not one of %v", clip(alg), jwtAlgorithms))
		}
	}
	for k := range j.Claims {
		if !slices.Contains([]string{"subject", "roles", "scopes", "client_id"}, k) {
			v.add(path+".claims."+k, "unknown identity field (want subject, roles, scopes, client_id)")
		}
	}
}

type validator struct{ errs []error }

func (v *validator) add(path, msg string) {
	v.errs = append(v.errs, &FieldError{Path: path, Err: errors.New(msg)})
}

func (v *validator) listen(path, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, fmt.Sprintf("%q is not host:port", clip(addr)))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(path, fmt.Sprintf("bad port %q", clip(port)))
	}
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, "must be a positive duration")
	}
}

func (v *validator) oneOf(path, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		v.add(path, fmt.Sprintf("%q is not one of %v", clip(val), allowed))
	}
}

func (v *validator) url(path, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		v.add(path, fmt.Sprintf("%q is not an http(s) URL", clip(s)))
	}
}

// clipPath shortens a file name quoted in an error message.
func clipPath(s string) string {
	if len(s) > 512 {
		return s[:512] + "..."
	}
	return s
}

// file checks that a named file exists and is a regular file.
func (v *validator) file(path, name string) {
	if name == "" {
		return
	}
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		v.add(path, fmt.Sprintf("%s: %v", clipPath(name), errors.Unwrap(err)))
	case fi.IsDir():
		v.add(path, clipPath(name)+" is a directory, want a file")
	}
}

// exists checks that a named file or directory exists.
func (v *validator) exists(path, name string) {
	if _, err := os.Stat(name); err != nil {
		v.add(path, fmt.Sprintf("%s: %v", clipPath(name), errors.Unwrap(err)))
	}
}
