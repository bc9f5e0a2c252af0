package outbound_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestCallsAreClientSpansCarryingTheTraceContext: with tracing on (a global provider and
// the W3C propagators, as telemetry.NewTracing installs them), every attempt is a client
// span of the caller's trace, and the dependency receives the trace context.
func TestCallsAreClientSpansCarryingTheTraceContext(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	otel.SetTracerProvider(provider)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })

	got := make(chan string, 1)
	dep := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
	})
	c, _ := newClient(t, "traced", options())
	ctx, parent := provider.Tracer("test").Start(context.Background(), "request")
	if status, err := get(ctx, t, c, dep.URL); err != nil || status != http.StatusOK {
		t.Fatalf("call: %d %v", status, err)
	}
	parent.End()

	traceparent := <-got
	if want := parent.SpanContext().TraceID().String(); len(traceparent) != 55 || traceparent[3:35] != want {
		t.Fatalf("the dependency got traceparent %q, want one in trace %s", traceparent, want)
	}
	var client sdktrace.ReadOnlySpan
	for _, s := range recorder.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			client = s
		}
	}
	if client == nil || client.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("no client span below the caller's: %v", recorder.Ended())
	}
	if traceparent[36:52] != client.SpanContext().SpanID().String() {
		t.Errorf("traceparent %q does not name the client span %s", traceparent, client.SpanContext().SpanID())
	}
}
