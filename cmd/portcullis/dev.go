package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/errgroup"

	"github.com/portcullis-mcp/portcullis/envoy"
	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/rego"
)

// The dev environment's callers: an administrator and a user with the
// default policy's "user" role, which may not call hash.
var devUsers = []struct{ name, subject, role string }{
	{"ADMIN", "alice", "admin"},
	{"READER", "bob", "user"},
}

// devLimits are the rate limits of `portcullis dev` (domain "mcp", the
// descriptors of envoy/envoy.yaml): small enough to see a 429 by hand.
const devLimits = `# Rate limits of portcullis dev (domain mcp); edit and save: they reload.
domain: mcp
descriptors:
  - key: subject
    rate_limit: { unit: minute, requests_per_unit: 600, name: per_subject }
    descriptors:
      - key: tool
        rate_limit: { unit: minute, requests_per_unit: 5, name: per_subject_tool }
  - key: client_id
    rate_limit: { unit: second, requests_per_unit: 100 }
  - key: weighted_subject
    rate_limit: { unit: minute, requests_per_unit: 300 }
`

// devPerToolLimit is the per-caller, per-tool limit in devLimits.
const devPerToolLimit = 5

const devIssuerKeyID = "dev-1"

func devCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	cfgPath := fs.String("config", "", "configuration file whose keys override the dev defaults")
	listen := fs.String("listen", "127.0.0.1:10000", "front door address")
	bootstrap := fs.String("envoy", "", "Envoy bootstrap for the front door (default: the shipped envoy/envoy.yaml)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return runDev(ctx, devOptions{configPath: *cfgPath, listen: *listen, bootstrap: *bootstrap, getenv: getenv}, stdout, stderr, nil)
}

type devOptions struct {
	configPath string // overrides, may be empty
	listen     string // the front door
	bootstrap  string // Envoy bootstrap file, empty for the shipped one
	getenv     func(string) string
	// tapMCP, for tests, returns the address the front door should send
	// MCP traffic to instead of the MCP server's (a recording proxy).
	tapMCP func(mcpAddr string) string
}

// devEnv is what a running dev environment tells its caller.
type devEnv struct {
	frontDoor string            // "host:port"
	grpc      string            // "host:port" of ext_authz and the rate limit service
	mcp       string            // "host:port" of the MCP server (behind the front door)
	admin     string            // "host:port" of the admin server
	tokens    map[string]string // by devUsers name
	dir       string            // the generated files
	issuerKey string            // PEM file of the token signing key
}

