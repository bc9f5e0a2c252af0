package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
)

// Tracing exports the service's spans over OTLP, or does nothing when tracing is off.
//
// On, NewTracing installs its tracer provider and the W3C propagators (trace context and
// baggage) as OpenTelemetry's globals: the transports' instrumentation (otelhttp), the database drivers' (otelsql, otelpgx), the outbound client and StartSpan all
// use them. Off, it installs nothing: no exporter, no goroutine, no network, and the
// transports and stores are not instrumented at all.
type Tracing struct {
	provider *sdktrace.TracerProvider
}

// NewTracing starts tracing as cfg says. version is the service's build version.
func NewTracing(ctx context.Context, cfg config.Tracing, version string, logger *slog.Logger) (*Tracing, error) {
	if !cfg.Enabled() {
		return &Tracing{}, nil
	}
	exporter, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// Later sources win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES over the defaults.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(version)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter), // OTEL_BSP_* tune the batches
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler(cfg)),
	)
	otel.SetTracerProvider(provider)
	tracingOn.Store(true)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing: spans not exported", "err", err.Error())
	}))
	return &Tracing{provider: provider}, nil
}

func newExporter(ctx context.Context, cfg config.Tracing) (sdktrace.SpanExporter, error) {
	if cfg.ExportProtocol() == "grpc" {
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.ExportURL()))
	}
	return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.ExportURL()))
}

// sampler is the sampler OTEL_TRACES_SAMPLER names (config.Validate checked the name).
func sampler(cfg config.Tracing) sdktrace.Sampler {
	switch cfg.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(cfg.Ratio())
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	default:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.Ratio()))
	}
}

// Enabled reports whether spans are exported.
func (t *Tracing) Enabled() bool { return t.provider != nil }

// Shutdown exports the spans still buffered, within ctx, and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	tracingOn.Store(false)
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flushing spans: %w", err)
	}
	return nil
}

// StartSpan starts a span for one of the service's own operations (the service layer
// names them "<Resource>.<Operation>") from OpenTelemetry's global provider: a no-op until
// NewTracing installs one. End it with EndSpan.
func StartSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if !tracingOn.Load() {
		return ctx, noop.Span{} // tracing costs nothing when off
	}
	return otel.GetTracerProvider().Tracer(instrumentation).Start(ctx, name)
}

// tracingOn is whether NewTracing installed a provider (until its Shutdown).
var tracingOn atomic.Bool

// instrumentation names the service's own spans' instrumentation scope.
const instrumentation = "github.com/example/my-service"

// EndSpan ends span, marking it failed when err is the service's or a dependency's fault
// (internal, unavailable); a caller's mistake (invalid input, not found, conflict) is a
// normal outcome and only recorded as the error kind.
func EndSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		kind := domain.KindOf(err)
		span.SetAttributes(semconv.ErrorTypeKey.String(string(kind)))
		if kind == domain.KindInternal || kind == domain.KindUnavailable {
			span.RecordError(err)
			span.SetStatus(codes.Error, string(kind))
		}
	}
	span.End()
}

// StatementTracing is the tracer provider the database drivers' instrumentation (otelsql,
// otelpgx) uses: OpenTelemetry's global one, making spans only inside a span already
// started (a request's). Start-up migrations, readiness probes and background sweeps run
// outside any request and would each be a trace of its own; they are not traced.
func StatementTracing() trace.TracerProvider {
	return childSpans{provider: otel.GetTracerProvider()}
}

type childSpans struct {
	embedded.TracerProvider
	provider trace.TracerProvider
}

func (p childSpans) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childTracer{tracer: p.provider.Tracer(name, opts...)}
}

type childTracer struct {
	embedded.Tracer
	tracer trace.Tracer
}

func (t childTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx) // a no-op span
	}
	return t.tracer.Start(ctx, name, opts...)
}
