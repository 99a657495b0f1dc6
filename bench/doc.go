// Package bench holds the load generator and the scenarios that measure
// Check, ShouldRateLimit and MCP calls side by side with a null server.
package bench
