package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/telemetry"
)

func TestTracingIsOffWithoutAnEndpoint(t *testing.T) {
	for name, cfg := range map[string]config.Tracing{
		"no endpoint":  {Protocol: "http/protobuf", Sampler: "parentbased_traceidratio", SamplerArg: "1"},
		"sdk disabled": {Endpoint: "http://127.0.0.1:1", Disabled: true, Protocol: "http/protobuf"},
	} {
		t.Run(name, func(t *testing.T) {
			tr, err := telemetry.NewTracing(context.Background(), cfg, "test", slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			if tr.Enabled() {
				t.Fatal("tracing is on without an endpoint")
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSpansReachTheCollectorOnShutdown exports over OTLP/HTTP to a test collector: the
// service's spans arrive, at the latest when Shutdown flushes them.
func TestSpansReachTheCollectorOnShutdown(t *testing.T) {
	var exports atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" && len(body) > 0 {
			exports.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	for _, sampler := range config.Samplers {
		cfg := config.Tracing{Endpoint: collector.URL, Protocol: "http/protobuf", ServiceName: "test",
			Sampler: sampler, SamplerArg: "1"}
		if got := cfg.ExportURL(); got != collector.URL+"/v1/traces" {
			t.Fatalf("ExportURL = %q", got)
		}
		tr, err := telemetry.NewTracing(context.Background(), cfg, "test", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		before := exports.Load()
		ctx, span := telemetry.StartSpan(context.Background(), "Test.Operation")
		telemetry.EndSpan(span, domain.Errorf(domain.KindUnavailable, "the database is down"))
		_, child := telemetry.StartSpan(ctx, "Test.Child")
		telemetry.EndSpan(child, domain.Errorf(domain.KindNotFound, "no such thing"))
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		exported := exports.Load() > before
		if want := sampler != "always_off" && sampler != "parentbased_always_off"; exported != want {
			t.Errorf("sampler %s: spans exported = %v, want %v", sampler, exported, want)
		}
	}
}

func TestTracingOverGRPCStartsWithoutACollector(t *testing.T) {
	cfg := config.Tracing{Endpoint: "http://127.0.0.1:1", Protocol: "grpc", ServiceName: "test",
		Sampler: "parentbased_always_on"}
	tr, err := telemetry.NewTracing(context.Background(), cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Enabled() {
		t.Fatal("tracing is off with an endpoint")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nothing listens: the flush gives up at once instead of hanging
	_ = tr.Shutdown(ctx)
}

func TestStatementSpansOnlyInsideARequest(t *testing.T) {
	tracer := telemetry.StatementTracing().Tracer("test")
	_, span := tracer.Start(context.Background(), "outside")
	if span.SpanContext().IsValid() {
		t.Error("a statement outside any span started a trace of its own")
	}
	span.End()
	parent := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	// No provider is installed here, so the global one answers: a non-recording span in the
	// caller's trace.
	_, span = tracer.Start(parent, "inside")
	if span.SpanContext().TraceID() != (trace.TraceID{1}) {
		t.Error("a statement inside a request left the request's trace")
	}
	span.End()
}

func TestLogLinesCarryTheTraceAndSpanIDs(t *testing.T) {
	var buf bytes.Buffer
	logger := telemetry.NewLogger(&buf, slog.LevelInfo)
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xab, 1}, SpanID: trace.SpanID{0xcd, 2}, TraceFlags: trace.FlagsSampled,
	})
	ctx := telemetry.WithRequestID(trace.ContextWithSpanContext(context.Background(), sc), "req-1")
	logger.With("component", "test").WithGroup("g").InfoContext(ctx, "hello", "k", "v")
	logger.InfoContext(context.Background(), "no request")

	dec := json.NewDecoder(&buf)
	var line map[string]any
	if err := dec.Decode(&line); err != nil {
		t.Fatal(err)
	}
	g, _ := line["g"].(map[string]any)
	if g["request_id"] != "req-1" || g["trace_id"] != sc.TraceID().String() || g["span_id"] != sc.SpanID().String() {
		t.Errorf("log line = %v", line)
	}
	line = map[string]any{}
	if err := dec.Decode(&line); err != nil {
		t.Fatal(err)
	}
	if _, ok := line["trace_id"]; ok {
		t.Errorf("a line outside any span has a trace_id: %v", line)
	}

	buf.Reset()
	telemetry.NewAudit(&buf).Record(ctx, telemetry.AuditEvent{Subject: "s", Action: "a"})
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["trace_id"] != sc.TraceID().String() {
		t.Errorf("audit record = %s (%v)", buf.String(), err)
	}
}
