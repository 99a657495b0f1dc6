package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	oparego "github.com/open-policy-agent/opa/v1/rego"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-mcp/portcullis/internal/telemetry"
)

// ErrNotReady is returned by [Engine.Eval] before a policy has been loaded.
var ErrNotReady = errors.New("policy: no policy loaded yet")

// Options configure an [Engine]. Exactly one of Paths and BundleURL is set.
type Options struct {
	// Paths are .rego files, .json/.yaml data files and directories of
	// them. Files ending in _test.rego are not loaded.
	Paths []string
	// FS, when set, is where Paths are read from (Watch is then ignored);
	// the embedded default policy is loaded this way.
	FS fs.FS
	// BundleURL is the URL of an OPA bundle (.tar.gz), polled every
	// BundlePolling (default 30s).
	BundleURL     string
	BundlePolling time.Duration
	// Decision is the rule path of the decision, "mcp/authz/decision" by
	// default.
	Decision string
	// Watch reloads Paths when a file under them changes.
	Watch bool
	// DryRun logs each real decision and allows every request.
	DryRun bool
	// DecisionCacheSize bounds the decision cache (entries, per loaded
	// policy); 0 means the default, 10000, and a negative size disables
	// it. Decisions are cached by the part of the input the policy reads,
	// and only for policies that call no non-deterministic built-in (see
	// footprint.go). A hit skips evaluation, so print() output and
	// evaluation spans appear for misses only.
	DecisionCacheSize int
	// Logger receives load errors, dry-run decisions and Rego print output;
	// nil discards.
	Logger *slog.Logger
	// MeterProvider provides the reload metrics; nil means no metrics.
	MeterProvider metric.MeterProvider
	// TracerProvider provides the portcullis.policy.eval span; nil uses the
	// provider of the span in Eval's context, when that span is recording.
	// A no-op provider turns the span off.
	TracerProvider trace.TracerProvider
}

