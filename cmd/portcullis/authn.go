package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

// authn is the identity stage a configuration describes.
type authn struct {
	authenticator *identity.Authenticator
	signer        *identity.Signer
	metadata      identity.ResourceMetadata
	// runs are the providers' background loops (key refresh, file
	// watches), started by serve.
	runs []func(context.Context) error
	// ready reports whether every provider that loads keys has them.
	ready []func() bool
}

// runner is a provider with background work.
type runner interface {
	Run(ctx context.Context) error
}

// buildAuthn builds the identity stage; rdb, when not nil, keeps the
// lockout counters so replicas share them.
func buildAuthn(cfg *config.Config, rdb redis.UniversalClient, logger *slog.Logger) (*authn, error) {
	return buildAuthnWith(cfg, rdb, logger, nil)
}

// buildAuthnWith is buildAuthn with the providers' metrics and traces going
// to tel (nil: none).
func buildAuthnWith(cfg *config.Config, rdb redis.UniversalClient, logger *slog.Logger, tel *telemetry.Providers) (*authn, error) {
	a := cfg.Authn
	out := &authn{metadata: resourceMetadata(cfg)}
	var providers []identity.Provider
	for i, pc := range a.Providers {
		p, err := buildProvider(cfg, pc, logger, tel)
		if err != nil {
			return nil, fmt.Errorf("authn.providers[%d] (%s): %w", i, pc.Name, err)
		}
		providers = append(providers, p)
		if r, ok := p.(runner); ok {
			out.runs = append(out.runs, r.Run)
		}
		if r, ok := p.(interface{ Ready() bool }); ok {
			out.ready = append(out.ready, r.Ready)
		}
	}
	l := a.Lockout
	lo := identity.LockoutOptions{MaxFailures: l.MaxFailures, Window: l.Window.Std(), Block: l.Block.Std()}
	if rdb != nil {
		lo.Store = identity.NewRedisLockoutStore(rdb, "", cfg.RateLimit.Redis.Timeout.Std())
	}
	out.authenticator = identity.NewAuthenticator(&identity.Options{
		Providers:      providers,
		AllowAnonymous: a.AllowAnonymous,
		Lockout:        identity.NewLockout(lo),
		Logger:         logger,
	})
	so := identity.SignerOptions{Audience: a.Resource, TTL: a.IdentityToken.TTL.Std()}
	if a.IdentityToken.KeyFile != "" {
		k, err := identity.LoadSigningKey(cfg.Path(a.IdentityToken.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("authn.identity_token.key_file: %w", err)
		}
		so.Key = k
	}
	var err error
	if out.signer, err = identity.NewSigner(so); err != nil {
		return nil, err
	}
	return out, nil
}

// resourceMetadata is the Protected Resource Metadata document (RFC 9728)
// the configuration describes; authorization_servers defaults to the JWT
// providers' issuers.
func resourceMetadata(cfg *config.Config) identity.ResourceMetadata {
	a := cfg.Authn
	m := identity.ResourceMetadata{Resource: a.Resource, AuthorizationServers: a.AuthorizationServers, ScopesSupported: a.ScopesSupported}
	if len(a.AuthorizationServers) == 0 {
		for _, p := range a.Providers {
			if p.JWT != nil && !slices.Contains(m.AuthorizationServers, p.JWT.Issuer) {
				m.AuthorizationServers = append(m.AuthorizationServers, p.JWT.Issuer)
			}
		}
	}
	return m
}

func buildProvider(cfg *config.Config, pc config.Provider, logger *slog.Logger, tel *telemetry.Providers) (identity.Provider, error) {
	var (
		mp metric.MeterProvider
		tp trace.TracerProvider
	)
	if tel != nil {
		mp, tp = tel.Meter, tel.Tracer
	}
	switch {
	case pc.JWT != nil:
		j := pc.JWT
		auds := slices.Clone(j.Audiences)
		if r := cfg.Authn.Resource; r != "" && !slices.Contains(auds, r) {
			auds = append(auds, r)
		}
		return identity.NewJWT(&identity.JWTOptions{
			Name:       pc.Name,
			Issuer:     j.Issuer,
			Audiences:  auds,
			JWKSURL:    j.JWKSURL,
			JWKSFile:   cfg.Path(j.JWKSFile),
			Discovery:  j.Discovery,
			Algorithms: j.Algorithms,
			ClockSkew:  j.ClockSkew.Std(),
			Claims: identity.ClaimNames{
				Subject:  j.Claims["subject"],
				Roles:    j.Claims["roles"],
				Scopes:   j.Claims["scopes"],
				ClientID: j.Claims["client_id"],
			},
			Logger:         logger,
			MeterProvider:  mp,
			TracerProvider: tp,
		})
	case pc.APIKey != nil:
		return identity.NewAPIKey(&identity.APIKeyOptions{Name: pc.Name, Header: pc.APIKey.Header, KeysFile: cfg.Path(pc.APIKey.KeysFile), Logger: logger})
	case pc.Introspection != nil:
		in := pc.Introspection
		secret, err := os.ReadFile(cfg.Path(in.ClientSecretFile))
		if err != nil {
			return nil, fmt.Errorf("client_secret_file: %w", err)
		}
		return identity.NewIntrospection(&identity.IntrospectionOptions{
			Name:           pc.Name,
			URL:            in.URL,
			ClientID:       in.ClientID,
			ClientSecret:   strings.TrimSpace(string(secret)),
			CacheTTL:       in.CacheTTL.Std(),
			Timeout:        in.Timeout.Std(),
			Audiences:      in.Audiences,
			Logger:         logger,
			MeterProvider:  mp,
			TracerProvider: tp,
		})
	case pc.MTLS != nil:
		return identity.NewMTLS(&identity.MTLSOptions{Name: pc.Name, TrustDomain: pc.MTLS.TrustDomain})
	case pc.Basic != nil:
		return identity.NewBasic(&identity.BasicOptions{Name: pc.Name, UsersFile: cfg.Path(pc.Basic.UsersFile), Logger: logger, MeterProvider: mp})
	}
	return nil, fmt.Errorf("no provider kind set")
}
