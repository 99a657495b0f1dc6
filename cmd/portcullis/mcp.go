package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/mcpserver"
	"github.com/portcullis-mcp/portcullis/policy"
)

func mcpCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("mcp", stderr)
	path := fs.String("config", "", "configuration file")
	transport := fs.String("transport", "http", "http or stdio")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *transport != "http" && *transport != "stdio" {
		return usagef("--transport %q: want http or stdio", *transport)
	}
	cfg, err := loadConfig(*path, getenv)
	if err != nil {
		return err
	}
	// On stdio, stdout carries the protocol: nothing else may write there.
	if *transport == "stdio" {
		for _, v := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"} {
			if strings.Contains(getenv(v), "console") {
				return usagef("%s=console writes to stdout, which carries the MCP protocol on stdio; use otlp", v)
			}
		}
	}
	// Logs go to stderr.
	logger, err := telemetry.NewLogger(stderr, cfg.Telemetry.LogLevel, cfg.Telemetry.LogFormat)
	if err != nil {
		return usageError{err}
	}
	audit, closeAudit, err := auditLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeAudit()
	return runMCPWith(ctx, cfg, *transport, logger, audit, stdin, stdout, nil)
}

// runMCP serves the MCP server on transport until ctx ends; for http, ready
// (when not nil) receives the bound address. The audit stream goes where
// the configuration says, stderr being the process's.
func runMCP(ctx context.Context, cfg *config.Config, transport string, logger *slog.Logger, stdin io.Reader, stdout io.Writer, ready chan<- net.Addr) error {
	audit, closeAudit, err := auditLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	defer closeAudit()
	return runMCPWith(ctx, cfg, transport, logger, audit, stdin, stdout, ready)
}

// runMCPWith is runMCP with the audit stream given (nil: none).
func runMCPWith(ctx context.Context, cfg *config.Config, transport string, logger, audit *slog.Logger, stdin io.Reader, stdout io.Writer, ready chan<- net.Addr) error {
	tel, err := telemetry.Setup(ctx, cfg.Telemetry.ServiceName)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	po := policyOptions(cfg, logger.With(slog.String("component", "policy")), tel.Meter)
	po.TracerProvider = tel.Tracer
	engine, err := policy.New(ctx, po)
	if err != nil {
		return usageError{fmt.Errorf("policy: %w", err)}
	}
	m := cfg.MCP
	var key ed25519.PublicKey
	if transport == "http" {
		if key, err = identityKey(ctx, cfg); err != nil {
			return err
		}
	}
	upstreams := make([]mcpserver.UpstreamOptions, len(m.Upstreams))
	for i, u := range m.Upstreams {
		env := map[string]string{}
		for k, v := range u.Env {
			env[k] = v
		}
		for k, f := range u.EnvFiles {
			b, err := os.ReadFile(cfg.Path(f))
			if err != nil {
				return usageError{fmt.Errorf("mcp.upstreams[%d].env_files.%s: %w", i, k, err)}
			}
			env[k] = strings.TrimRight(string(b), "\r\n")
		}
		upstreams[i] = mcpserver.UpstreamOptions{Name: u.Name, Command: u.Command, Args: u.Args, Env: env, Cwd: cfg.Path(u.Cwd),
			URL: u.URL, Headers: u.Headers, CallTimeout: u.Timeout.Std()}
	}
	bridge, err := mcpserver.NewBridge(&mcpserver.BridgeOptions{Upstreams: upstreams, Logger: logger.With(slog.String("component", "bridge")),
		MeterProvider: tel.Meter})
	if err != nil {
		return usageError{fmt.Errorf("mcp.upstreams: %w", err)}
	}
	srv, err := mcpserver.New(&mcpserver.Options{
		Name:                "portcullis",
		Version:             version,
		Decider:             engine,
		IdentityKey:         key,
		Audience:            cfg.Authn.Resource,
		RequireIdentity:     m.RequireIdentity,
		StdioIdentity:       policy.Identity{Authenticated: true, Provider: "stdio", Kind: policy.KindLocal, Subject: m.StdioIdentity.Subject, Roles: m.StdioIdentity.Roles, Scopes: m.StdioIdentity.Scopes},
		AllowedOrigins:      m.AllowedOrigins,
		BehindProxy:         m.BehindProxy,
		Stateful:            m.Stateful,
		MaxBodyBytes:        int64(m.MaxBodyBytes),
		ResourceMetadata:    resourceMetadata(cfg).JSON(),
		ResourceMetadataURL: cfg.Authn.ResourceMetadataURL,
		Extra:               bridge.Attach,
		KnownTool:           bridge.HasTool,
		Logger:              logger.With(slog.String("component", "mcp")),
		Audit:               audit,
		MeterProvider:       tel.Meter,
	})
	if err != nil {
		return usageError{err}
	}

	// portcullis mcp has no admin listener: its Prometheus text is served
	// where OpenTelemetry's Prometheus exporter would listen, when asked.
	var metricsLis net.Listener
	if addr, ok := telemetry.PrometheusAddr(); ok {
		if metricsLis, err = (&net.ListenConfig{}).Listen(ctx, "tcp", addr); err != nil {
			return fmt.Errorf("OTEL_METRICS_EXPORTER=prometheus: %w", err)
		}
		logger.Info("serving metrics", slog.String("http", metricsLis.Addr().String()), slog.String("endpoint", "/metrics"))
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return engine.Run(gctx) })
	g.Go(func() error { return bridge.Run(gctx) })
	if metricsLis != nil {
		ms := &http.Server{Handler: metricsMux(tel.MetricsHandler), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error { return serveHTTP(ms, metricsLis) })
		g.Go(func() error {
			<-gctx.Done()
			return ms.Shutdown(context.WithoutCancel(gctx))
		})
	}
	if transport == "stdio" {
		g.Go(func() error {
			err := srv.RunStdio(gctx, stdin, stdout)
			return errors.Join(err, errStdioDone) // the client went away: stop everything
		})
		if err := g.Wait(); !errors.Is(err, errStdioDone) {
			return err
		}
		return nil
	}

	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", m.Listen)
	if err != nil {
		return fmt.Errorf("mcp.listen: %w", err)
	}
	logger.Info("serving MCP", slog.String("http", lis.Addr().String()), slog.String("endpoint", "/mcp"))
	if ready != nil {
		ready <- lis.Addr()
	}
	// No WriteTimeout: it would cut SSE streams.
	handler := telemetry.NewHTTPServerHandler(srv.Handler(), &telemetry.HTTPServerOptions{
		TracerProvider: tel.Tracer, MeterProvider: tel.Meter, Propagator: tel.Propagator})
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	g.Go(func() error { return serveHTTP(hs, lis) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeoutCause(context.WithoutCancel(gctx), cfg.GRPC.ShutdownGrace.Std(), errors.New("shutdown grace ran out"))
		defer cancel()
		return hs.Shutdown(sctx)
	})
	return g.Wait()
}