// Status describes the policy an [Engine] is serving.
type Status struct {
	Ready bool `json:"ready"`
	// Revision is the bundle revision, or a digest of the loaded files.
	Revision string    `json:"revision,omitempty"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// Reloads counts successful loads, Failures failed ones.
	Reloads  int64 `json:"reloads"`
	Failures int64 `json:"failures"`
	// LastError is the error of the latest load, when it failed; the
	// previous policy keeps serving.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Engine evaluates Rego decisions. It compiles a policy once, prepares the
// decision query, and evaluates it per request; a reload compiles the new
// policy aside and swaps it in atomically, so in-flight evaluations finish on
// the old one and a policy that fails to compile never replaces a good one.
//
// New builds an Engine and, for Paths, loads the policy; [Engine.Run] starts
// watching files or polling the bundle. All methods are safe for concurrent
// use.
type Engine struct {
	opts   Options
	query  string
	logger *slog.Logger

	current atomic.Pointer[compiled]
	loaded  chan struct{} // closed on the first successful load
	once    sync.Once

	mu     sync.Mutex // guards status and serializes loads
	status Status

	reloads   metric.Int64Counter
	cacheHit  *telemetry.CounterSeries // portcullis.policy.decision_cache
	cacheMiss *telemetry.CounterSeries
}

// compiled is one loaded policy.
type compiled struct {
	query    oparego.PreparedEvalQuery
	revision string
	loadedAt time.Time
	fp       *footprint     // nil: not cacheable
	cache    *decisionCache // nil: no cache
}

// New returns an Engine for opts. With Paths it loads the policy now and
// returns the compile error, located by file and line, if it fails.
func New(ctx context.Context, opts *Options) (*Engine, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Decision == "" {
		o.Decision = "mcp/authz/decision"
	}
	if (len(o.Paths) == 0) == (o.BundleURL == "") {
		return nil, errors.New("policy: set exactly one of Paths and BundleURL")
	}
	if o.BundlePolling <= 0 {
		o.BundlePolling = 30 * time.Second
	}
	if o.DecisionCacheSize == 0 {
		o.DecisionCacheSize = 10000
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mp := o.MeterProvider
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	reloads, err := mp.Meter("github.com/portcullis-mcp/portcullis/policy").Int64Counter("portcullis.policy.reloads",
		metric.WithDescription("Policy loads, by result (success or failure)."))
	if err != nil {
		return nil, err
	}
	lookups := telemetry.NewCounterVec(mp.Meter("github.com/portcullis-mcp/portcullis/policy"), "portcullis.policy.decision_cache",
		metric.WithDescription("Decision cache lookups, by result (hit or miss); policies that cannot be cached are not counted."))
	e := &Engine{
		opts:      o,
		query:     QueryForPath(o.Decision),
		logger:    logger,
		loaded:    make(chan struct{}),
		reloads:   reloads,
		cacheHit:  lookups.Series(attribute.NewSet(attribute.String("result", "hit"))),
		cacheMiss: lookups.Series(attribute.NewSet(attribute.String("result", "miss"))),
	}
	if len(o.Paths) > 0 {
		if err := e.Reload(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// QueryForPath turns a rule path such as "mcp/authz/decision" into the
// query "data.mcp.authz.decision".
func QueryForPath(path string) string {
	q := []byte("data")
	for _, seg := range splitPath(path) {
		q = append(q, '.')
		q = append(q, seg...)
	}
	return string(q)
}

func splitPath(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' || p[i] == '.' {
			if i > start {
				out = append(out, p[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// Run watches the policy files (when Watch is set) or polls the bundle,
// reloading on change, until ctx is done. It returns nil when ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	switch {
	case e.opts.BundleURL != "":
		return e.runBundle(ctx)
	case e.opts.Watch && e.opts.FS == nil:
		return e.watch(ctx)
	default:
		<-ctx.Done()
		return nil
	}
}

// Loaded returns a channel closed once the first policy has loaded.
func (e *Engine) Loaded() <-chan struct{} { return e.loaded }

// Status returns the state of the loaded policy.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

// Reload loads the policy from Paths again. On failure the current policy
// keeps serving and the error is returned, logged and recorded in
// [Engine.Status]. Files identical to those serving are not compiled
// again.
func (e *Engine) Reload(ctx context.Context) error {
	if len(e.opts.Paths) == 0 {
		return errors.New("policy: Reload needs Paths; bundles reload by polling")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	files, err := e.loadFiles()
	if err != nil {
		return e.install(nil, err)
	}
	if cur := e.current.Load(); cur != nil && cur.revision == files.revision && e.status.LastError == "" {
		return nil
	}
	c, err := e.compile(ctx, files.modules, files.data, files.revision)
	return e.install(c, err)
}

// install swaps in c, or records err. e.mu must be held.
func (e *Engine) install(c *compiled, err error) error {
	ctx := context.Background()
	if err != nil {
		e.status.Failures++
		e.status.LastError = err.Error()
		e.status.LastErrorAt = time.Now()
		e.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "failure")))
		e.logger.Error("policy load failed; keeping the previous policy", slog.Any("error", err))
		return err
	}
	e.current.Store(c)
	e.status.Ready = true
	e.status.Revision = c.revision
	e.status.LoadedAt = c.loadedAt
	e.status.Reloads++
	e.status.LastError = ""
	e.status.LastErrorAt = time.Time{}
	e.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "success")))
	e.logger.Info("policy loaded", slog.String("revision", c.revision), slog.String("query", e.query))
	e.once.Do(func() { close(e.loaded) })
	return nil
}

// Eval evaluates the decision for in. An evaluation error, or a result that
// is not a boolean or a well-formed decision object, is returned as an error:
// callers deny. An undefined decision denies without error.
func (e *Engine) Eval(ctx context.Context, in *Input) (d Decision, err error) {
	span := e.startSpan(ctx)
	if span != nil {
		defer func() { endEvalSpan(span, e.opts.Decision, d, err) }()
	}
	c := e.current.Load()
	if c == nil {
		return Decision{}, ErrNotReady
	}
	var key [sha256.Size]byte
	if c.cache != nil {
		key = c.fp.key(in)
		if hit, ok := c.cache.Get(key); ok {
			e.cacheHit.Add(1)
			if span != nil {
				span.SetAttributes(attribute.Bool("portcullis.policy.cache_hit", true))
			}
			d = hit
			if e.opts.DryRun {
				return e.dryRun(in, d, nil), nil
			}
			return d, nil
		}
		e.cacheMiss.Add(1)
	}
	rs, err := c.query.Eval(ctx, oparego.EvalParsedInput(in.value()))
	if err == nil {
		d, err = decisionFromResult(rs)
	}
	if err != nil {
		err = fmt.Errorf("evaluate %s: %w", e.query, err)
	} else if c.cache != nil {
		c.cache.Put(key, d.detached())
	}
	if e.opts.DryRun {
		return e.dryRun(in, d, err), nil
	}
	return d, err
}

// dryRun logs the real outcome and turns it into an allow.
func (e *Engine) dryRun(in *Input, d Decision, err error) Decision {
	attrs := []slog.Attr{slog.Bool("allowed", d.Allowed), slog.String("reason", d.Reason)}
	if in.MCP != nil {
		attrs = append(attrs, slog.String("mcp_method", in.MCP.Method), slog.String("mcp_name", in.MCP.Name))
	}
	if err != nil {
		attrs = append(attrs, slog.Any("error", err))
	}
	e.logger.LogAttrs(context.Background(), slog.LevelInfo, "dry run decision", attrs...)
	if err != nil {
		d = Decision{Reason: "policy error: " + err.Error()}
	}
	if !d.Allowed {
		d = Decision{Allowed: true, Reason: d.Reason, DynamicMetadata: d.DynamicMetadata, Cost: d.Cost, DryRun: true}
		if d.Cost == 0 {
			d.Cost = 1
		}
	}
	return d
}

const tracerName = "github.com/portcullis-mcp/portcullis/policy"

// startSpan starts the portcullis.policy.eval span, or returns nil when
// nothing would record it. The span is not put in a context: the
// evaluation starts no spans of its own.
func (e *Engine) startSpan(ctx context.Context) trace.Span {
	tp := e.opts.TracerProvider
	switch {
	case tp == nil:
		parent := trace.SpanFromContext(ctx)
		if !parent.IsRecording() {
			return nil
		}
		tp = parent.TracerProvider()
	case !telemetry.RecordsSpans(tp):
		return nil // a no-op span still costs a context per Check
	}
	_, span := tp.Tracer(tracerName).Start(ctx, "portcullis.policy.eval", trace.WithSpanKind(trace.SpanKindInternal))
	if !span.IsRecording() {
		span.End()
		return nil
	}
	return span
}

// endEvalSpan records the decision path and the result (allow, deny or
// error) and ends span. Error texts are not recorded: they may quote input.
func endEvalSpan(span trace.Span, path string, d Decision, err error) {
	result := "deny"
	switch {
	case err != nil:
		result = "error"
		span.SetStatus(codes.Error, "policy evaluation failed")
	case d.Allowed:
		result = "allow"
	}
	span.SetAttributes(
		attribute.String("portcullis.policy.decision_path", path),
		attribute.String("portcullis.policy.result", result),
		attribute.Bool("portcullis.policy.dry_run", d.DryRun),
	)
	span.End()
}
