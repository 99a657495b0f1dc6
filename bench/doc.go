// Package bench holds the load generator and the scenarios that measure
// Check, ShouldRateLimit and MCP calls side by side with a null server.
// Its command is bench/cmd/bench (`make bench`); bench/README.md explains
// the scenarios and shows the latest table. Nothing else in the module
// imports this package.
//
// # Load
//
// [Run] offers a [Load] to a [Target] — [GRPCTarget] for Envoy's
// Authorization and RateLimitService APIs at any address, [MCPTarget] for
// tools/call on any streamable HTTP MCP endpoint — in one of two modes:
// [Closed] (N workers back to back: the maximum throughput) or [Open] (a
// fixed arrival rate, latency measured from each request's scheduled send
// time, so a server that falls behind is charged for the queue it causes).
// Latencies go into HDR histograms, one per worker. [Meter]s sample the
// server process ([ProcMeter]: CPU seconds and peak RSS from /proc) and
// Redis ([RedisMeter]: INFO commandstats) at the edges of the measured
// window.
//
//	reqs, _ := bench.ReadMessages(func() *authv3.CheckRequest { return new(authv3.CheckRequest) }, "requests.json")
//	target, _ := bench.NewCheckTarget("127.0.0.1:9191", 4, reqs)
//	res, _ := bench.Run(ctx, target, bench.Load{Mode: bench.Open, Rate: 5000, Workers: 128, Duration: 10 * time.Second})
//	fmt.Println(res.Line())
//
// # Comparisons
//
// [Compare] starts two [Server]s — a baseline ([NewNullServer], which
// answers OK at once, or [NewBareMCPServer]) and the subject (Portcullis) —
// and measures both in closed loop and then in open loop at fractions of
// the subject's maximum, alternating baseline and subject in every round so
// that drift of a shared machine hits both. Every figure of the subject is
// reported as a ratio to the baseline measured seconds before it.
// [WriteChart] draws latency percentiles against offered load as SVG;
// [WriteTable] prints the headline numbers as Markdown.
//
// # Scenarios
//
// [Scenarios] lists the realistic mixes of bench/scenarios/<name>/: a
// Portcullis configuration, its policy, key and limit files, and fixed
// requests in protojson, or a generator for requests that need fresh keys
// or many distinct subjects ([Scenario.Prepare]).
package bench
