package mcpserver

// The bridge re-exposes other MCP servers ("upstreams") through our server.
//
// # Naming
//
// Each upstream has a name matching [a-z0-9][a-z0-9_-]*. Its tools and
// prompts appear as "<name>.<original>": the upstream name, a "." separator,
// then exactly the name the upstream gave (so "files" + "read_file" is
// "files.read_file"). Because upstream names cannot contain ".", the part
// before the first "." always identifies the upstream. Tool and prompt names
// that are empty or contain "/" or whitespace are skipped with a log line.
//
// Resources and resource templates keep their URIs: a URI is already global,
// and rewriting it would break links inside resource contents. Their Name
// field is prefixed like tools ("<name>.<original>") so that lists and
// policy can tell which upstream they come from. If two upstreams expose the
// same URI, the one synced last wins.
//
// # Lifecycle
//
// One connection (one child process for a command upstream) per upstream
// serves every session of our server. When the connection ends (the process
// exits, the HTTP session fails) the upstream's tools, prompts and resources
// are removed at once and the upstream is reconnected with exponential
// backoff; they reappear when it is back. notifications/*/list_changed from
// an upstream makes the bridge list again and update our server.
//
// # Isolation
//
// A child process gets only PATH and HOME from our environment plus the
// configured Env (which may override them); never the rest of our
// environment. An HTTP upstream receives only the configured Headers: the
// bridge talks to it with its own client, so the caller's token and identity
// headers are never forwarded.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Defaults for [BridgeOptions] and [UpstreamOptions].
const (
	DefaultCallTimeout = 30 * time.Second
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 30 * time.Second
)

// Log attribute keys.
const (
	logKeyUpstream = "upstream"
	logKeyError    = "error"
	logKeyName     = "name"
	logKeyBackoff  = "backoff"
)

// ErrUpstreamTimeout is the cause of a call's context when an upstream did
// not answer within its CallTimeout.
var ErrUpstreamTimeout = errors.New("upstream timed out")

// stableSession is how long a session must have lived for the restart
// backoff to start again from MinBackoff.
const stableSession = 10 * time.Second

var upstreamNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// UpstreamOptions describes one bridged MCP server: either a command spawned
// over stdio (Command, Args, Env, Cwd) or a streamable HTTP endpoint (URL,
// Headers).
type UpstreamOptions struct {
	// Name is the prefix of the upstream's tools and prompts:
	// "<Name>.<original>". It must match [a-z0-9][a-z0-9_-]* and be unique.
	Name string

	// Command, with Args, is run in Cwd (empty: our working directory) with
	// an environment of PATH and HOME (from ours) plus Env.
	Command string
	Args    []string
	Env     map[string]string
	Cwd     string

	// URL is a streamable HTTP MCP endpoint; Headers are sent with every
	// request to it (and nothing else of the caller's request is).
	URL     string
	Headers map[string]string

	// CallTimeout bounds each tools/call, resources/read and prompts/get
	// sent to the upstream. Zero means DefaultCallTimeout.
	CallTimeout time.Duration
}

// BridgeOptions configures a [Bridge].
type BridgeOptions struct {
	Upstreams []UpstreamOptions
	// Logger receives connection events and skipped items. Nil discards.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the delay before reconnecting an
	// upstream; it doubles after each failure. Zero means
	// DefaultMinBackoff/DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MeterProvider provides the reconnection and connection-state metrics,
	// by upstream name; nil means none.
	MeterProvider metric.MeterProvider
}

// A Bridge keeps one connection per upstream MCP server and mirrors the
// upstreams' tools, prompts and resources into the servers given to
// [Bridge.Attach].
//
// Create it with [NewBridge], call Attach (typically from Options.Extra),
// then [Bridge.Run]. Its methods are safe for concurrent use.
type Bridge struct {
	opts   BridgeOptions
	logger *slog.Logger
	ups    []*upstream

	mu      sync.Mutex // guards servers and every upstream's exposed items
	servers []*mcp.Server

	running  atomic.Bool
	restarts metric.Int64Counter
}

