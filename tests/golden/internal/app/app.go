// Package app wires the service together: Run is the whole program, called by main and
// by the end-to-end tests.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/example/my-service/internal/auth"
	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/httpapi"
	"github.com/example/my-service/internal/ratelimit"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/store"
	"github.com/example/my-service/internal/telemetry"
)

// Version is set at build time with -ldflags "-X github.com/example/my-service/internal/app.Version=...".
var Version = "dev"

// Run runs the service until ctx is cancelled or SIGINT/SIGTERM arrives. args are the
// command line (args[0] is the program name): flags -healthcheck and -version, and the
// subcommand "migrate". getenv reads the configuration.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	healthcheck := fs.Bool("healthcheck", false, "GET /readyz on the local server and exit 0 when ready (container HEALTHCHECK)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		_, _ = fmt.Fprintf(stderr, "usage: %s [flags] [serve|migrate]\n", args[0])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *showVersion {
		_, err := fmt.Fprintln(stdout, Version)
		return err
	}
	command := "serve"
	if fs.NArg() > 0 {
		command = fs.Arg(0)
	}
	if command != "serve" && command != "migrate" {
		return fmt.Errorf("unknown command %q: use serve or migrate", command)
	}

	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	if *healthcheck {
		return checkHealth(ctx, cfg.HTTPAddr, cfg.TLS)
	}
	logger := telemetry.NewLogger(stdout, cfg.LogLevel)
	if command == "serve" {
		if err := cfg.CheckServing(); err != nil {
			return err
		}
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	db, err := store.Open(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			logger.Error("closing the database", "err", err.Error())
		}
		logger.Info("stopped")
	}()

	if command == "migrate" {
		if err := db.Migrate(ctx); err != nil {
			return err
		}
		logger.Info("migrations applied", "db_type", cfg.DB.Type)
		return nil
	}
	auditOut, closeAudit, err := openAuditLog(cfg.AuditLog, stdout, stderr)
	if err != nil {
		return err
	}
	defer closeAudit()
	return serve(ctx, cfg, logger, telemetry.NewAudit(auditOut), db)
}

