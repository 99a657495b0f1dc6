package bench

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BareEchoInput is the input of the bare server's echo tool, the same
// shape as Portcullis's built-in echo.
type BareEchoInput struct {
	Text string `json:"text" jsonschema:"the text to return"`
}

// BareEchoOutput is its structured output.
type BareEchoOutput struct {
	Text string `json:"text" jsonschema:"the text that was sent"`
}

// newBareServer returns the official Go SDK's MCP server with nothing but
// an echo tool that behaves like Portcullis's.
func newBareServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "bare", Version: "0"}, nil)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "echo",
		Description: "Return the given text unchanged.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in BareEchoInput) (*mcp.CallToolResult, BareEchoOutput, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, BareEchoOutput(in), nil
	})
	return s
}

// NewBareMCPServer returns an HTTP server with nothing but the official Go
// SDK's streamable HTTP handler and an echo tool that behaves like
// Portcullis's: the baseline of the mcp-call and mcp-bridge scenarios. Its
// handler options and HTTP timeouts are those of `portcullis mcp`
// (stateless, the same body limit), so the difference measured is what
// Portcullis adds — identity verification, policy, audit, hardening,
// telemetry (and, for mcp-bridge, the bridge and its upstream).
func NewBareMCPServer() *http.Server {
	s := newBareServer()
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{
		Stateless:           true,
		MaxRequestBodyBytes: 1 << 20,
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}

// ServeBareMCPStdio serves the same echo tool to one client on in and out
// (newline-delimited JSON-RPC, the stdio transport) until ctx is done or
// in ends: the upstream that mcp-bridge's Portcullis runs as a child
// process, as it would run any stdio MCP server.
func ServeBareMCPStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	err := newBareServer().Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(in), Writer: nopWriteCloser{out}})
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || errors.Is(err, mcp.ErrConnectionClosed) {
		return nil
	}
	return err
}

// nopWriteCloser leaves closing out to its owner.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