// NewBridge validates opts and returns a Bridge. It starts nothing. A nil
// opts is a bridge with no upstreams.
func NewBridge(opts *BridgeOptions) (*Bridge, error) {
	b := &Bridge{}
	if opts != nil {
		b.opts = *opts
		b.opts.Upstreams = append([]UpstreamOptions(nil), opts.Upstreams...)
	}
	if b.opts.MinBackoff == 0 {
		b.opts.MinBackoff = DefaultMinBackoff
	}
	if b.opts.MaxBackoff == 0 {
		b.opts.MaxBackoff = DefaultMaxBackoff
	}
	b.logger = b.opts.Logger
	if b.logger == nil {
		b.logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if b.opts.MinBackoff < 0 || b.opts.MaxBackoff < b.opts.MinBackoff {
		errs = append(errs, fmt.Errorf("backoff: need 0 < min_backoff <= max_backoff, got %s and %s", b.opts.MinBackoff, b.opts.MaxBackoff))
	}
	seen := map[string]bool{}
	for i, u := range b.opts.Upstreams {
		path := fmt.Sprintf("upstreams[%d]", i)
		if !upstreamNameRE.MatchString(u.Name) {
			errs = append(errs, fmt.Errorf("%s.name: %q must match %s", path, u.Name, upstreamNameRE))
		} else if seen[u.Name] {
			errs = append(errs, fmt.Errorf("%s.name: duplicate %q", path, u.Name))
		}
		seen[u.Name] = true
		switch {
		case (u.Command == "") == (u.URL == ""):
			errs = append(errs, fmt.Errorf("%s: set command or url, not both", path))
		case u.URL != "":
			if pu, err := url.Parse(u.URL); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				errs = append(errs, fmt.Errorf("%s.url: %q is not an http(s) URL", path, u.URL))
			}
			if len(u.Args) > 0 || len(u.Env) > 0 || u.Cwd != "" {
				errs = append(errs, fmt.Errorf("%s: args, env and cwd apply to command upstreams only", path))
			}
		default:
			if len(u.Headers) > 0 {
				errs = append(errs, fmt.Errorf("%s.headers: apply to url upstreams only", path))
			}
		}
		if u.CallTimeout < 0 {
			errs = append(errs, fmt.Errorf("%s.call_timeout: must not be negative", path))
		}
		if u.CallTimeout == 0 {
			u.CallTimeout = DefaultCallTimeout
		}
		uo := u
		uo.Args = append([]string(nil), u.Args...)
		b.ups = append(b.ups, &upstream{b: b, opts: uo, refresh: make(chan struct{}, 1)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("mcp bridge: %w", err)
	}
	b.instrument()
	return b, nil
}

// instrument creates the bridge's instruments: reconnections counted by
// upstream, and a gauge that is 1 while an upstream is connected.
func (b *Bridge) instrument() {
	m := meter(b.opts.MeterProvider)
	b.restarts, _ = m.Int64Counter(metricBridgeRestarts, metric.WithUnit("{restart}"),
		metric.WithDescription("Reconnections of a bridged upstream after its connection ended or failed (a restarted child process, a new HTTP session), by upstream."))
	for _, u := range b.ups {
		u.attrs = metric.WithAttributeSet(attribute.NewSet(attribute.String(logKeyUpstream, u.opts.Name)))
	}
	// No unit: "1" would make the Prometheus name end in _ratio.
	up, err := m.Int64ObservableGauge(metricBridgeUp,
		metric.WithDescription("1 while a bridged upstream is connected, else 0, by upstream."))
	if err != nil || len(b.ups) == 0 {
		return
	}
	// The callback lives as long as the meter provider, as the bridge does.
	_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, u := range b.ups {
			var v int64
			if u.session() != nil {
				v = 1
			}
			o.ObserveInt64(up, v, u.attrs)
		}
		return nil
	}, up)
}

// HasTool reports whether name is a tool the bridge currently exposes
// ("<upstream>.<original>"), for Options.KnownTool.
func (b *Bridge) HasTool(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range b.ups {
		if _, ok := u.items.tools[name]; ok {
			return true
		}
	}
	return false
}

// Attach makes s show the upstreams' tools, prompts and resources, now and
// as they change. Call it before or while Run runs; several servers may be
// attached.
func (b *Bridge) Attach(s *mcp.Server) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.servers = append(b.servers, s)
	for _, u := range b.ups {
		u.installLocked([]*mcp.Server{s}, u.items)
	}
}

// Ready reports whether every upstream has been connected at least once.
func (b *Bridge) Ready() bool {
	for _, u := range b.ups {
		if !u.everUp.Load() {
			return false
		}
	}
	return true
}

// Run connects to every upstream and keeps the connections alive, reconnecting
// with backoff, until ctx ends; then it closes them (child processes are
// asked to exit, then terminated) and returns nil. Run may be called once.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("mcp bridge: Run called twice")
	}
	var wg sync.WaitGroup
	for _, u := range b.ups {
		wg.Go(func() { u.run(ctx) })
	}
	wg.Wait()
	return nil
}

