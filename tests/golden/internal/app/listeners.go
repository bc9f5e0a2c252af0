package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/telemetry"
	"github.com/example/my-service/internal/tlscert"
)

// serverTLS loads the certificate and key when TLS is configured, and returns the TLS
// configuration of the API listeners (nil: plaintext, TLS ends at the ingress) and a
// function that reloads the pair at every SIGHUP until its context ends. Handshakes also
// pick up a pair that changed on disk by themselves.
func serverTLS(cfg config.TLS, logger *slog.Logger) (*tls.Config, func(context.Context), error) {
	if !cfg.Enabled() {
		return nil, func(context.Context) {}, nil
	}
	certs, err := tlscert.New(cfg.CertFile, cfg.KeyFile, 2*time.Second, logger)
	if err != nil {
		return nil, nil, err
	}
	// Registered now, not in the returned function: a SIGHUP that comes before it runs
	// must not end the process (the default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return tlscert.ServerConfig(certs), func(ctx context.Context) {
		defer signal.Stop(hup)
		certs.ReloadOn(ctx, hup)
	}, nil
}

// newMetricsServer serves /metrics and nothing else (404 elsewhere), with every server
// timeout set: the listener is private but still a socket a slow or stuck client can hold.
func newMetricsServer(cfg config.HTTP, metrics *telemetry.Metrics, logger *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{Registry: metrics.Registry}))
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		// A scrape is a GET without a body: reading it takes no longer than its headers.
		ReadTimeout:  cfg.ReadHeaderTimeout,
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  time.Minute,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// newDebugServer serves net/http/pprof's handlers, registered one by one on a mux of its
// own (the package's init also registers them on http.DefaultServeMux, which no server of
// this service uses). It returns the server and its stop function for shutdown: stopping
// ends a CPU profile or trace in progress early (it is written short) instead of holding
// up shutdown for the seconds it asked for.
func newDebugServer(cfg config.HTTP, logger *slog.Logger) (*http.Server, func(context.Context) error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // also the named profiles: heap, goroutine, allocs, ...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol) // go tool pprof looks symbols up so
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           limitSeconds(60, mux),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadHeaderTimeout, // GETs, and the symbol POST of a few bytes
		// pprof extends this by the ?seconds= of a CPU profile, trace or delta profile.
		WriteTimeout: 10 * time.Second,
		IdleTimeout:  time.Minute,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return srv, func(ctx context.Context) error {
		cancel()
		return srv.Shutdown(ctx)
	}
}

// limitSeconds answers 400 to a ?seconds= that is not a number up to maxSeconds:
// net/http/pprof extends its write deadline by whatever it is asked for, so this is what
// bounds how long a CPU profile or trace keeps the profiler on and its connection open.
func limitSeconds(maxSeconds float64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := r.URL.Query().Get("seconds"); s != "" {
			if sec, err := strconv.ParseFloat(s, 64); err != nil || !(sec <= maxSeconds) { // NaN is not <= anything
				http.Error(w, fmt.Sprintf("seconds must be a number up to %g", maxSeconds), http.StatusBadRequest)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// closeWhileDraining answers with "Connection: close" once shutdown has begun: each
// keep-alive client finishes its request and opens its next connection, which the load
// balancer sends to another instance once it has seen readiness fail. Idle connections
// are left alone until the server shuts down (SetKeepAlivesEnabled(false) would close
// them at once, racing requests a client is sending on them); on HTTP/2 the header
// becomes a GOAWAY.
func closeWhileDraining(state *health.State, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if state.Draining() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
