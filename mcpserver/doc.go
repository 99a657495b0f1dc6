// Package mcpserver is the MCP server bundled with Portcullis (portcullis
// mcp): streamable HTTP and stdio transports on the official Go SDK,
// built-in tools, a bridge that re-exposes other MCP servers, and the same
// policy enforced in-process.
package mcpserver