// items is what one upstream currently exposes, keyed by our name (tools,
// prompts) or URI (resources, templates).
type items struct {
	tools     map[string]*mcp.Tool
	prompts   map[string]*mcp.Prompt
	resources map[string]*mcp.Resource
	templates map[string]*mcp.ResourceTemplate
}

type upstream struct {
	b       *Bridge
	opts    UpstreamOptions
	refresh chan struct{}
	everUp  atomic.Bool
	attrs   metric.MeasurementOption // upstream=<name>

	smu sync.Mutex
	cs  *mcp.ClientSession // nil while disconnected

	items items // guarded by b.mu
}

func (u *upstream) log() *slog.Logger { return u.b.logger.With(logKeyUpstream, u.opts.Name) }

func (u *upstream) session() *mcp.ClientSession {
	u.smu.Lock()
	defer u.smu.Unlock()
	return u.cs
}

func (u *upstream) setSession(cs *mcp.ClientSession) {
	u.smu.Lock()
	u.cs = cs
	u.smu.Unlock()
}

func (u *upstream) run(ctx context.Context) {
	delay := u.b.opts.MinBackoff
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			u.b.restarts.Add(ctx, 1, u.attrs)
		}
		start := time.Now()
		if err := u.serve(ctx); err != nil && ctx.Err() == nil {
			u.log().Warn("upstream disconnected", logKeyError, err.Error(), logKeyBackoff, delay.String())
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= stableSession {
			delay = u.b.opts.MinBackoff
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, u.b.opts.MaxBackoff)
	}
}

// serve connects once and mirrors the upstream until the connection ends or
// ctx is done. Its items are removed before it returns.
func (u *upstream) serve(ctx context.Context) error {
	signal := func() {
		select {
		case u.refresh <- struct{}{}:
		default:
		}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "portcullis-bridge", Version: "1"}, &mcp.ClientOptions{
		Logger:                     slog.New(demoteInfo{u.b.logger.Handler()}),
		Capabilities:               &mcp.ClientCapabilities{},
		ToolListChangedHandler:     func(context.Context, *mcp.ToolListChangedRequest) { signal() },
		PromptListChangedHandler:   func(context.Context, *mcp.PromptListChangedRequest) { signal() },
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) { signal() },
	})
	// Drop a refresh left over from a previous session.
	select {
	case <-u.refresh:
	default:
	}
	connCtx, cancel := context.WithTimeout(ctx, u.opts.CallTimeout)
	cs, err := client.Connect(connCtx, u.transport(), nil)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	u.setSession(cs)
	u.everUp.Store(true)
	u.log().Info("upstream connected")
	done := make(chan error, 1)
	go func() { done <- cs.Wait() }()
	defer func() {
		u.setSession(nil)
		u.install(items{}) // remove everything at once
		_ = cs.Close()
	}()
	u.sync(ctx, cs)
	for {
		select {
		case <-ctx.Done():
			_ = cs.Close()
			<-done
			return nil
		case err := <-done:
			if err == nil {
				err = mcp.ErrConnectionClosed
			}
			return err
		case <-u.refresh:
			u.sync(ctx, cs)
		}
	}
}

func (u *upstream) transport() mcp.Transport {
	if u.opts.URL != "" {
		base := http.DefaultTransport.(*http.Transport).Clone()
		return &mcp.StreamableClientTransport{
			Endpoint:   u.opts.URL,
			HTTPClient: &http.Client{Transport: &headerTransport{base: base, headers: u.opts.Headers}},
		}
	}
	cmd := exec.Command(u.opts.Command, u.opts.Args...)
	cmd.Dir = u.opts.Cwd
	cmd.Env = childEnv(u.opts.Env, os.Getenv)
	cmd.Stderr = &logWriter{logger: u.log()}
	cmd.WaitDelay = 5 * time.Second
	return &mcp.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}
}

