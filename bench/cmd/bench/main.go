// Command bench measures Portcullis side by side with a null server: see
// bench/README.md, or run it with -h.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis-mcp/portcullis/bench"
	"github.com/portcullis-mcp/portcullis/internal/gcfloor"
)

const usage = `bench: load generator and side-by-side comparisons for Portcullis.

Usage:
  bench compare [flags] [SCENARIO...]   Portcullis vs its baseline for each scenario
                                        (all when none named); JSON + SVG into -results
  bench run [flags]                     drive any gRPC address or MCP endpoint once
  bench soak [flags]                    authz-jwt and rl-redis together at half load for
                                        -duration, with faults injected; fails on wrong
                                        answers, leaks or unexplained errors
  bench null [-listen ADDR]             the null gRPC server (Authorization,
                                        RateLimitService, health answering OK at once)
  bench baremcp [-listen ADDR|-stdio]   a bare go-sdk MCP server with an echo tool, on
                                        streamable HTTP or on stdio
  bench chart FILE.json...              redraw the SVG of comparison results
  bench report FILE.json...             print comparison results as a Markdown table
  bench scenarios                       list the scenarios

Run "bench COMMAND -h" for the flags of a command.
`

// errUsage is a command-line mistake: exit status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"compare": compareCmd, "run": runCmd, "soak": soakCmd, "null": nullCmd, "baremcp": bareMCPCmd,
		"chart": chartCmd, "report": reportCmd, "scenarios": scenariosCmd,
	}
	var err error
	switch name := args[0]; {
	case name == "-h" || name == "--help" || name == "help":
		fmt.Fprint(stdout, usage)
		return 0
	case cmds[name] != nil:
		err = cmds[name](ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		fmt.Fprintf(stderr, "bench: unknown command %q\n", name)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
}

func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: bench %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func compareCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("compare", "[SCENARIO...]", stderr)
	scenarios := fs.String("scenarios", "bench/scenarios", "directory of the scenarios")
	results := fs.String("results", "bench/results", "directory the JSON and SVG results are written to")
	duration := fs.Duration("duration", 3*time.Second, "measured time of every run")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before every run")
	rounds := fs.Int("rounds", 2, "repetitions of every measurement, alternating baseline and Portcullis")
	workers := fs.Int("workers", 16, "closed-loop concurrency")
	openWorkers := fs.Int("open-workers", 128, "open loop: most requests in flight")
	conns := fs.Int("conns", 4, "gRPC connections")
	loads := fs.String("loads", "0.25,0.5,0.75,0.9", "open-loop rates, as fractions of Portcullis's max throughput")
	bin := fs.String("portcullis", "", "portcullis binary (default: go build ./cmd/portcullis into a temporary directory)")
	redisURL := fs.String("redis-url", "", "Redis for rl-redis (default: a private redis-server when one is on PATH, so its command counts are Portcullis's alone; else redis://127.0.0.1:6379/0)")
	profileDir := fs.String("profile-dir", "", "save a CPU profile of Portcullis (from its admin /debug/pprof) per scenario here")
	if err := parse(fs, args); err != nil {
		return err
	}
	fractions, err := parseLoads(*loads)
	if err != nil {
		return err
	}
	var chosen []*bench.Scenario
	if fs.NArg() == 0 {
		chosen = bench.Scenarios()
	}
	for _, name := range fs.Args() {
		s, err := bench.FindScenario(name)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		chosen = append(chosen, s)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "portcullis-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *bin == "" {
		if *bin, err = buildPortcullis(ctx, tmp, stderr); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*results, 0o755); err != nil {
		return err
	}

	var done []*bench.Comparison
	for _, sc := range chosen {
		fmt.Fprintf(stdout, "== %s: %s\n", sc.Name, sc.Measures)
		c, err := compareScenario(ctx, sc, scenarioRun{
			scenarios: *scenarios, tmp: tmp, bin: *bin, self: self, redisURL: *redisURL, profileDir: *profileDir,
			opts: bench.CompareOptions{Rounds: *rounds, Warmup: *warmup, Duration: *duration, Workers: *workers,
				OpenWorkers: *openWorkers, Loads: fractions, MinOK: sc.MinOK, Progress: stdout},
			conns: *conns,
		})
		if err != nil {
			return fmt.Errorf("%s: %w", sc.Name, err)
		}
		base := filepath.Join(*results, sc.Name)
		if err := bench.WriteJSON(base+".json", c); err != nil {
			return err
		}
		if err := writeChart(base+".svg", c); err != nil {
			return err
		}
		for _, w := range c.Warnings {
			fmt.Fprintf(stdout, "  warning: %s\n", w)
		}
		if c.Profile != "" {
			fmt.Fprintf(stdout, "  profile: go tool pprof -top %s %s\n", *bin, c.Profile)
		}
		fmt.Fprintf(stdout, "  wrote %s.json and %s.svg\n", base, base)
		done = append(done, c)
	}
	fmt.Fprintln(stdout)
	return bench.WriteTable(stdout, done)
}

