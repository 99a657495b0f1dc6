package bench

import (
	"fmt"
	"net/http"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// NewTarget returns the function that makes the load target of the
// workspace's kind for a started server, reading the request files once.
// conns is the number of gRPC connections.
func (w *Workspace) NewTarget(conns int) (func(r *Running) (Target, func(), error), error) {
	switch w.Scenario.Kind {
	case KindCheck:
		reqs, err := ReadMessages(func() *authv3.CheckRequest { return new(authv3.CheckRequest) }, w.Requests...)
		if err != nil {
			return nil, err
		}
		return func(r *Running) (Target, func(), error) {
			t, err := NewCheckTarget(r.Addr, conns, reqs)
			if err != nil {
				return nil, nil, err
			}
			return t, func() { _ = t.Close() }, nil
		}, nil
	case KindRateLimit:
		reqs, err := ReadMessages(func() *rlsv3.RateLimitRequest { return new(rlsv3.RateLimitRequest) }, w.Requests...)
		if err != nil {
			return nil, err
		}
		return func(r *Running) (Target, func(), error) {
			t, err := NewRateLimitTarget(r.Addr, conns, reqs)
			if err != nil {
				return nil, nil, err
			}
			return t, func() { _ = t.Close() }, nil
		}, nil
	case KindMCP:
		calls, err := ReadToolCalls(w.Requests...)
		if err != nil {
			return nil, err
		}
		headers := w.MCPHeaders()
		return func(r *Running) (Target, func(), error) {
			tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}
			t, err := NewMCPTarget(MCPOptions{URL: r.Addr, Calls: prefixTools(calls, r.ToolPrefix), Headers: headers, Client: &http.Client{Transport: tr}})
			if err != nil {
				return nil, nil, err
			}
			return t, tr.CloseIdleConnections, nil
		}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", w.Scenario.Kind)
}

// PortcullisProcess returns Portcullis serving the workspace: `portcullis
// serve` (ext_authz and rate limit) or `portcullis mcp`, from the binary
// bin, on free loopback ports. redisURL is the Redis of the rl-redis
// configuration.
func (w *Workspace) PortcullisProcess(bin, redisURL string) (*Process, error) {
	var addrs [3]string
	for i := range addrs {
		a, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	grpcAddr, adminAddr, mcpAddr := addrs[0], addrs[1], addrs[2]
	p := &Process{
		Label: "portcullis", Path: bin, Args: []string{"serve", "--config", w.Config},
		Env:  w.Env(grpcAddr, adminAddr, mcpAddr, redisURL),
		Addr: grpcAddr, AdminAddr: adminAddr,
		// Health turns SERVING once the policy is loaded; /readyz also
		// waits for the identity providers (the JWKS).
		Ready: AllReady(GRPCReady(authv3.Authorization_ServiceDesc.ServiceName), HTTPReady("http://"+adminAddr+"/readyz")),
	}
	if w.Scenario.Kind == KindMCP {
		// portcullis mcp serves no admin port.
		p.Args[0], p.Addr, p.AdminAddr = "mcp", "http://"+mcpAddr+"/mcp", ""
		var first []ToolCall
		if up := w.Scenario.Upstream; up != "" {
			// The bridged tools appear once the upstream is connected:
			// ready when the first call is answered through the bridge.
			calls, err := ReadToolCalls(w.Requests...)
			if err != nil {
				return nil, err
			}
			p.ToolPrefix = up + "."
			first = prefixTools(calls[:1], p.ToolPrefix)
		}
		p.Ready = MCPReady(w.MCPHeaders(), first...)
	}
	return p, nil
}

// prefixTools returns calls with prefix put before each tool's name.
func prefixTools(calls []ToolCall, prefix string) []ToolCall {
	if prefix == "" {
		return calls
	}
	out := make([]ToolCall, len(calls))
	for i, c := range calls {
		out[i] = ToolCall{Name: prefix + c.Name, Arguments: c.Arguments}
	}
	return out
}

// BaselineProcess returns the baseline of the workspace, run as `exe null`
// (the null gRPC server) or `exe baremcp` (the bare go-sdk MCP server):
// exe is the bench command.
func (w *Workspace) BaselineProcess(exe string) (*Process, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	if w.Scenario.Kind == KindMCP {
		return &Process{Label: "bare-mcp", Path: exe, Args: []string{"baremcp", "-listen", addr},
			Addr: "http://" + addr + "/mcp", Ready: MCPReady(nil)}, nil
	}
	return &Process{Label: "null", Path: exe, Args: []string{"null", "-listen", addr},
		Addr: addr, Ready: GRPCReady("")}, nil
}
