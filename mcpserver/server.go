package mcpserver

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis-mcp/portcullis/identity"
	"github.com/portcullis-mcp/portcullis/internal/cache"
	"github.com/portcullis-mcp/portcullis/policy"
)

// HeaderIdentity is the header carrying the signed identity token that
// ext_authz adds for the upstream (the same name as extauthz.HeaderIdentity).
const HeaderIdentity = "x-portcullis-identity"

// HeaderDecisionID carries the id of the gateway's decision for the request
// (extauthz.HeaderDecisionID), recorded in the audit record of a tool call
// that came with a verified identity token.
const HeaderDecisionID = "x-portcullis-decision-id"

// verifiedTokens bounds the cache of verified identity tokens: the gateway
// reuses one token per caller and call for half its lifetime.
const verifiedTokens = 8192

// DefaultMaxBodyBytes is the request body limit when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 1 << 20

// Decider decides one MCP call. *policy.Engine satisfies it.
type Decider interface {
	Eval(ctx context.Context, in *policy.Input) (policy.Decision, error)
}

// Options configure a [Server]. The zero Options (or nil) is a server with
// the built-in tools, no in-process policy, and HTTP requests refused for
// want of an identity key (RequireIdentity is false in the zero value, but
// cmd sets it to true by default behind a mesh).
type Options struct {
	// Name and Version are the implementation info sent at initialize;
	// defaults "portcullis" and "dev".
	Name, Version string
	// Decider is the policy; nil means no in-process policy (everything
	// the gateway let through is allowed).
	Decider Decider
	// IdentityKey verifies the x-portcullis-identity token. Nil with
	// RequireIdentity refuses every HTTP request with 401; nil without it
	// ignores the header (callers are anonymous).
	IdentityKey ed25519.PublicKey
	// Audience is the expected aud of the identity token (authn.resource);
	// empty means not checked.
	Audience string
	// RequireIdentity refuses an HTTP request without a valid identity
	// token with 401. A token that is present but invalid is always refused.
	RequireIdentity bool
	// StdioIdentity is the identity the policy sees for requests that did
	// not arrive over HTTP (stdio, in-memory transports).
	StdioIdentity policy.Identity
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may call the HTTP endpoint. A request with an Origin header not listed
	// is refused with 403; CORS headers are sent for listed origins only.
	AllowedOrigins []string
	// BehindProxy disables the SDK's loopback Host check, which refuses a
	// non-loopback Host arriving on a loopback address: Envoy forwards the
	// public Host to 127.0.0.1. The Origin check stays on.
	BehindProxy bool
	// Stateful keeps sessions (Mcp-Session-Id) with an in-memory event store
	// for resumability; the default is stateless.
	Stateful bool
	// MaxBodyBytes limits request bodies (413 over it); 0 means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// ResourceMetadata is the Protected Resource Metadata document (RFC
	// 9728), served at /.well-known/oauth-protected-resource and
	// /.well-known/oauth-protected-resource/mcp when set.
	ResourceMetadata []byte
	// ResourceMetadataURL is the URL named in WWW-Authenticate challenges
	// (authn.resource_metadata_url). Empty with ResourceMetadata set means
	// derived from the request (scheme, Host, /.well-known/...).
	ResourceMetadataURL string
	// Extra, when set, is called with the MCP server after the built-in
	// tools are added: the bridge adds its tools, resources and prompts
	// there. Everything it adds is subject to the same policy and audit.
	Extra func(*mcp.Server)
	// KnownTool reports whether a tool that Extra added exists, so that its
	// calls are labelled with its name in metrics; nil: only the built-in
	// tools are, others are labelled "_unknown". (*Bridge).HasTool is one.
	KnownTool func(name string) bool
	// Logger receives operational logs; nil discards. Audit receives one
	// record per tool call; nil discards.
	Logger, Audit *slog.Logger
	// MeterProvider provides the tool call metrics; nil means none.
	MeterProvider metric.MeterProvider
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the bundled MCP server. Build it with [New]; its methods are safe
// for concurrent use. New starts no goroutines: [Server.RunStdio] blocks
// until the client goes away, and [Server.Handler] serves HTTP.
type Server struct {
	opts   Options
	logger *slog.Logger
	// sdkLogger is the go-sdk's: logger with its info records at debug.
	sdkLogger *slog.Logger
	audit     *slog.Logger
	now       func() time.Time
	mcp       *mcp.Server
	handler   http.Handler
	builtin   map[string]struct{} // names of the built-in tools
	metrics   *toolMetrics
	// verified remembers good identity tokens until they expire.
	verified *cache.Map[[sha256.Size]byte, *identity.IdentityClaims]
}

// New builds a Server from opts (nil means defaults); opts is copied.
func New(opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Name == "" {
		o.Name = "portcullis"
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxBodyBytes < 0 {
		return nil, errors.New("mcpserver: MaxBodyBytes must not be negative")
	}
	o.AllowedOrigins = append([]string(nil), o.AllowedOrigins...)
	s := &Server{opts: o, logger: o.Logger, audit: o.Audit, now: o.Now, metrics: newToolMetrics(o.MeterProvider),
		verified: cache.New[[sha256.Size]byte, *identity.IdentityClaims](verifiedTokens)}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.audit == nil {
		s.audit = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.sdkLogger = slog.New(demoteInfo{s.logger.Handler()})
	s.mcp = mcp.NewServer(&mcp.Implementation{Name: o.Name, Version: o.Version}, &mcp.ServerOptions{Logger: s.sdkLogger})
	s.addTools()
	if o.Extra != nil {
		o.Extra(s.mcp)
	}
	s.mcp.AddReceivingMiddleware(s.authzMiddleware)
	s.handler = s.buildHandler()
	return s, nil
}

// MCPServer returns the underlying SDK server, for in-memory connections
// and tests. Requests that reach it without HTTP are decided with
// Options.StdioIdentity.
func (s *Server) MCPServer() *mcp.Server { return s.mcp }

// Handler returns the HTTP handler: /mcp (streamable HTTP) and, when
// configured, the Protected Resource Metadata routes, with the hardening
// described in the package documentation.
func (s *Server) Handler() http.Handler { return s.handler }

// RunStdio serves one client on in and out (newline-delimited JSON-RPC)
// until ctx is done or in reaches EOF. Every call is decided in-process with
// Options.StdioIdentity. Nothing but protocol messages is written to out.
func (s *Server) RunStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	t := &mcp.IOTransport{Reader: io.NopCloser(in), Writer: nopWriteCloser{out}}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "mcp stdio session started")
	err := s.mcp.Run(ctx, t)
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || errors.Is(err, mcp.ErrConnectionClosed) {
		return nil
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