// runDev runs ext_authz + ratelimit, the MCP server and the front door on
// loopback until ctx ends. ready, when not nil, gets the environment once
// it answers.
func runDev(ctx context.Context, o devOptions, stdout, stderr io.Writer, ready chan<- devEnv) error {
	dir, err := os.MkdirTemp("", "portcullis-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The front door's port first: the tokens' audience names it.
	var lc net.ListenConfig
	fdLis, err := lc.Listen(ctx, "tcp", o.listen)
	if err != nil {
		return fmt.Errorf("front door: %w", err)
	}
	defer fdLis.Close()
	issuerLis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer issuerLis.Close() // on early returns; the issuer's server closes it too
	issuerURL := "http://" + issuerLis.Addr().String()
	frontURL := "http://" + fdLis.Addr().String()
	key, err := writeDevFiles(dir)
	if err != nil {
		return err
	}
	cfg, err := devConfig(dir, issuerURL, frontURL, o)
	if err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(stderr, cfg.Telemetry.LogLevel, cfg.Telemetry.LogFormat)
	if err != nil {
		return usageError{err}
	}
	bs, err := envoy.Shipped()
	if o.bootstrap != "" {
		bs, err = envoy.LoadBootstrap(o.bootstrap)
	}
	if err != nil {
		return usageError{fmt.Errorf("envoy bootstrap: %w", err)}
	}

	// One audit stream for both servers, on the stderr dev was given.
	audit, closeAudit, err := auditLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeAudit()

	g, gctx := errgroup.WithContext(ctx)
	issuer := &http.Server{Handler: devIssuer(issuerURL, key), ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error { return serveHTTP(issuer, issuerLis) })
	g.Go(func() error { <-gctx.Done(); return issuer.Close() })

	serveReady := make(chan listeners, 1)
	g.Go(func() error {
		return serveWith(gctx, cfg, logger.With(slog.String("process", "serve")), audit, serveReady)
	})
	var ls listeners
	select {
	case ls = <-serveReady:
	case <-gctx.Done():
		return g.Wait()
	}
	mcfg := *cfg
	mcfg.MCP.IdentityJWKSURL = "http://" + ls.admin.String() + "/identity/jwks.json"
	mcpReady := make(chan net.Addr, 1)
	g.Go(func() error {
		return runMCPWith(gctx, &mcfg, "http", logger.With(slog.String("process", "mcp")), audit, nil, nil, mcpReady)
	})
	var mcpAddr net.Addr
	select {
	case mcpAddr = <-mcpReady:
	case <-gctx.Done():
		return g.Wait()
	}

	upstream := mcpAddr.String()
	if o.tapMCP != nil {
		upstream = o.tapMCP(upstream)
	}
	fd, err := envoy.New(bs, &envoy.Options{
		Listen:   fdLis.Addr().String(),
		Clusters: map[string]string{"portcullis": ls.grpc.String(), "mcp_server": upstream},
		Logger:   logger.With(slog.String("process", "front-door")),
	})
	if err != nil {
		return usageError{fmt.Errorf("front door: %w", err)}
	}
	defer fd.Close()
	hs := fd.Server()
	g.Go(func() error { return serveHTTP(hs, fdLis) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.GRPC.ShutdownGrace.Std())
		defer cancel()
		return hs.Shutdown(sctx)
	})

	env := devEnv{frontDoor: fdLis.Addr().String(), grpc: ls.grpc.String(), mcp: mcpAddr.String(), admin: ls.admin.String(), tokens: map[string]string{}, dir: dir,
		issuerKey: filepath.Join(dir, "issuer-key.pem")}
	for _, u := range devUsers {
		tok, err := mintToken(key, devIssuerKeyID, jwt.MapClaims{
			"iss": issuerURL, "aud": cfg.Authn.Resource, "sub": u.subject,
			"roles": []string{u.role}, "scope": "mcp", "client_id": "portcullis-dev",
		}, 24*time.Hour, time.Now())
		if err != nil {
			return err
		}
		env.tokens[u.name] = tok
	}
	if err := printDevBanner(stdout, env, ls, mcpAddr, issuerURL); err != nil {
		return err
	}
	if ready != nil {
		ready <- env
	}
	return g.Wait()
}

// writeDevFiles writes the generated keys, the default policy and the
// limits into dir, and returns the token signing key.
func writeDevFiles(dir string) (crypto.Signer, error) {
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	_, identityKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	for name, k := range map[string]any{"issuer-key.pem": issuerKey, "identity-key.pem": identityKey} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ratelimit.yaml"), []byte(devLimits), 0o600); err != nil {
		return nil, err
	}
	// The default policy, as files the user can edit while dev runs.
	err = fs.WalkDir(rego.Default, "default", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		data, err := fs.ReadFile(rego.Default, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dir, "policy", strings.TrimPrefix(p, "default/"))
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o600)
	})
	return issuerKey, err
}

