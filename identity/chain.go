package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/policy"
)

// LockedError refuses a request from a source address or with a credential
// that failed too often (429 with Retry-After).
type LockedError struct {
	RetryAfter time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("too many authentication failures; retry after %s", e.RetryAfter.Round(time.Second))
}

// Options configure an [Authenticator].
type Options struct {
	// Providers are tried in order.
	Providers []Provider
	// AllowAnonymous lets requests without any credential through as the
	// anonymous identity; the policy still decides.
	AllowAnonymous bool
	// Lockout, when not nil, blocks source addresses and credentials after
	// repeated failures.
	Lockout *Lockout
	// Logger receives authentication failures (never the credential); nil
	// discards.
	Logger *slog.Logger
}

// Authenticator finds out who is calling by asking its providers in order.
// It is safe for concurrent use.
type Authenticator struct {
	opts   Options
	logger *slog.Logger
}

// NewAuthenticator returns an Authenticator for opts.
func NewAuthenticator(opts *Options) *Authenticator {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{opts: o, logger: logger}
}

// Authenticate returns who is calling. The first provider that recognizes
// the request's credential decides. The error is one of:
//
//   - ErrNoCredential: no credential and anonymous callers are not allowed
//     (401 with a bare Bearer challenge);
//   - *Error: a credential was presented and failed (Invalid, Malformed:
//     401 invalid_token / invalid_request), or cannot be checked now
//     (Unavailable: 503);
//   - *LockedError: the source address or credential is locked out (429).
func (a *Authenticator) Authenticate(ctx context.Context, r *Request) (res *Result, err error) {
	if span := startSpan(ctx); span != nil {
		ctx = trace.ContextWithSpan(ctx, span)
		defer func() { endSpan(span, res, err) }()
	}
	addrKey := ""
	if l := a.opts.Lockout; l != nil && r.SourceAddress != "" {
		addrKey = "addr:" + r.SourceAddress
		if wait, blocked := l.Blocked(ctx, addrKey); blocked {
			return nil, &LockedError{RetryAfter: wait}
		}
	}
	res, err = a.authenticate(ctx, r)
	var ie *Error
	if !errors.As(err, &ie) || ie.Kind == Unavailable {
		return res, err
	}
	a.logger.LogAttrs(ctx, slog.LevelInfo, "authentication failed",
		slog.String("provider", ie.Provider), slog.String("description", ie.Description),
		slog.String("source_address", r.SourceAddress), slog.Any("error", ie.Err))
	if l := a.opts.Lockout; l != nil {
		keys := make([]string, 0, 2)
		if addrKey != "" {
			keys = append(keys, addrKey)
		}
		if ie.CredentialKey != "" {
			credKey := "cred:" + ie.CredentialKey
			if wait, blocked := l.Blocked(ctx, credKey); blocked {
				return nil, &LockedError{RetryAfter: wait}
			}
			keys = append(keys, credKey)
		}
		l.Fail(ctx, keys...)
	}
	return nil, err
}

func (a *Authenticator) authenticate(ctx context.Context, r *Request) (*Result, error) {
	presented := false
	for _, p := range a.opts.Providers {
		res, err := p.Authenticate(ctx, r)
		switch {
		case err == nil:
			return res, nil
		case errors.Is(err, ErrNoCredential):
			continue
		case errors.Is(err, ErrNotMine):
			presented = true
			continue
		default:
			return nil, err
		}
	}
	if presented {
		return nil, &Error{Kind: Invalid, Provider: "authn", Description: "the credential is not accepted by any provider",
			CredentialKey: CredentialKey("", r.Headers["authorization"])}
	}
	if a.opts.AllowAnonymous {
		return &Result{Identity: policy.Anonymous()}, nil
	}
	return nil, ErrNoCredential
}

const tracerName = "github.com/portcullis-mcp/portcullis/identity"

// startSpan starts the portcullis.identity span under the span of ctx, with
// that span's provider, or returns nil when the parent is not recording.
func startSpan(ctx context.Context) trace.Span {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return nil
	}
	_, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "portcullis.identity", trace.WithSpanKind(trace.SpanKindInternal))
	return span
}

// endSpan records which provider authenticated the caller (or why nobody
// did) and ends span. Credentials, subjects and error texts are never
// recorded.
func endSpan(span trace.Span, res *Result, err error) {
	var ie *Error
	var le *LockedError
	result := "ok"
	switch {
	case err == nil:
		if res != nil {
			span.SetAttributes(attribute.String("portcullis.identity.provider", res.Identity.Provider),
				attribute.String("portcullis.identity.kind", res.Identity.Kind),
				attribute.Bool("portcullis.identity.authenticated", res.Identity.Authenticated))
		}
	case errors.Is(err, ErrNoCredential):
		result = "no_credential"
	case errors.As(err, &le):
		result = "locked_out"
	case errors.As(err, &ie):
		span.SetAttributes(attribute.String("portcullis.identity.provider", ie.Provider))
		switch ie.Kind {
		case Unavailable:
			result = "unavailable"
			span.SetStatus(codes.Error, "authentication unavailable")
		case Malformed:
			result = "malformed"
		default:
			result = "invalid"
		}
	default:
		result = "error"
		span.SetStatus(codes.Error, "authentication failed")
	}
	span.SetAttributes(attribute.String("portcullis.identity.result", result))
	span.End()
}