// childEnv is PATH and HOME from getenv, then env, sorted.
func childEnv(env map[string]string, getenv func(string) string) []string {
	m := map[string]string{}
	for _, k := range []string{"PATH", "HOME"} {
		if v := getenv(k); v != "" {
			m[k] = v
		}
	}
	for k, v := range env {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// headerTransport sets the configured headers on every request the bridge
// makes; the requests are the SDK's, never the caller's.
type headerTransport struct {
	base    http.RoundTripper
	headers map[string]string
}

func (t *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.headers {
		r.Header.Set(k, v)
	}
	return t.base.RoundTrip(r)
}

// logWriter logs a child's stderr line by line.
type logWriter struct {
	logger *slog.Logger
	mu     sync.Mutex
	buf    []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.logger.Debug("upstream stderr", "line", string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.logger.Debug("upstream stderr", "line", string(w.buf))
		w.buf = nil
	}
	return len(p), nil
}

// validItemName reports whether an upstream's tool or prompt name can be
// re-exposed.
func validItemName(name string) bool {
	return name != "" && !strings.Contains(name, "/") && !strings.ContainsFunc(name, unicode.IsSpace)
}

// sync lists everything the upstream offers and updates our servers.
func (u *upstream) sync(ctx context.Context, cs *mcp.ClientSession) {
	ctx, cancel := context.WithTimeout(ctx, u.opts.CallTimeout)
	defer cancel()
	caps := &mcp.ServerCapabilities{}
	if ir := cs.InitializeResult(); ir != nil && ir.Capabilities != nil {
		caps = ir.Capabilities
	}
	u.b.mu.Lock()
	next := u.items // keep what cannot be listed now
	u.b.mu.Unlock()
	log := u.log()
	prefix := u.opts.Name + "."
	if caps.Tools != nil {
		m := map[string]*mcp.Tool{}
		var err error
		for t, e := range cs.Tools(ctx, nil) {
			if e != nil {
				err = e
				break
			}
			if !validItemName(t.Name) {
				log.Warn("skipping upstream tool with an invalid name", logKeyName, t.Name)
				continue
			}
			if !objectSchema(t.InputSchema) {
				log.Warn("skipping upstream tool whose input schema is not an object", logKeyName, t.Name)
				continue
			}
			t2 := *t
			t2.Name = prefix + t.Name
			m[t2.Name] = &t2
		}
		if err != nil {
			log.Warn("list tools", logKeyError, err.Error())
		} else {
			next.tools = m
		}
	}
	if caps.Prompts != nil {
		m := map[string]*mcp.Prompt{}
		var err error
		for p, e := range cs.Prompts(ctx, nil) {
			if e != nil {
				err = e
				break
			}
			if !validItemName(p.Name) {
				log.Warn("skipping upstream prompt with an invalid name", logKeyName, p.Name)
				continue
			}
			p2 := *p
			p2.Name = prefix + p.Name
			m[p2.Name] = &p2
		}
		if err != nil {
			log.Warn("list prompts", logKeyError, err.Error())
		} else {
			next.prompts = m
		}
	}
	if caps.Resources != nil {
		m := map[string]*mcp.Resource{}
		var err error
		for r, e := range cs.Resources(ctx, nil) {
			if e != nil {
				err = e
				break
			}
			if pu, perr := url.Parse(r.URI); perr != nil || pu.Scheme == "" {
				log.Warn("skipping upstream resource with an invalid URI", logKeyName, r.URI)
				continue
			}
			r2 := *r
			r2.Name = prefix + r.Name
			m[r2.URI] = &r2
		}
		if err != nil {
			log.Warn("list resources", logKeyError, err.Error())
		} else {
			next.resources = m
		}
		mt := map[string]*mcp.ResourceTemplate{}
		err = nil
		for rt, e := range cs.ResourceTemplates(ctx, nil) {
			if e != nil {
				err = e
				break
			}
			rt2 := *rt
			rt2.Name = prefix + rt.Name
			mt[rt2.URITemplate] = &rt2
		}
		if err != nil {
			log.Warn("list resource templates", logKeyError, err.Error())
		} else {
			next.templates = mt
		}
	}
	u.install(next)
}

// objectSchema reports whether an input schema has type "object", as
// mcp.Server.AddTool requires.
func objectSchema(s any) bool {
	switch v := s.(type) {
	case map[string]any:
		return v["type"] == "object"
	case nil:
		return false
	}
	// The client decodes schemas into map[string]any; anything else is
	// left to AddTool, guarded below.
	return true
}

// install replaces the upstream's exposed items with next on every server.
func (u *upstream) install(next items) {
	u.b.mu.Lock()
	defer u.b.mu.Unlock()
	old := u.items
	for _, s := range u.b.servers {
		var gone []string
		for name := range old.tools {
			if _, ok := next.tools[name]; !ok {
				gone = append(gone, name)
			}
		}
		if len(gone) > 0 {
			s.RemoveTools(gone...)
		}
		gone = gone[:0]
		for name := range old.prompts {
			if _, ok := next.prompts[name]; !ok {
				gone = append(gone, name)
			}
		}
		if len(gone) > 0 {
			s.RemovePrompts(gone...)
		}
		gone = gone[:0]
		for uri := range old.resources {
			if _, ok := next.resources[uri]; !ok {
				gone = append(gone, uri)
			}
		}
		if len(gone) > 0 {
			s.RemoveResources(gone...)
		}
		gone = gone[:0]
		for uri := range old.templates {
			if _, ok := next.templates[uri]; !ok {
				gone = append(gone, uri)
			}
		}
		if len(gone) > 0 {
			s.RemoveResourceTemplates(gone...)
		}
	}
	u.installLocked(u.b.servers, next)
	u.items = next
}

// installLocked adds items to servers (replacing same-named ones).
func (u *upstream) installLocked(servers []*mcp.Server, it items) {
	prefix := u.opts.Name + "."
	for _, s := range servers {
		for name, t := range it.tools {
			u.addTool(s, t, strings.TrimPrefix(name, prefix))
		}
		for name, p := range it.prompts {
			s.AddPrompt(p, u.promptHandler(strings.TrimPrefix(name, prefix)))
		}
		for _, r := range it.resources {
			s.AddResource(r, u.readHandler())
		}
		for _, rt := range it.templates {
			u.addTemplate(s, rt)
		}
	}
}

func (u *upstream) addTool(s *mcp.Server, t *mcp.Tool, orig string) {
	defer func() {
		if r := recover(); r != nil {
			u.log().Warn("skipping upstream tool", logKeyName, orig, logKeyError, fmt.Sprint(r))
		}
	}()
	s.AddTool(t, u.toolHandler(orig))
}

func (u *upstream) addTemplate(s *mcp.Server, rt *mcp.ResourceTemplate) {
	defer func() {
		if r := recover(); r != nil {
			u.log().Warn("skipping upstream resource template", logKeyName, rt.URITemplate, logKeyError, fmt.Sprint(r))
		}
	}()
	s.AddResourceTemplate(rt, u.readHandler())
}

// callContext bounds an upstream call by CallTimeout.
func (u *upstream) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, u.opts.CallTimeout, ErrUpstreamTimeout)
}

