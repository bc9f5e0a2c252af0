package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/health"
)

type okPinger struct{}

func (okPinger) Ping(context.Context) error { return nil }

// TestShutdownDrains: readiness fails first, then an in-flight request finishes with its
// answer before the server stops.
func TestShutdownDrains(t *testing.T) {
	state := health.New(okPinger{}, time.Second)
	state.MarkMigrated()
	started, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{
		ReadHeaderTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			close(started)
			<-release
			w.WriteHeader(http.StatusTeapot)
		}),
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = serveHTTP(srv, ln) }()

	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+ln.Addr().String(), nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		_ = res.Body.Close()
		status <- res.StatusCode
	}()
	<-started

	done := make(chan error, 1)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	go func() {
		done <- shutdown(config.HTTP{ShutdownTimeout: 10 * time.Second}, logger, state, srv.Shutdown)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for state.Ready(t.Context()).Checks["draining"] == "ok" {
		if time.Now().After(deadline) {
			t.Fatal("readiness did not flip")
		}
		time.Sleep(time.Millisecond)
	}
	if state.Ready(t.Context()).Ready {
		t.Fatal("ready while draining")
	}
	select {
	case err := <-done:
		t.Fatalf("shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if got := <-status; got != http.StatusTeapot {
		t.Fatalf("in-flight request got %d, want its own answer", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
