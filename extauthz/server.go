package extauthz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/policy"
)

// Decider makes policy decisions. *policy.Engine is one.
type Decider interface {
	Eval(ctx context.Context, in *policy.Input) (policy.Decision, error)
}

// Authenticator finds out who is calling. *identity.Authenticator is one.
type Authenticator interface {
	Authenticate(ctx context.Context, r *identity.Request) (*identity.Result, error)
}

// IdentitySigner signs the x-portcullis-identity token. *identity.Signer is
// one.
type IdentitySigner interface {
	Token(id *policy.Identity, mcpMethod, mcpName string) (string, error)
}

// Options configure a [Server]. The zero value is usable.
type Options struct {
	// Authenticator authenticates callers; nil treats every caller as
	// anonymous.
	Authenticator Authenticator
	// ForwardCredentials keeps the credential header on allowed requests;
	// by default it is removed so the upstream never sees it.
	ForwardCredentials bool
	// Signer, when set, adds the x-portcullis-identity token to allowed
	// requests.
	Signer IdentitySigner
	// MCPPaths are the paths of the MCP endpoint ("/mcp" when empty): a
	// request to one of them must carry a valid MCP message.
	MCPPaths []string
	// MaxBodyBytes bounds the body that is parsed (1 MiB when 0); a larger
	// one is refused with 413.
	MaxBodyBytes int
	// MaxJSONDepth bounds JSON nesting (64 when 0).
	MaxJSONDepth int
	// MaxHeaderBytes bounds the request headers, names and values added up
	// (64 KiB when 0); more is refused with 431.
	MaxHeaderBytes int
	// ResourceMetadataURL is advertised in WWW-Authenticate challenges
	// (RFC 9728).
	ResourceMetadataURL string
	// Logger receives one record per decision (at debug when Audit is set:
	// the audit stream has them) and failures; nil discards.
	Logger *slog.Logger
	// Audit receives one record per decision (see [Server.Check]); nil
	// writes none.
	Audit *slog.Logger
	// Tracer provides the portcullis.Check span, which joins the trace of
	// the checked request; nil traces nothing.
	Tracer trace.TracerProvider
	// Propagator reads the trace context of the checked request's headers
	// (B3 is read besides it); nil means W3C trace context.
	Propagator propagation.TextMapPropagator
	// RecordSubject records the caller's subject as enduser.id on the
	// portcullis.Check span.
	RecordSubject bool
	// MeterProvider provides the decision metrics; nil means none.
	MeterProvider metric.MeterProvider
}