// scenarioRun is what compareScenario needs besides the scenario.
type scenarioRun struct {
	scenarios, tmp, bin, self, redisURL, profileDir string
	opts                                            bench.CompareOptions
	conns                                           int
}

func compareScenario(ctx context.Context, sc *bench.Scenario, r scenarioRun) (*bench.Comparison, error) {
	work, err := os.MkdirTemp(r.tmp, sc.Name+"-")
	if err != nil {
		return nil, err
	}
	ws, err := sc.Prepare(r.scenarios, work)
	if err != nil {
		return nil, err
	}
	o := r.opts
	redisURL := r.redisURL
	if sc.Redis {
		url, stop, err := startRedis(ctx, redisURL)
		if err != nil {
			return nil, err
		}
		defer stop()
		redisURL = url
		opts, err := redis.ParseURL(url)
		if err != nil {
			return nil, err
		}
		o.Redis = redis.NewClient(opts)
		defer o.Redis.Close()
	}
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0" // named by the configuration, not used
	}
	if o.Subject, err = ws.PortcullisProcess(r.bin, redisURL); err != nil {
		return nil, err
	}
	if o.Baseline, err = ws.BaselineProcess(r.self); err != nil {
		return nil, err
	}
	if o.NewTarget, err = ws.NewTarget(r.conns); err != nil {
		return nil, err
	}
	o.ProfileDir = r.profileDir
	c, err := bench.Compare(ctx, sc.Name, o)
	if err != nil {
		return nil, err
	}
	c.Measures, c.Kind = sc.Measures, sc.Kind
	return c, nil
}

// startRedis returns the Redis URL of rl-redis: url when given, else a
// private redis-server when one is installed, else the default one.
func startRedis(ctx context.Context, url string) (string, func(), error) {
	if url != "" {
		return url, func() {}, nil
	}
	addr, err := bench.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	p, err := bench.RedisServer(addr)
	if err != nil {
		return "redis://127.0.0.1:6379/0", func() {}, nil
	}
	r, err := p.Start(ctx)
	if err != nil {
		return "", nil, err
	}
	return "redis://" + addr + "/0", func() { _ = r.Stop() }, nil
}

// buildPortcullis builds ./cmd/portcullis of the module this command runs
// in. Other work on the tree can break the build for a moment, so a failed
// build is retried.
func buildPortcullis(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "portcullis")
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/portcullis")
		cmd.Dir = root
		msg, err := cmd.CombinedOutput()
		if err == nil {
			return bin, nil
		}
		last = fmt.Errorf("go build ./cmd/portcullis: %v\n%s", err, msg)
		fmt.Fprintf(stderr, "bench: build attempt %d failed, retrying in 20s:\n%s\n", attempt, msg)
		timer := time.NewTimer(20 * time.Second)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return "", ctx.Err()
		}
	}
	return "", last
}

func parseLoads(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v > 2 {
			return nil, fmt.Errorf("%w: -loads: %q is not a fraction in (0, 2]", errUsage, f)
		}
		out = append(out, v)
	}
	return out, nil
}

func writeChart(path string, c *bench.Comparison) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := bench.WriteChart(f, c); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// headerFlag collects repeated -header "Name: value" flags.
type headerFlag http.Header

func (h headerFlag) String() string { return fmt.Sprint(http.Header(h)) }

func (h headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok {
		return errors.New(`want "Name: value"`)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(value))
	return nil
}

