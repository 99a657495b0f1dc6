package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/portcullis-mcp/portcullis/extauthz"
	"github.com/portcullis-mcp/portcullis/internal/admin"
	"github.com/portcullis-mcp/portcullis/internal/config"
	"github.com/portcullis-mcp/portcullis/internal/grpcopts"
	"github.com/portcullis-mcp/portcullis/internal/telemetry"
	"github.com/portcullis-mcp/portcullis/policy"
)

func serveCmd(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path, getenv)
	if err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(stderr, cfg.Telemetry.LogLevel, cfg.Telemetry.LogFormat)
	if err != nil {
		return usageError{err}
	}
	audit, closeAudit, err := auditLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeAudit()
	return serveWith(ctx, cfg, logger, audit, nil)
}

// listeners are the addresses serve bound, reported once they are open.
type listeners struct{ grpc, admin net.Addr }

// serve runs the gRPC and admin servers until ctx ends, then stops them
// gracefully. When ready is not nil, it receives the bound addresses. The
// audit stream goes where the configuration says, stderr being the
// process's.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready chan<- listeners) error {
	audit, closeAudit, err := auditLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	defer closeAudit()
	return serveWith(ctx, cfg, logger, audit, ready)
}

// maxCheckRequest is the largest gRPC message serve accepts: gRPC's 4 MiB,
// or more when extauthz.max_body_bytes asks for it, so that Check itself
// answers an oversized body (413) rather than gRPC refusing the call
// (which Envoy, failing closed, turns into 503). The headers and the MCP
// filter's metadata come on top of the body.
func maxCheckRequest(cfg *config.Config) int {
	return max(4<<20, cfg.ExtAuthz.MaxBodyBytes+2*cfg.ExtAuthz.MaxHeaderBytes+256<<10)
}

// auditFlushInterval bounds how long an audit record waits in its batch.
const auditFlushInterval = 100 * time.Millisecond

// auditLogger opens the audit stream telemetry.audit configures: stderr
// (the given writer), a file (appended to, created 0600: the records name
// callers), or none (a nil logger). The returned func flushes the records
// and closes the file.
func auditLogger(cfg *config.Config, stderr io.Writer) (*slog.Logger, func(), error) {
	a := cfg.Telemetry.Audit
	var w io.Writer
	closeFn := func() {}
	switch a.Output {
	case config.AuditNone:
		return nil, closeFn, nil
	case config.AuditStderr, "":
		w = stderr
	default:
		f, err := os.OpenFile(cfg.Path(a.Output), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry.audit.output: %w", err)
		}
		w, closeFn = f, func() { _ = f.Close() }
	}
	// Records are batched (a write per record was a tenth of a Check's
	// CPU); closing flushes them.
	fw := telemetry.NewFlushingWriter(w, auditFlushInterval)
	l, err := telemetry.NewAuditLogger(fw, a.Format)
	if err != nil {
		closeFn()
		return nil, nil, usageError{fmt.Errorf("telemetry.audit.format: %w", err)}
	}
	return l, func() { _ = fw.Close(); closeFn() }, nil
}

