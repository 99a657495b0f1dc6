package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
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
	// Meter exports its instruments as Prometheus text at MetricsHandler.
	Meter metric.MeterProvider
	// Propagator reads and writes W3C trace context and baggage.
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the Prometheus text of Meter.
	MetricsHandler http.Handler
	// Shutdown flushes pending spans and stops the providers.
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
//   - OTEL_SERVICE_NAME, when set, overrides serviceName, and
//     OTEL_RESOURCE_ATTRIBUTES adds resource attributes;
//   - the OTLP exporter reads its own OTEL_EXPORTER_OTLP_* settings.
func Setup(ctx context.Context, serviceName string) (*Providers, error) {
	mp, metricsHandler, err := NewMetrics()
	if err != nil {
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
		_ = exp.Shutdown(ctx)
		_ = mp.Shutdown(ctx)
		return nil, fmt.Errorf("resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	p.Tracer = tp
	p.Shutdown = func(ctx context.Context) error {
		return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
	}
	return p, nil
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