// listFlag collects repeated or comma-separated values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "", stderr)
	kind := fs.String("kind", "check", "check (ext_authz Check), ratelimit (ShouldRateLimit) or mcp (tools/call)")
	addr := fs.String("addr", "127.0.0.1:9191", "gRPC address (check, ratelimit)")
	url := fs.String("url", "http://127.0.0.1:8080/mcp", "MCP endpoint (mcp)")
	var requests listFlag
	fs.Var(&requests, "requests", "request files: protojson CheckRequest or RateLimitRequest, or tool calls {name, arguments} (object, array or JSON Lines; repeatable)")
	headers := headerFlag{}
	fs.Var(headers, "header", `extra HTTP header for mcp, "Name: value" (repeatable)`)
	mode := fs.String("mode", "closed", "closed (max throughput) or open (fixed arrival rate)")
	workers := fs.Int("workers", 16, "concurrent workers (open: most requests in flight)")
	rate := fs.Float64("rate", 1000, "open loop: requests per second")
	duration := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time first")
	conns := fs.Int("conns", 4, "gRPC connections")
	pid := fs.Int("pid", 0, "server process to measure in /proc (CPU seconds, peak RSS)")
	redisAddr := fs.String("redis", "", "Redis address (host:port) whose INFO commandstats to count")
	jsonOut := fs.String("json", "", "write the result as JSON to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(requests) == 0 {
		return fmt.Errorf("%w: -requests is required", errUsage)
	}
	var target bench.Target
	switch *kind {
	case "check":
		reqs, err := bench.ReadMessages(func() *authv3.CheckRequest { return new(authv3.CheckRequest) }, requests...)
		if err != nil {
			return err
		}
		t, err := bench.NewCheckTarget(*addr, *conns, reqs)
		if err != nil {
			return err
		}
		defer t.Close()
		target = t
	case "ratelimit":
		reqs, err := bench.ReadMessages(func() *rlsv3.RateLimitRequest { return new(rlsv3.RateLimitRequest) }, requests...)
		if err != nil {
			return err
		}
		t, err := bench.NewRateLimitTarget(*addr, *conns, reqs)
		if err != nil {
			return err
		}
		defer t.Close()
		target = t
	case "mcp":
		calls, err := bench.ReadToolCalls(requests...)
		if err != nil {
			return err
		}
		h := http.Header(headers)
		t, err := bench.NewMCPTarget(bench.MCPOptions{URL: *url, Calls: calls,
			Headers: func(int, string, string) (http.Header, error) { return h, nil }})
		if err != nil {
			return err
		}
		target = t
	default:
		return fmt.Errorf("%w: -kind %q: want check, ratelimit or mcp", errUsage, *kind)
	}
	l := bench.Load{Mode: bench.Mode(*mode), Workers: *workers, Rate: *rate, Warmup: *warmup, Duration: *duration}
	if *pid != 0 {
		l.Meters = append(l.Meters, &bench.ProcMeter{PID: *pid})
	}
	if *redisAddr != "" {
		c := redis.NewClient(&redis.Options{Addr: *redisAddr})
		defer c.Close()
		l.Meters = append(l.Meters, &bench.RedisMeter{Client: c})
	}
	r, err := bench.Run(ctx, target, l)
	if err != nil {
		return err
	}
	printResult(stdout, r)
	if *jsonOut != "" {
		return writeJSON(*jsonOut, r)
	}
	return nil
}

func printResult(w io.Writer, r *bench.Result) {
	fmt.Fprintf(w, "%s loop, %d workers", r.Mode, r.Workers)
	if r.Mode == bench.Open {
		fmt.Fprintf(w, ", offered %.0f req/s", r.OfferedRate)
	}
	fmt.Fprintf(w, ", %.1fs measured\n", r.Seconds)
	fmt.Fprintf(w, "  throughput  %.0f req/s (%d answered, %d errors", r.Throughput, r.Requests, r.Errors)
	if r.Dropped > 0 {
		fmt.Fprintf(w, ", %d not sent in time", r.Dropped)
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "  outcomes    %v\n", r.Outcomes)
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(w, "  error       %s\n", e)
	}
	l := r.Latency
	fmt.Fprintf(w, "  latency µs  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  mean %.0f\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	if s := r.Service; s != nil {
		fmt.Fprintf(w, "  service µs  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f (from the actual send time)\n", s.P50, s.P90, s.P99, s.P999, s.Max)
	}
	for _, u := range []struct {
		name string
		u    *bench.ProcUsage
	}{{"server", r.Server}, {"client", r.Client}} {
		if u.u != nil {
			fmt.Fprintf(w, "  %-10s  cpu %.2fs (%.2f cores, %.1fµs/req)  rss %.0fMiB  peak rss %.0fMiB\n", u.name,
				u.u.CPUSeconds, u.u.Cores, u.u.CPUPerRequest, float64(u.u.RSSBytes)/(1<<20), float64(u.u.PeakRSSBytes)/(1<<20))
		}
	}
	if r.Redis != nil {
		fmt.Fprintf(w, "  redis       %d commands, %.2f per request: %v\n", r.Redis.Commands, r.Redis.PerRequest, r.Redis.ByCommand)
	}
}

