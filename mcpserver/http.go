package mcpserver

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// JSON-RPC error codes of refusals made by this server (the same values as
// the gateway's, see extauthz).
const (
	CodeUnauthorized = -32001 // no or bad identity token (401)
	CodeForbidden    = -32003 // origin refused (403 body), as the gateway's policy denial
	// CodeDenied is the JSON-RPC error of a policy denial inside an MCP
	// exchange (tools/call, prompts/get, resources/read). It is not -32003:
	// the go-sdk reserves that code for "client is closing" and its clients
	// report it as a closed connection.
	CodeDenied   = -32010
	CodeTooLarge = -32600 // body over the limit (413), an invalid request
)

// Paths served by [Server.Handler].
const (
	PathMCP              = "/mcp"
	PathResourceMetadata = "/.well-known/oauth-protected-resource"
)

const slogLevelInfo = slog.LevelInfo

func errAttr(err error) slog.Attr { return slog.String("error", err.Error()) }

func (s *Server) buildHandler() http.Handler {
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp }, &mcp.StreamableHTTPOptions{
		Stateless:                  !s.opts.Stateful,
		EventStore:                 s.eventStore(),
		Logger:                     s.sdkLogger,
		DisableLocalhostProtection: s.opts.BehindProxy,
		MaxRequestBodyBytes:        s.opts.MaxBodyBytes,
	})
	mux := http.NewServeMux()
	mux.Handle(PathMCP, s.withIdentity(sdk))
	if len(s.opts.ResourceMetadata) > 0 {
		prm := http.HandlerFunc(s.serveResourceMetadata)
		mux.Handle("GET "+PathResourceMetadata, prm)
		mux.Handle("GET "+PathResourceMetadata+PathMCP, prm)
	}
	return s.harden(mux)
}

func (s *Server) eventStore() mcp.EventStore {
	if !s.opts.Stateful {
		return nil
	}
	return mcp.NewMemoryEventStore(nil)
}

func (s *Server) serveResourceMetadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=300")
	w.Write(s.opts.ResourceMetadata)
}

// CORS preflight answers.
const (
	corsMethods = "GET, POST, DELETE, OPTIONS"
	corsHeaders = "Authorization, Content-Type, Accept, Last-Event-ID, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name"
	corsExpose  = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate"
)

// harden wraps h with the security headers, the Origin check and CORS, and
// the body limit.
func (s *Server) harden(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil {
			hdr.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			hdr.Add("Vary", "Origin")
			if !s.originAllowed(origin) {
				s.logger.LogAttrs(r.Context(), slog.LevelInfo, "origin refused", slog.String("origin", origin))
				writeJSONRPCError(w, http.StatusForbidden, nil, CodeForbidden, "origin not allowed")
				return
			}
			hdr.Set("Access-Control-Allow-Origin", origin)
			hdr.Set("Access-Control-Expose-Headers", corsExpose)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				hdr.Set("Access-Control-Allow-Methods", corsMethods)
				hdr.Set("Access-Control-Allow-Headers", corsHeaders)
				hdr.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if r.ContentLength > s.opts.MaxBodyBytes {
			writeJSONRPCError(w, http.StatusRequestEntityTooLarge, nil, CodeTooLarge,
				fmt.Sprintf("request body exceeds %d bytes", s.opts.MaxBodyBytes))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		}
		h.ServeHTTP(w, r)
	})
}

// originAllowed reports whether a browser Origin may call: a listed
// origin, or a loopback one (http(s)://localhost, 127.0.0.1 or [::1], any
// port) — a page on this very machine. A DNS-rebinding attack still comes
// with the attacker's own origin (http://evil.example) and is refused.
func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.opts.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" && u.Path != "/" {
		return false
	}
	switch strings.ToLower(u.Hostname()) {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	return false
}

// unauthorized answers 401 with a Bearer challenge naming the resource
// metadata and a JSON-RPC error carrying the request id.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, errCode, msg string) {
	var params []string
	if errCode != "" {
		params = append(params, fmt.Sprintf("error=%q", errCode), fmt.Sprintf("error_description=%q", msg))
	}
	if u := s.resourceMetadataURL(r); u != "" {
		params = append(params, fmt.Sprintf("resource_metadata=%q", u))
	}
	challenge := "Bearer"
	if len(params) > 0 {
		challenge += " " + strings.Join(params, ", ")
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeJSONRPCError(w, http.StatusUnauthorized, requestID(r), CodeUnauthorized, msg)
}

func (s *Server) resourceMetadataURL(r *http.Request) string {
	if s.opts.ResourceMetadataURL != "" {
		return s.opts.ResourceMetadataURL
	}
	if len(s.opts.ResourceMetadata) == 0 {
		return ""
	}
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host + PathResourceMetadata + PathMCP
}

// requestID reads the JSON-RPC id of a refused request's body (bounded by
// the body limit); nil when there is none or the body is not one request.
func requestID(r *http.Request) json.RawMessage {
	if r.Method != http.MethodPost || r.Body == nil {
		return nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil
	}
	var msg struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(body, &msg) != nil {
		return nil
	}
	return msg.ID
}

func writeJSONRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
