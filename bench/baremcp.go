package bench

import (
	"context"
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

// NewBareMCPServer returns an HTTP server with nothing but the official Go
// SDK's streamable HTTP handler and an echo tool that behaves like
// Portcullis's: the baseline of the mcp-call scenario. Its handler options
// and HTTP timeouts are those of `portcullis mcp` (stateless, the same body
// limit), so the difference measured is what Portcullis adds — identity
// verification, policy, audit, hardening, telemetry.
func NewBareMCPServer() *http.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "bare", Version: "0"}, nil)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "echo",
		Description: "Return the given text unchanged.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true},
	}, func(_ context.Context, _ *mcp.CallToolRequest, in BareEchoInput) (*mcp.CallToolResult, BareEchoOutput, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, BareEchoOutput(in), nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{
		Stateless:           true,
		MaxRequestBodyBytes: 1 << 20,
	})
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}