func writeJSON(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func nullCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	lis, err := listenFlag(ctx, "null", "127.0.0.1:9191", "gRPC listen address", args, stderr)
	if err != nil {
		return err
	}
	// The baseline runs with Portcullis's runtime setting: a floor under
	// the heap goal (gRPC's own allocations are the same on both sides).
	gcfloor.Start(ctx, gcfloor.DefaultFloor, os.Getenv)
	gs := bench.NewNullServer()
	fmt.Fprintf(stdout, "null server on %s\n", lis.Addr())
	go func() {
		<-ctx.Done()
		gs.GracefulStop()
	}()
	return gs.Serve(lis)
}

func bareMCPCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("baremcp", "", stderr)
	listen := fs.String("listen", "127.0.0.1:8081", "HTTP listen address (endpoint /mcp)")
	stdio := fs.Bool("stdio", false, "serve one client on stdin and stdout instead of HTTP (as a bridged upstream)")
	if err := parse(fs, args); err != nil {
		return err
	}
	gcfloor.Start(ctx, gcfloor.DefaultFloor, os.Getenv) // as Portcullis (nullCmd)
	if *stdio {
		// stdout carries the protocol: nothing else is written there.
		return bench.ServeBareMCPStdio(ctx, os.Stdin, stdout)
	}
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	hs := bench.NewBareMCPServer()
	fmt.Fprintf(stdout, "bare MCP server on http://%s/mcp\n", lis.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// listenFlag parses a server subcommand's only flag, -listen, and opens
// the listener.
func listenFlag(ctx context.Context, name, def, usage string, args []string, stderr io.Writer) (net.Listener, error) {
	fs := newFlags(name, "", stderr)
	listen := fs.String("listen", def, usage)
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	return (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
}

func chartCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("chart", "FILE.json...", stderr)
	out := fs.String("o", "", "directory of the SVG files (default: next to each JSON file)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: no result files", errUsage)
	}
	for _, in := range fs.Args() {
		c, err := bench.ReadComparison(in)
		if errors.Is(err, bench.ErrNotComparison) {
			fmt.Fprintf(stderr, "bench chart: skipping %v\n", err)
			continue
		}
		if err != nil {
			return err
		}
		path := strings.TrimSuffix(in, ".json") + ".svg"
		if *out != "" {
			path = filepath.Join(*out, filepath.Base(path))
		}
		if err := writeChart(path, c); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", path)
	}
	return nil
}

func reportCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", "FILE.json...", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: no result files", errUsage)
	}
	var cs []*bench.Comparison
	for _, in := range fs.Args() {
		c, err := bench.ReadComparison(in)
		if errors.Is(err, bench.ErrNotComparison) {
			fmt.Fprintf(stderr, "bench report: skipping %v\n", err) // the soak's report, in the same directory
			continue
		}
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	return bench.WriteTable(stdout, cs)
}

func scenariosCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("scenarios", "", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	for _, s := range bench.Scenarios() {
		fmt.Fprintf(stdout, "%-18s %s\n", s.Name, s.Measures)
	}
	return nil
}

func soakCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("soak", "", stderr)
	scenarios := fs.String("scenarios", "bench/scenarios", "directory of the scenarios (soak, authz-jwt, rl-redis)")
	policy := fs.String("policy", "rego/examples/rbac", "policy directory; the server watches a copy, which the soak breaks and restores")
	jsonOut := fs.String("json", "bench/results/soak.json", "write the report as JSON to this file")
	duration := fs.Duration("duration", 15*time.Minute, "length of the soak, warm-up included")
	warmup := fs.Duration("warmup", time.Minute, "time before RSS and goroutines are sampled")
	faultEvery := fs.Duration("fault-every", 3*time.Minute, "period of the injected faults (Redis cut, Redis slow, policy broken, in turn)")
	faultFor := fs.Duration("fault-for", 0, "how long each fault lasts (default a third of -fault-every, at most 30s)")
	load := fs.Float64("load", 0.5, "offered rate, as a fraction of the maximum throughput measured first")
	probe := fs.Duration("probe", 10*time.Second, "closed-loop run that measures the maximum throughput")
	sampleEvery := fs.Duration("sample-every", 10*time.Second, "period of the RSS and goroutine samples")
	workers := fs.Int("workers", 16, "probe concurrency")
	openWorkers := fs.Int("open-workers", 512, "most requests in flight during the soak")
	conns := fs.Int("conns", 4, "gRPC connections")
	requestTimeout := fs.Duration("request-timeout", 5*time.Second, "client deadline of every request")
	slack := fs.Duration("slack", 2*time.Second, "added to the server's Redis timeout: the bound on ShouldRateLimit answers during Redis faults")
	rssGrowth := fs.Float64("rss-growth", 0.10, "most the final RSS may exceed the post-warm-up median, as a fraction")
	goroutineGrowth := fs.Int("goroutine-growth", 50, "most goroutines the final count may exceed the median by (with -goroutine-growth-fraction)")
	goroutineFraction := fs.Float64("goroutine-growth-fraction", 0.20, "most the final goroutine count may exceed the median by, as a fraction")
	bin := fs.String("portcullis", "", "portcullis binary (default: go build ./cmd/portcullis into a temporary directory)")
	redisAddr := fs.String("redis", "", "Redis host:port the server counts in, through the fault proxy (default: a private redis-server from PATH)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: soak takes no arguments", errUsage)
	}
	tmp, err := os.MkdirTemp("", "portcullis-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *bin == "" {
		if *bin, err = buildPortcullis(ctx, tmp, stderr); err != nil {
			return err
		}
	}
	if *redisAddr == "" {
		addr, stop, err := startPrivateRedis(ctx)
		if err != nil {
			return err
		}
		defer stop()
		*redisAddr = addr
	}
	work := filepath.Join(tmp, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		return err
	}
	r, err := bench.Soak(ctx, bench.SoakOptions{
		Portcullis: *bin, Scenarios: *scenarios, Policy: *policy, Work: work, RedisAddr: *redisAddr,
		Duration: *duration, Warmup: *warmup, FaultEvery: *faultEvery, FaultFor: *faultFor, Probe: *probe, Load: *load,
		Workers: *workers, OpenWorkers: *openWorkers, Conns: *conns, SampleEvery: *sampleEvery,
		RequestTimeout: *requestTimeout, Slack: *slack, RSSGrowth: *rssGrowth,
		GoroutineGrowth: *goroutineGrowth, GoroutineGrowthFraction: *goroutineFraction, Progress: stdout,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	if err := r.WriteSummary(stdout); err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := os.MkdirAll(filepath.Dir(*jsonOut), 0o755); err != nil {
			return err
		}
		if err := writeJSON(*jsonOut, r); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", *jsonOut)
	}
	if !r.Pass {
		return fmt.Errorf("soak failed: %d problems (above)", len(r.Failures))
	}
	return nil
}

// startPrivateRedis starts a redis-server from PATH on a free loopback
// port: the soak's fault proxy stands between it and Portcullis, and
// Portcullis's counters stay out of any shared Redis.
func startPrivateRedis(ctx context.Context) (string, func(), error) {
	addr, err := bench.FreeAddr()
	if err != nil {
		return "", nil, err
	}
	p, err := bench.RedisServer(addr)
	if err != nil {
		return "", nil, fmt.Errorf("soak needs redis-server on PATH, or -redis ADDR: %w", err)
	}
	r, err := p.Start(ctx)
	if err != nil {
		return "", nil, err
	}
	return addr, func() { _ = r.Stop() }, nil
}