// callError turns a failed upstream call into our answer: the upstream's
// JSON-RPC errors pass through; a timeout or a lost connection is described.
func (u *upstream) callError(ctx context.Context, err error) error {
	var werr *jsonrpc.Error
	if errors.As(err, &werr) {
		return werr
	}
	if errors.Is(context.Cause(ctx), ErrUpstreamTimeout) {
		return fmt.Errorf("upstream %q timed out after %s", u.opts.Name, u.opts.CallTimeout)
	}
	u.log().Warn("upstream call failed", logKeyError, err.Error())
	return fmt.Errorf("upstream %q is unavailable", u.opts.Name)
}

func (u *upstream) toolHandler(orig string) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		cs := u.session()
		if cs == nil {
			return errorResult(fmt.Errorf("upstream %q is not connected", u.opts.Name)), nil
		}
		ctx, cancel := u.callContext(ctx)
		defer cancel()
		params := &mcp.CallToolParams{Name: orig}
		if req.Params != nil && len(req.Params.Arguments) > 0 {
			params.Arguments = req.Params.Arguments
		}
		res, err := cs.CallTool(ctx, params)
		if err != nil {
			err = u.callError(ctx, err)
			var werr *jsonrpc.Error
			if errors.As(err, &werr) {
				return nil, werr
			}
			return errorResult(err), nil
		}
		return res, nil
	}
}

func errorResult(err error) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
}

func (u *upstream) promptHandler(orig string) mcp.PromptHandler {
	return func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		cs := u.session()
		if cs == nil {
			return nil, fmt.Errorf("upstream %q is not connected", u.opts.Name)
		}
		ctx, cancel := u.callContext(ctx)
		defer cancel()
		params := &mcp.GetPromptParams{Name: orig}
		if req.Params != nil {
			params.Arguments = req.Params.Arguments
		}
		res, err := cs.GetPrompt(ctx, params)
		if err != nil {
			return nil, u.callError(ctx, err)
		}
		return res, nil
	}
}

func (u *upstream) readHandler() mcp.ResourceHandler {
	return func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		cs := u.session()
		if cs == nil {
			return nil, fmt.Errorf("upstream %q is not connected", u.opts.Name)
		}
		ctx, cancel := u.callContext(ctx)
		defer cancel()
		res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: req.Params.URI})
		if err != nil {
			return nil, u.callError(ctx, err)
		}
		return res, nil
	}
}
