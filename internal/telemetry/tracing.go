package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Providers are the OpenTelemetry providers main builds once and passes to
// every component. None of them is installed globally.
type Providers struct {
	// Tracer is an SDK tracer provider, or a no-op one when no span
	// exporter is configured.
	Tracer trace.TracerProvider
	// Meter exports its instruments as Prometheus text at MetricsHandler
	// and, when OTEL_METRICS_EXPORTER asks for it, over OTLP.
	Meter metric.MeterProvider
	// Propagator reads and writes W3C trace context and baggage.
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the Prometheus text of Meter.
	MetricsHandler http.Handler
	// Shutdown flushes pending spans and metrics and stops the providers.
	Shutdown func(context.Context) error
}

// Setup builds the tracer and meter providers from the standard OTEL_*
// environment variables:
//
//   - OTEL_TRACES_EXPORTER (otlp, console or none) picks the span exporter;
//     unlike the OpenTelemetry default, when neither it nor an OTLP
//     endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
//     is set, no exporter is used and tracing is a no-op, so a plain
//     portcullis serve does not try to reach a collector;
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG pick the sampler
//     (parentbased_always_on by default);
//   - OTEL_METRICS_EXPORTER (otlp, console, prometheus or none) adds a
//     periodic metric exporter next to the Prometheus text of
//     MetricsHandler; unset, none and prometheus add none (the Prometheus
//     text is always there; see [PrometheusAddr]). Unlike traces, an OTLP
//     endpoint alone does not turn it on: metrics are scraped by default,
//     and shipping them twice would double the series;
//   - OTEL_SERVICE_NAME, when set, overrides serviceName, and
//     OTEL_RESOURCE_ATTRIBUTES adds resource attributes;
//   - the OTLP exporters read their own OTEL_EXPORTER_OTLP_* settings
//     (OTEL_METRIC_EXPORT_INTERVAL for the metric period).
func Setup(ctx context.Context, serviceName string) (*Providers, error) {
	if serviceName == "" {
		serviceName = "portcullis"
	}
	// Later detectors win: OTEL_SERVICE_NAME overrides the configured name.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	reader, err := metricReader(ctx)
	if err != nil {
		return nil, fmt.Errorf("metric exporter: %w", err)
	}
	var readers []sdkmetric.Reader
	if reader != nil {
		readers = append(readers, reader)
	}
	mp, metricsHandler, err := newMetrics(res, readers...)
	if err != nil {
		if reader != nil {
			_ = reader.Shutdown(ctx)
		}
		return nil, err
	}
	p := &Providers{
		Tracer:         noop.NewTracerProvider(),
		Meter:          mp,
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		MetricsHandler: metricsHandler,
		Shutdown:       mp.Shutdown,
	}
	if !tracesConfigured() {
		return p, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		_ = mp.Shutdown(ctx)
		return nil, fmt.Errorf("span exporter: %w", err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return p, nil
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	p.Tracer = tp
	p.Shutdown = func(ctx context.Context) error {
		return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
	}
	return p, nil
}

// metricReader returns the periodic reader OTEL_METRICS_EXPORTER asks
// for, or nil.
func metricReader(ctx context.Context) (sdkmetric.Reader, error) {
	switch os.Getenv("OTEL_METRICS_EXPORTER") {
	case "", "none", "prometheus":
		// autoexport's prometheus starts an HTTP server of its own; the
		// Prometheus text is already served by the command.
		return nil, nil
	}
	r, err := autoexport.NewMetricReader(ctx)
	if err != nil {
		return nil, err
	}
	if autoexport.IsNoneMetricReader(r) {
		return nil, nil
	}
	return r, nil
}

// PrometheusAddr returns the address at which OpenTelemetry's Prometheus
// exporter is asked to listen (OTEL_EXPORTER_PROMETHEUS_HOST, default
// localhost, and OTEL_EXPORTER_PROMETHEUS_PORT, default 9464) when
// OTEL_METRICS_EXPORTER is prometheus. A command without an admin listener
// serves MetricsHandler there.
func PrometheusAddr() (string, bool) {
	if os.Getenv("OTEL_METRICS_EXPORTER") != "prometheus" {
		return "", false
	}
	host, port := os.Getenv("OTEL_EXPORTER_PROMETHEUS_HOST"), os.Getenv("OTEL_EXPORTER_PROMETHEUS_PORT")
	if host == "" {
		host = "localhost"
	}
	if port == "" {
		port = "9464"
	}
	return net.JoinHostPort(host, port), true
}

// tracesConfigured reports whether the environment asks for a span
// exporter at all.
func tracesConfigured() bool {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// Log attribute keys added by [WithTraceIDs].
const (
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)

// WithTraceIDs wraps h so that every record logged with a context holding a
// valid span context gets trace_id and span_id attributes. Attributes are
// added to the record, so under a WithGroup they land inside the group.
func WithTraceIDs(h slog.Handler) slog.Handler {
	if _, ok := h.(traceIDHandler); ok {
		return h
	}
	return traceIDHandler{h}
}

type traceIDHandler struct{ slog.Handler }

func (h traceIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String(TraceIDKey, sc.TraceID().String()), slog.String(SpanIDKey, sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceIDHandler{h.Handler.WithAttrs(as)}
}

func (h traceIDHandler) WithGroup(name string) slog.Handler {
	return traceIDHandler{h.Handler.WithGroup(name)}
}