// openAuditLog opens the audit stream AUDIT_LOG names: stderr, stdout or a file.
func openAuditLog(name string, stdout, stderr io.Writer) (io.Writer, func(), error) {
	switch name {
	case "stderr":
		return stderr, func() {}, nil
	case "stdout":
		return stdout, func() {}, nil
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("AUDIT_LOG: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}

func serve(ctx context.Context, cfg config.Config, logger *slog.Logger, audit *telemetry.Audit, db store.Store) error {
	logger.Info("starting", "version", Version, "config", cfg)
	policy, err := auth.New(ctx, cfg.Auth, logger)
	if err != nil {
		return err
	}
	if !policy.Enabled() {
		logger.Warn("authentication is off (APP_ENV=development and neither JWT_SECRET nor JWT_JWKS_URL is set): every caller may write")
	}
	proxies, err := ratelimit.NewProxies(cfg.RateLimit.TrustedProxies)
	if err != nil {
		return fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	limiter := ratelimit.New(cfg.RateLimit.RPS, cfg.RateLimit.Burst)
	tracing, err := telemetry.NewTracing(ctx, cfg.Tracing, Version, logger)
	if err != nil {
		return err
	}
	defer flushSpans(tracing, logger)

	tlsConfig, reloadTLS, err := serverTLS(cfg.TLS, logger)
	if err != nil {
		return err
	}

	state := health.New(db, time.Second)
	metrics := telemetry.NewMetrics()
	metrics.RegisterPoolStats(cfg.DB.Type, db.Stats)
	metrics.RegisterRetries(cfg.DB.Type, db.Retries)
	metrics.RegisterReadiness(func() bool { return state.Ready(ctx).Ready })
	items := service.NewItems(db, service.Limits{
		DefaultPageSize: cfg.HTTP.DefaultPageSize, MaxPageSize: cfg.HTTP.MaxPageSize,
	}, nil)

	// Listen before serving: bind errors surface here, and ":0" works in tests.
	var (
		lc        net.ListenConfig
		listeners []net.Listener
	)
	listen := func(name, addr string) (net.Listener, error) {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return nil, fmt.Errorf("listen on %s %s: %w", name, addr, err)
		}
		listeners = append(listeners, ln)
		return ln, nil
	}
	apiLn, err := listen("HTTP_ADDR", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	metricsLn, err := listen("METRICS_ADDR", cfg.MetricsAddr)
	if err != nil {
		return err
	}
	// The profiling listener, only when PPROF_ENABLED (config checked its address).
	var debugLn net.Listener
	if cfg.Pprof.Enabled {
		if debugLn, err = listen("PPROF_ADDR", cfg.Pprof.Addr); err != nil {
			return err
		}
		if !cfg.Pprof.Loopback() {
			logger.Warn("pprof listens beyond loopback (PPROF_ALLOW_NON_LOOPBACK): anyone who reaches it can profile the process", "pprof_addr", debugLn.Addr().String())
		}
	}

	api := &http.Server{
		Handler: httpapi.NewServer(httpapi.Deps{
			Logger: logger, HTTP: cfg.HTTP, CORS: cfg.CORS, Policy: policy, Limiter: limiter, Proxies: proxies,
			Audit: audit, Health: state, Metrics: metrics, Traced: tracing.Enabled(), Items: items,
		}),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}
	// While draining, each response sends its keep-alive client to reconnect elsewhere.
	api.Handler = closeWhileDraining(state, api.Handler)
	metricsSrv := newMetricsServer(cfg.HTTP, metrics, logger)
	addrs := []any{"http_addr", apiLn.Addr().String(), "metrics_addr", metricsLn.Addr().String()}
	if debugLn != nil {
		addrs = append(addrs, "pprof_addr", debugLn.Addr().String())
	}
	logger.Info("listening", addrs...)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveHTTP(api, apiLn) })
	g.Go(func() error { return serveHTTP(metricsSrv, metricsLn) })
	stops := []func(context.Context) error{api.Shutdown, metricsSrv.Shutdown}
	if debugLn != nil {
		debugSrv, stopDebug := newDebugServer(cfg.HTTP, logger)
		g.Go(func() error { return serveHTTP(debugSrv, debugLn) })
		stops = append(stops, stopDebug)
	}
	g.Go(func() error {
		reloadTLS(gctx)
		return nil
	})
	g.Go(func() error {
		migrateUntilDone(gctx, logger, cfg.DB.MigrateOnStart, db, state)
		sweepIdempotencyRecords(gctx, logger, db, cfg.DB.IdempotencySweepInterval, cfg.DB.StatementTimeout)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		return shutdown(cfg.HTTP, logger, state, stops...)
	})
	return g.Wait()
}

// flushSpans exports the spans still buffered once the servers have stopped.
func flushSpans(tracing *telemetry.Tracing, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tracing.Shutdown(ctx); err != nil {
		logger.Warn("shutdown", "err", err.Error())
	}
}

// serveHTTP serves until Shutdown: HTTPS when the server has a TLS configuration (its
// GetCertificate supplies the certificate, so no file names here).
func serveHTTP(srv *http.Server, ln net.Listener) error {
	var err error
	if srv.TLSConfig != nil {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shutdown flips readiness, waits the drain delay, then stops the servers in order,
// letting in-flight requests finish within the shutdown timeout.
func shutdown(cfg config.HTTP, logger *slog.Logger, state *health.State, stops ...func(context.Context) error) error {
	logger.Info("shutting down: readiness is now failing", "drain_delay", cfg.DrainDelay)
	state.StartDraining()
	time.Sleep(cfg.DrainDelay)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, stop := range stops {
		if err := stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
	}
	return errors.Join(errs...)
}

// migrateUntilDone applies migrations (when enabled), retrying with capped backoff while
// the database is unreachable, then marks the service ready. A database that is down at
// start-up makes the service not-ready, not a crash loop.
func migrateUntilDone(ctx context.Context, logger *slog.Logger, enabled bool, db store.Store, state *health.State) {
	if !enabled {
		state.MarkMigrated()
		return
	}
	backoff := 100 * time.Millisecond
	for {
		err := db.Migrate(ctx)
		if err == nil {
			logger.Info("migrations applied")
			state.MarkMigrated()
			return
		}
		logger.Warn("migrations failed; retrying", "err", err.Error(), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}