var errStdioDone = errors.New("stdio session ended")

// metricsMux serves metrics at /metrics and nothing else.
func metricsMux(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	return mux
}

// identityKey is the key that verifies x-portcullis-identity: the public
// half of authn.identity_token.key_file when this configuration has it,
// else the key published at mcp.identity_jwks_url.
func identityKey(ctx context.Context, cfg *config.Config) (ed25519.PublicKey, error) {
	if f := cfg.Authn.IdentityToken.KeyFile; f != "" {
		k, err := identity.LoadSigningKey(cfg.Path(f))
		if err != nil {
			return nil, usageError{fmt.Errorf("authn.identity_token.key_file: %w", err)}
		}
		return k.Public().(ed25519.PublicKey), nil
	}
	if u := cfg.MCP.IdentityJWKSURL; u != "" {
		return fetchIdentityKey(ctx, u)
	}
	if cfg.MCP.RequireIdentity {
		return nil, usagef("mcp.require_identity needs authn.identity_token.key_file or mcp.identity_jwks_url")
	}
	return nil, nil
}

// fetchIdentityKey reads the Ed25519 key of a JWKS such as ext_authz's
// /identity/jwks.json.
func fetchIdentityKey(ctx context.Context, url string) (ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, usageError{fmt.Errorf("mcp.identity_jwks_url: %w", err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mcp.identity_jwks_url: %w", err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kty, Crv, X string
		} `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mcp.identity_jwks_url: status %d, %v", resp.StatusCode, err)
	}
	for _, k := range set.Keys {
		if x, err := base64.RawURLEncoding.DecodeString(k.X); err == nil && k.Kty == "OKP" && k.Crv == "Ed25519" && len(x) == ed25519.PublicKeySize {
			return ed25519.PublicKey(x), nil
		}
	}
	return nil, fmt.Errorf("mcp.identity_jwks_url: no Ed25519 key")
}