// serveWith is serve with the audit stream given (nil: none).
func serveWith(ctx context.Context, cfg *config.Config, logger, audit *slog.Logger, ready chan<- listeners) error {
	tel, err := telemetry.Setup(ctx, cfg.Telemetry.ServiceName)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.WithoutCancel(ctx)) }()
	mp, metricsHandler := tel.Meter, tel.MetricsHandler

	po := policyOptions(cfg, logger.With(slog.String("component", "policy")), mp)
	po.TracerProvider = tel.Tracer
	engine, err := policy.New(ctx, po)
	if err != nil {
		return usageError{fmt.Errorf("policy: %w", err)}
	}
	var rdb redis.UniversalClient
	if cfg.RateLimit.Backend == "redis" {
		if rdb, err = redisClient(cfg.RateLimit.Redis); err != nil {
			return err
		}
		defer rdb.Close()
	}
	an, err := buildAuthnWith(cfg, rdb, logger.With(slog.String("component", "identity")), tel)
	if err != nil {
		return usageError{err}
	}
	authz := extauthz.New(engine, &extauthz.Options{
		Authenticator:       an.authenticator,
		Signer:              an.signer,
		ForwardCredentials:  cfg.Authn.ForwardCredentials,
		MCPPaths:            cfg.ExtAuthz.MCPPaths,
		MaxBodyBytes:        cfg.ExtAuthz.MaxBodyBytes,
		MaxJSONDepth:        cfg.ExtAuthz.MaxJSONDepth,
		MaxHeaderBytes:      cfg.ExtAuthz.MaxHeaderBytes,
		ResourceMetadataURL: cfg.Authn.ResourceMetadataURL,
		Logger:              logger.With(slog.String("component", "extauthz")),
		Audit:               audit,
		Tracer:              tel.Tracer,
		Propagator:          tel.Propagator,
		RecordSubject:       cfg.Telemetry.RecordSubject,
		MeterProvider:       mp,
	})

	rl, err := buildRateLimit(cfg, rdb, logger.With(slog.String("component", "ratelimit")), mp)
	if err != nil {
		return err
	}

	// The codec is how this server reads its messages, not a transport
	// option: the benchmark's null server keeps generated code's.
	opts := append(grpcopts.Server(), grpc.MaxRecvMsgSize(maxCheckRequest(cfg)), grpc.ForceServerCodecV2(extauthz.Codec()))
	if cfg.GRPC.TLS.CertFile != "" {
		tc, err := serverTLS(cfg)
		if err != nil {
			return usageError{err}
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	// The stats handler records the registered methods by name, others
	// as _OTHER; gs is set before the first RPC asks for them.
	var gs *grpc.Server
	opts = append(opts, grpc.StatsHandler(telemetry.NewGRPCServerHandler(&telemetry.GRPCServerOptions{
		TracerProvider: tel.Tracer,
		MeterProvider:  tel.Meter,
		Propagator:     tel.Propagator,
		Services:       func() map[string]grpc.ServiceInfo { return gs.GetServiceInfo() },
	})))
	gs = grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, authz)
	rlsv3.RegisterRateLimitServiceServer(gs, rl.service)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	adminSrv := &http.Server{
		Handler: otelhttp.NewHandler(admin.Handler(admin.Options{
			Checks: map[string]admin.Check{
				"policy": func() (bool, any) { st := engine.Status(); return st.Ready, st },
				"authn": func() (bool, any) {
					for _, ready := range an.ready {
						if !ready() {
							return false, "keys not loaded yet"
						}
					}
					return true, nil
				},
			},
			Metrics: metricsHandler,
			Routes: map[string]http.Handler{
				"GET /.well-known/oauth-protected-resource":        admin.JSON(an.metadata.JSON()),
				"GET /.well-known/oauth-protected-resource/{p...}": admin.JSON(an.metadata.JSON()),
				"GET /identity/jwks.json":                          admin.JSON(an.signer.JWKS()),
			},
		}), "admin", otelhttp.WithTracerProvider(tel.Tracer), otelhttp.WithMeterProvider(tel.Meter),
			otelhttp.WithPropagators(tel.Propagator), otelhttp.WithFilter(traceAdminRequest)),
		ReadHeaderTimeout: 5 * time.Second,
	}

	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", cfg.GRPC.Listen)
	if err != nil {
		return fmt.Errorf("grpc.listen: %w", err)
	}
	adminLis, err := lc.Listen(ctx, "tcp", cfg.Admin.Listen)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("admin.listen: %w", err)
	}
	logger.Info("serving", slog.String("grpc", grpcLis.Addr().String()), slog.String("admin", adminLis.Addr().String()))
	if ready != nil {
		ready <- listeners{grpc: grpcLis.Addr(), admin: adminLis.Addr()}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return engine.Run(gctx) })
	for _, run := range append(an.runs, rl.runs...) {
		g.Go(func() error { return run(gctx) })
	}
	g.Go(func() error {
		select {
		case <-engine.Loaded():
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
		case <-gctx.Done():
		}
		return nil
	})
	g.Go(func() error { return gs.Serve(grpcLis) })
	g.Go(func() error { return serveHTTP(adminSrv, adminLis) })
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down", slog.Any("cause", context.Cause(gctx)))
		hs.Shutdown() // health checks now answer NOT_SERVING
		grace := cfg.GRPC.ShutdownGrace.Std()
		sctx, cancel := context.WithTimeoutCause(context.WithoutCancel(gctx), grace,
			fmt.Errorf("shutdown grace of %s ran out", grace))
		defer cancel()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			logger.Warn("forcing stop", slog.Any("cause", context.Cause(sctx)))
			gs.Stop()
		}
		return adminSrv.Shutdown(sctx)
	})
	err = g.Wait()
	if ctx.Err() != nil && err == nil {
		logger.Info("stopped")
	}
	return err
}

// traceAdminRequest leaves scrapes and liveness probes out of traces.
func traceAdminRequest(r *http.Request) bool {
	switch r.URL.Path {
	case "/metrics", "/healthz", "/readyz":
		return false
	}
	return true
}

// serverTLS builds the gRPC server's TLS configuration; with a client CA,
// client certificates are required and verified.
func serverTLS(cfg *config.Config) (*tls.Config, error) {
	t := cfg.GRPC.TLS
	cert, err := tls.LoadX509KeyPair(cfg.Path(t.CertFile), cfg.Path(t.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("grpc.tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.Path(t.ClientCAFile))
		if err != nil {
			return nil, fmt.Errorf("grpc.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("grpc.tls.client_ca_file: no certificates found")
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// serveHTTP serves hs on lis until Shutdown; http.ErrServerClosed is a
// clean stop.
func serveHTTP(hs *http.Server, lis net.Listener) error {
	if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
