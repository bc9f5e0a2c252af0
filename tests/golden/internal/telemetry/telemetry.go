// Package telemetry sets up structured logs, Prometheus metrics on a private registry and
// OpenTelemetry tracing (tracing.go).
package telemetry

import (
	"context"
	"database/sql"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a JSON logger that adds the request ID and the trace and span IDs found
// in the context: a log line leads to its request's trace.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(requestIDHandler{traceHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})}})
}

type requestIDKey struct{}

// WithRequestID returns a context carrying the request ID for logs.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request ID in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

// traceHandler adds the trace and span IDs of the span in the context, when there is one.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// Metrics are the service's RED and saturation metrics.
type Metrics struct {
	Registry *prometheus.Registry
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	InFlight prometheus.Gauge
	// RateLimited counts the requests the rate limit refused, by transport ("http", "grpc").
	RateLimited *prometheus.CounterVec
}

// NewMetrics registers the RED and saturation metrics and the Go runtime and process
// collectors on a private registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "HTTP request latency by method and route pattern.",
			Buckets: latencyBuckets,
		}, []string{"method", "route"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight", Help: "HTTP requests being served.",
		}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rate_limited_requests_total", Help: "Requests refused by the rate limit, by transport.",
		}, []string{"transport"}),
	}
	// Every transport's series exists from the start, at 0: rate() sees the first refusal.
	m.RateLimited.WithLabelValues("http")
	reg.MustRegister(
		m.Requests, m.Duration, m.InFlight,
		m.RateLimited,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// latencyBuckets are the histogram buckets of request latency, in seconds: multiples of
// the p99 target (0.05 s, a bucket boundary, so the latency SLO counts the
// requests within it exactly) up to the request deadline (docs/adr/0001-architecture.md).
var latencyBuckets = []float64{0.0025, 0.005, 0.0125, 0.025, 0.0375, 0.05, 0.075, 0.1, 0.15, 0.25}

// RegisterReadiness exports service_ready: 1 while ready says the service is ready for
// traffic, else 0, asked at scrape time.
func (m *Metrics) RegisterReadiness(ready func() bool) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "service_ready", Help: "1 when the service is ready for traffic (the readiness checks pass), else 0.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}

// RegisterPoolStats exports the database pool's statistics (gauges and counters read at
// scrape time) under db_pool_*, labelled with the DB_TYPE.
func (m *Metrics) RegisterPoolStats(dbType string, stats func() sql.DBStats) {
	labels := prometheus.Labels{"db_type": dbType}
	gauge := func(name, help string, f func(sql.DBStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return f(stats()) })
	}
	counter := func(name, help string, f func(sql.DBStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return f(stats()) })
	}
	m.Registry.MustRegister(
		gauge("db_pool_max_open_connections", "Maximum open connections of the pool.", func(s sql.DBStats) float64 { return float64(s.MaxOpenConnections) }),
		gauge("db_pool_open_connections", "Open connections, in use and idle.", func(s sql.DBStats) float64 { return float64(s.OpenConnections) }),
		gauge("db_pool_in_use_connections", "Connections in use.", func(s sql.DBStats) float64 { return float64(s.InUse) }),
		gauge("db_pool_idle_connections", "Idle connections.", func(s sql.DBStats) float64 { return float64(s.Idle) }),
		counter("db_pool_wait_count_total", "Times a caller waited for a connection.", func(s sql.DBStats) float64 { return float64(s.WaitCount) }),
		counter("db_pool_wait_seconds_total", "Time spent waiting for connections.", func(s sql.DBStats) float64 { return s.WaitDuration.Seconds() }),
	)
}

// RegisterRetries exports db_transaction_retries_total, labelled with the DB_TYPE: how
// many times a transaction was run again because the database said another try may
// succeed (a deadlock, a Galera certification failure, a lock wait timeout, a Galera node
// not ready), read at scrape time. Engines that never retry report 0.
func (m *Metrics) RegisterRetries(dbType string, retries func() uint64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "db_transaction_retries_total", Help: "Transactions run again after a deadlock, Galera certification failure, lock wait timeout or node-not-ready error.",
		ConstLabels: prometheus.Labels{"db_type": dbType},
	}, func() float64 { return float64(retries()) }))
}

// Audit writes one structured record per security-relevant event (every write, every
// refused authentication or authorization) to its own stream, apart from the application
// log, for the audit trail. Records name who, what, which resource, the outcome and the
// request ID; never tokens, secrets or request bodies.
type Audit struct{ logger *slog.Logger }

// NewAudit returns an audit trail writing JSON lines to w.
func NewAudit(w io.Writer) *Audit {
	return &Audit{logger: slog.New(traceHandler{slog.NewJSONHandler(w, nil)})}
}

// AuditEvent is one audit record.
type AuditEvent struct {
	Subject   string // the authenticated subject, or "anonymous"
	Action    string // e.g. "items.create"
	Resource  string // e.g. "items/<id>", empty when none was reached
	Outcome   string // "success", "denied" (authentication or authorization refused) or "failure"
	Status    string // the HTTP status or gRPC code answered
	Transport string // "http" or "grpc"
	ClientIP  string
}

// Record writes e with the request ID (and the trace and span IDs) of ctx.
func (a *Audit) Record(ctx context.Context, e AuditEvent) {
	a.logger.LogAttrs(ctx, slog.LevelInfo, "audit",
		slog.String("log", "audit"),
		slog.String("subject", e.Subject),
		slog.String("action", e.Action),
		slog.String("resource", e.Resource),
		slog.String("outcome", e.Outcome),
		slog.String("status", e.Status),
		slog.String("transport", e.Transport),
		slog.String("client_ip", e.ClientIP),
		slog.String("request_id", RequestID(ctx)),
	)
}