// devConfig is the configuration of `portcullis dev`, with the keys of
// o.configPath, when set, decoded over it.
func devConfig(dir, issuerURL, frontURL string, o devOptions) (*config.Config, error) {
	base := config.Default()
	base.SetDir(dir)
	base.GRPC.Listen = "127.0.0.1:0"
	base.GRPC.ShutdownGrace = config.Duration(5 * time.Second)
	base.Admin.Listen = "127.0.0.1:0"
	base.Authn.Resource = frontURL + "/mcp"
	base.Authn.ResourceMetadataURL = frontURL + "/.well-known/oauth-protected-resource/mcp"
	base.Authn.AuthorizationServers = []string{issuerURL}
	base.Authn.ScopesSupported = []string{"mcp"}
	base.Authn.IdentityToken.KeyFile = filepath.Join(dir, "identity-key.pem")
	base.Authn.Providers = []config.Provider{{
		Name: "dev",
		JWT: &config.JWT{
			Issuer:     issuerURL,
			JWKSURL:    issuerURL + "/.well-known/jwks.json",
			Algorithms: []string{"ES256"},
			ClockSkew:  config.Duration(30 * time.Second),
		},
	}}
	base.Policy.Paths = []string{filepath.Join(dir, "policy")}
	base.Policy.Decision = rego.DefaultDecision
	base.RateLimit.ConfigPaths = []string{filepath.Join(dir, "ratelimit.yaml")}
	base.MCP.Listen = "127.0.0.1:0"
	base.MCP.BehindProxy = true
	base.Telemetry.LogFormat = "text"
	base.Telemetry.Audit.Format = "text"
	cfg := &base
	if o.configPath != "" {
		data, err := os.ReadFile(o.configPath)
		if err != nil {
			return nil, usageError{err}
		}
		abs, err := filepath.Abs(o.configPath)
		if err != nil {
			return nil, err
		}
		if cfg, err = config.ParseOnto(base, data, filepath.Dir(abs), o.getenv); err != nil {
			return nil, usageError{fmt.Errorf("%s:\n  %s", o.configPath, strings.ReplaceAll(err.Error(), "\n", "\n  "))}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, usageError{fmt.Errorf("dev configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	return cfg, nil
}

// devIssuer serves the dev token issuer's JWKS and OpenID configuration.
func devIssuer(issuer string, key crypto.Signer) http.Handler {
	pub := key.Public().(*ecdsa.PublicKey)
	ecdh, _ := pub.ECDH()
	raw := ecdh.Bytes() // 0x04 || X || Y
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": devIssuerKeyID,
		"x": b64(raw[1:33]), "y": b64(raw[33:]),
	}}})
	discovery, _ := json.Marshal(map[string]any{"issuer": issuer, "jwks_uri": issuer + "/.well-known/jwks.json",
		"id_token_signing_alg_values_supported": []string{"ES256"}})
	mux := http.NewServeMux()
	for path, body := range map[string][]byte{"GET /.well-known/jwks.json": jwks, "GET /.well-known/openid-configuration": discovery} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		})
	}
	return mux
}

var devBanner = template.Must(template.New("dev").Parse(`
Portcullis dev: Envoy's filter chain (envoy/envoy.yaml) in front of ext_authz,
rate limits and the MCP server, all on loopback.

  MCP endpoint       {{.Front}}/mcp
  ext_authz + RLS    {{.GRPC}} (gRPC)
  admin              http://{{.Admin}}  (/metrics /readyz /debug/pprof/)
  MCP server         {{.MCP}} (reached through the front door)
  token issuer       {{.Issuer}}
  policy             {{.Dir}}/policy  (the default policy; edit it, it reloads)
  limits             {{.Dir}}/ratelimit.yaml  ({{.PerTool}} calls a minute per caller and tool)

Two callers (tokens valid 24 hours); paste these lines into a shell:

{{range .Users}}  export {{.Name}}='{{.Token}}'   # {{.Subject}}, role {{.Role}}
{{end}}
  H='-H content-type:application/json -H accept:application/json,text/event-stream'

  # 401 with WWW-Authenticate: no token
  curl -i $H {{.Front}}/mcp -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
  # 200: alice calls whoami
  curl -s $H -H "authorization: Bearer $ADMIN" {{.Front}}/mcp -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
  # 403: bob (role user) may not call hash
  curl -i $H -H "authorization: Bearer $READER" {{.Front}}/mcp -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"hash","arguments":{"text":"x"}}}'
  # 429 on call {{.Next}}: {{.PerTool}} echo calls a minute per caller
  for i in $(seq {{.Next}}); do curl -s -o /dev/null -w '%{http_code} ' $H -H "authorization: Bearer $READER" {{.Front}}/mcp -d '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'; done; echo
  # the MCP Inspector's CLI
  npx @modelcontextprotocol/inspector --cli {{.Front}}/mcp --transport http --header "Authorization: Bearer $ADMIN" --method tools/list
  # more tokens
  portcullis token --key {{.Dir}}/issuer-key.pem --kid {{.KeyID}} --iss {{.Issuer}} --aud {{.Front}}/mcp --sub carol --claim roles='["user"]'

Ctrl-C stops everything and removes {{.Dir}}.
`))

func printDevBanner(w io.Writer, env devEnv, ls listeners, mcpAddr net.Addr, issuer string) error {
	type user struct{ Name, Token, Subject, Role string }
	var users []user
	for _, u := range devUsers {
		users = append(users, user{u.name, env.tokens[u.name], u.subject, u.role})
	}
	return devBanner.Execute(w, map[string]any{
		"Front": "http://" + env.frontDoor, "GRPC": ls.grpc.String(), "Admin": env.admin, "MCP": mcpAddr.String(),
		"Issuer": issuer, "Dir": env.dir, "PerTool": devPerToolLimit, "Next": devPerToolLimit + 1,
		"Users": users, "KeyID": devIssuerKeyID,
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