// Server implements Envoy's Authorization service (ext_authz v3): it builds
// the policy input from a CheckRequest, asks the Decider, and maps the
// decision onto a CheckResponse.
//
// Check never returns a gRPC error for a request it could read: every
// refusal, including a failure to decide, is a denied CheckResponse, so an
// Envoy configured with failure_mode_allow cannot turn an internal error
// into an allow. A Server is safe for concurrent use.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	decider Decider
	opts    Options
	logger  *slog.Logger
	// decisionLevel is the level of the per-decision log line.
	decisionLevel slog.Level
	audit         *slog.Logger // nil when off
	metrics       *checkMetrics

	tracer     trace.Tracer // nil when tracing is off
	propagator propagation.TextMapPropagator

	// resourceMetadata is the challenges' resource_metadata parameter,
	// quoted once; empty when no URL is configured.
	resourceMetadata string
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server deciding with d. It panics if d is nil.
func New(d Decider, opts *Options) *Server {
	if d == nil {
		panic("extauthz: nil Decider")
	}
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if len(o.MCPPaths) == 0 {
		o.MCPPaths = []string{"/mcp"}
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxJSONDepth <= 0 {
		o.MaxJSONDepth = 64
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &Server{decider: d, opts: o, logger: logger, propagator: o.Propagator, decisionLevel: slog.LevelInfo,
		metrics: newCheckMetrics(o.MeterProvider)}
	if o.Audit != nil && o.Audit.Handler() != slog.DiscardHandler {
		srv.audit = o.Audit
		srv.decisionLevel = slog.LevelDebug
	}
	if o.Tracer != nil {
		srv.tracer = o.Tracer.Tracer(tracerName)
	}
	if srv.propagator == nil {
		srv.propagator = propagation.TraceContext{}
	}
	if o.ResourceMetadataURL != "" {
		srv.resourceMetadata = "resource_metadata=" + quote(o.ResourceMetadataURL)
	}
	return srv
}

// Check implements authv3.AuthorizationServer.
//
// Every Check, refusals included, is counted in
// portcullis.extauthz.decisions (by result, reason code, provider and MCP
// method) and timed in portcullis.extauthz.check.duration; with
// Options.Audit it writes one "decision" record: decision_id, trace_id,
// outcome and reason code (plus the policy's reason and dry_run when the
// policy decided), status, source_address, subject, client_id, provider,
// kind, mcp_method, mcp_name, args_sha256 for tools/call and prompts/get
// (telemetry.ArgumentsDigest: never the arguments), latency_us. No header
// and no credential is recorded.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	c := check{start: time.Now(), decisionID: newDecisionID()}
	ctx, span := s.startCheckSpan(ctx, req)
	// After the recovery below: a panic is recorded as the refusal it
	// became.
	defer func() { s.finish(ctx, span, req, &c, resp) }()
	defer func() {
		if p := recover(); p != nil { // a bug must deny, not crash every MCP server behind us
			s.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "panic in Check",
				slog.String("decision_id", c.decisionID), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			c.decision = nil
			resp = s.refusal(&requestError{status: http.StatusServiceUnavailable, code: CodeInternalError,
				reason: ReasonInternalError, message: "authorization is temporarily unavailable"}, c.decisionID)
		}
	}()
	r, rerr := s.buildInput(req)
	if rerr != nil {
		s.logRefusal(ctx, c.decisionID, rerr, c.start)
		return s.refusal(rerr, c.decisionID), nil
	}
	c.r = r
	if rerr := s.authenticate(ctx, req, &c); rerr != nil {
		s.logRefusal(ctx, c.decisionID, rerr, c.start)
		return s.refusal(rerr, c.decisionID), nil
	}
	resp, c.decision = s.decide(ctx, r, c.decisionID, c.start)
	return resp, nil
}

// authenticate sets the caller's identity on c.r, or refuses the request;
// c.provider is the provider that recognized the credential.
func (s *Server) authenticate(ctx context.Context, req *authv3.CheckRequest, c *check) *requestError {
	r := c.r
	if s.opts.Authenticator == nil {
		r.in.Identity = policy.Anonymous()
		return nil
	}
	src := req.GetAttributes().GetSource()
	res, err := s.opts.Authenticator.Authenticate(ctx, &identity.Request{
		Headers:       r.headers,
		SourceAddress: src.GetAddress().GetSocketAddress().GetAddress(),
		Principal:     src.GetPrincipal(),
		Certificate:   src.GetCertificate(),
	})
	if err == nil {
		r.in.Identity = res.Identity
		r.credentialHeader = res.CredentialHeader
		c.provider = res.Identity.Provider
		return nil
	}
	id := mcpID(r)
	var ie *identity.Error
	var le *identity.LockedError
	if errors.As(err, &ie) {
		c.provider = ie.Provider
	}
	switch {
	case errors.Is(err, identity.ErrNoCredential):
		return &requestError{status: http.StatusUnauthorized, code: CodeUnauthorized, reason: ReasonNoCredential,
			message: "authentication required", id: id, challenge: s.challenge("")}
	case errors.As(err, &le):
		secs := int((le.RetryAfter + time.Second - 1) / time.Second)
		return &requestError{status: http.StatusTooManyRequests, code: CodeRateLimited, reason: ReasonLockedOut,
			message: "too many authentication failures", id: id, retryAfter: strconv.Itoa(max(secs, 1))}
	case errors.As(err, &ie) && ie.Kind == identity.Unavailable:
		s.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "authentication unavailable",
			slog.String("provider", ie.Provider), slog.Any("error", ie.Err))
		return &requestError{status: http.StatusServiceUnavailable, code: CodeInternalError, reason: ReasonAuthnUnavailable,
			message: "authentication is temporarily unavailable", id: id}
	case errors.As(err, &ie) && ie.Kind == identity.Malformed:
		return &requestError{status: http.StatusBadRequest, code: CodeInvalidRequest, reason: ReasonInvalidCredential,
			message: ie.Description, id: id,
			challenge: s.challenge(`error="invalid_request", error_description=` + quote(ie.Description))}
	case errors.As(err, &ie):
		return &requestError{status: http.StatusUnauthorized, code: CodeUnauthorized, reason: ReasonInvalidCredential,
			message: ie.Description, id: id,
			challenge: s.challenge(`error="invalid_token", error_description=` + quote(ie.Description))}
	default:
		s.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "authentication failed", slog.Any("error", err))
		return &requestError{status: http.StatusServiceUnavailable, code: CodeInternalError, reason: ReasonAuthnUnavailable,
			message: "authentication is temporarily unavailable", id: id}
	}
}

