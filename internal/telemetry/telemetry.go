// Package telemetry builds the logger and the OpenTelemetry tracer and meter
// providers that main passes to every component. Nothing here is global: each call
// builds its own registry and providers.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// NewLogger returns a logger writing to w at level ("debug", "info",
// "warn", "error") in format ("json" or "text"). Records logged with a
// context holding a span carry its trace_id and span_id.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	h, err := newHandler(w, format, &slog.HandlerOptions{Level: l})
	if err != nil {
		return nil, err
	}
	return slog.New(WithTraceIDs(h)), nil
}

// AuditKey and AuditValue mark every record of an audit logger, so that an
// audit stream sharing stderr with the operational log can be told apart.
const (
	AuditKey   = "log"
	AuditValue = "audit"
)

// NewAuditLogger returns the logger of the audit stream: every record at
// info or above, whatever the log level, in format ("json" or "text"),
// marked log=audit. It adds no trace ids of its own: audit records carry
// trace_id as a field.
//
// Its JSON handler writes what slog.NewJSONHandler would, at less than
// half the cost for the flat records of strings and numbers audit
// records are.
func NewAuditLogger(w io.Writer, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if format == "json" || format == "" {
		return slog.New(newAuditJSONHandler(w, opts)).With(slog.String(AuditKey, AuditValue)), nil
	}
	h, err := newHandler(w, format, opts)
	if err != nil {
		return nil, err
	}
	return slog.New(h).With(slog.String(AuditKey, AuditValue)), nil
}

func newHandler(w io.Writer, format string, opts *slog.HandlerOptions) (slog.Handler, error) {
	switch format {
	case "json", "":
		return slog.NewJSONHandler(w, opts), nil
	case "text":
		return slog.NewTextHandler(w, opts), nil
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
}

// DurationBuckets returns the explicit bucket boundaries, in seconds, of
// the latency histograms: 10µs to 1s, three per decade (a cached Check
// takes tens of microseconds, a Redis round trip is bounded by its timeout,
// an introspection call by seconds).
func DurationBuckets() []float64 {
	return []float64{
		0.00001, 0.000025, 0.00005,
		0.0001, 0.00025, 0.0005,
		0.001, 0.0025, 0.005,
		0.01, 0.025, 0.05,
		0.1, 0.25, 0.5,
		1,
	}
}

// NewMetrics returns a meter provider whose instruments are exported as
// Prometheus text by the returned handler. Call Shutdown on the provider
// when done.
func NewMetrics() (*sdkmetric.MeterProvider, http.Handler, error) {
	return newMetrics(nil)
}

// newMetrics is NewMetrics with a resource (nil: the SDK's default) and
// more readers, which the provider's Shutdown flushes.
func newMetrics(res *resource.Resource, readers ...sdkmetric.Reader) (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	if res != nil {
		opts = append(opts, sdkmetric.WithResource(res))
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}