// Decide evaluates an input built elsewhere (portcullis policy eval) and
// returns the CheckResponse Envoy would get for it, with the decision. The
// error reports a failure to decide; the response then denies with 503.
func (s *Server) Decide(ctx context.Context, in *policy.Input) (*authv3.CheckResponse, policy.Decision, error) {
	r := &request{in: in, headers: map[string]string{}, path: "/"}
	if h, ok := in.Attributes["request"].(map[string]any); ok {
		if h, ok := h["http"].(map[string]any); ok {
			if hs, ok := h["headers"].(map[string]any); ok {
				for k, v := range hs {
					if v, ok := v.(string); ok {
						r.headers[strings.ToLower(k)] = v
					}
				}
			}
		}
	}
	if len(in.ParsedPath) > 0 {
		r.path = "/" + strings.Join(in.ParsedPath, "/")
	}
	resp, d := s.decide(ctx, r, newDecisionID(), time.Now())
	if d == nil {
		return resp, policy.Decision{}, errors.New("the policy could not decide; see the log")
	}
	return resp, *d, nil
}

// decide asks the Decider and maps its answer; the decision is nil when it
// could not be made.
func (s *Server) decide(ctx context.Context, r *request, decisionID string, start time.Time) (*authv3.CheckResponse, *policy.Decision) {
	d, err := s.decider.Eval(ctx, r.in)
	if err != nil {
		reason := ReasonPolicyError
		if errors.Is(err, policy.ErrNotReady) {
			reason = ReasonPolicyNotReady
		}
		s.logger.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "decision failed",
			slog.String("decision_id", decisionID), slog.String("reason", reason), slog.Any("error", err))
		// The client learns only that the decision could not be made.
		return s.refusal(&requestError{
			status: http.StatusServiceUnavailable, code: CodeInternalError, reason: reason,
			message: "authorization is temporarily unavailable", id: mcpID(r),
		}, decisionID), nil
	}
	var resp *authv3.CheckResponse
	if d.Allowed {
		resp = s.okResponse(r, &d, decisionID)
	} else {
		resp = s.deniedResponse(r, &d, decisionID)
	}
	s.logDecision(ctx, decisionID, r, &d, start)
	return resp, &d
}

func (s *Server) logDecision(ctx context.Context, decisionID string, r *request, d *policy.Decision, start time.Time) {
	if !s.logger.Enabled(ctx, s.decisionLevel) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", decisionID),
		slog.Bool("allowed", d.Allowed),
		slog.String("reason", d.Reason),
		slog.String("subject", r.in.Identity.Subject),
		slog.String("path", r.path),
		slog.Duration("duration", time.Since(start)),
	}
	if d.DryRun {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	if c := r.in.MCP; c != nil {
		attrs = append(attrs, slog.String("mcp_method", c.Method), slog.String("mcp_name", c.Name))
	}
	s.logger.LogAttrs(context.WithoutCancel(ctx), s.decisionLevel, "decision", attrs...)
}

func (s *Server) logRefusal(ctx context.Context, decisionID string, e *requestError, start time.Time) {
	s.logger.LogAttrs(context.WithoutCancel(ctx), s.decisionLevel, "decision",
		slog.String("decision_id", decisionID),
		slog.Bool("allowed", false),
		slog.String("reason", e.reason),
		slog.Int("status", e.status),
		slog.Duration("duration", time.Since(start)))
}

// newDecisionID returns a random UUID (version 4) naming one decision in
// logs, metadata and traces.
func newDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// Input builds the policy input for a CheckRequest as Check does, with an
// anonymous identity. The error is a refusal Check would answer with.
func (s *Server) Input(req *authv3.CheckRequest) (*policy.Input, error) {
	r, rerr := s.buildInput(req)
	if rerr != nil {
		return nil, rerr
	}
	r.in.Identity = policy.Anonymous()
	return r.in, nil
}
