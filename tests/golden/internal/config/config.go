// Package config reads the service's settings from the environment, once, at start-up.
// Defaults come from the template's computed plan (see docs/adr/0001-architecture.md).
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/caarlos0/env/v11"
)

// Config is every setting of the service. Secrets come only from the environment and are
// never logged (see LogValue).
type Config struct {
	Env         string     `env:"APP_ENV" envDefault:"development"`
	LogLevel    slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	HTTPAddr    string     `env:"HTTP_ADDR" envDefault:":8080"`
	MetricsAddr string     `env:"METRICS_ADDR" envDefault:":9090"`

	DB        Database
	HTTP      HTTP
	RateLimit RateLimit
	Auth      Auth
}

// Database settings. The pool size comes from Little's law on the peak load.
type Database struct {
	Type             string        `env:"DB_TYPE" envDefault:"postgresql"`
	URL              string        `env:"DATABASE_URL"`
	MaxConns         int32         `env:"DB_MAX_CONNS" envDefault:"30"`
	MinConns         int32         `env:"DB_MIN_CONNS" envDefault:"0"`
	ConnMaxLifetime  time.Duration `env:"DB_CONN_MAX_LIFETIME" envDefault:"30m"`
	ConnMaxIdleTime  time.Duration `env:"DB_CONN_MAX_IDLE_TIME" envDefault:"5m"`
	StatementTimeout time.Duration `env:"DB_STATEMENT_TIMEOUT" envDefault:"250ms"`
	MigrateOnStart   bool          `env:"DB_MIGRATE_ON_START" envDefault:"true"`
	RetryAttempts    uint64        `env:"DB_RETRY_ATTEMPTS" envDefault:"5"`
	RetryBase        time.Duration `env:"DB_RETRY_BASE" envDefault:"10ms"`
	RetryCap         time.Duration `env:"DB_RETRY_CAP" envDefault:"500ms"`

	// An Idempotency-Key's record is replayed for IdempotencyTTL, then forgotten; expired
	// records are deleted every IdempotencySweepInterval.
	IdempotencyTTL           time.Duration `env:"IDEMPOTENCY_TTL" envDefault:"24h"`
	IdempotencySweepInterval time.Duration `env:"IDEMPOTENCY_SWEEP_INTERVAL" envDefault:"10m"`
}

// Request handling and HTTP server settings: the timeout budget derives from the p99
// target; REQUEST_TIMEOUT is the deadline of every request.
type HTTP struct {
	RequestTimeout    time.Duration `env:"REQUEST_TIMEOUT" envDefault:"250ms"`
	ReadHeaderTimeout time.Duration `env:"HTTP_READ_HEADER_TIMEOUT" envDefault:"2s"`
	ReadTimeout       time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"1.25s"`
	WriteTimeout      time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"1.25s"`
	IdleTimeout       time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"1m"`
	ShutdownTimeout   time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	DrainDelay        time.Duration `env:"SHUTDOWN_DRAIN_DELAY" envDefault:"0s"`
	MaxBodyBytes      int64         `env:"HTTP_MAX_BODY_BYTES" envDefault:"1048576"`
	DefaultPageSize   int           `env:"PAGE_SIZE_DEFAULT" envDefault:"20"`
	MaxPageSize       int           `env:"PAGE_SIZE_MAX" envDefault:"100"`
}

// RateLimit is the per-client token bucket (clients keyed by remote address).
type RateLimit struct {
	RPS   float64 `env:"RATE_LIMIT_RPS" envDefault:"1000"`
	Burst int     `env:"RATE_LIMIT_BURST" envDefault:"2000"`
}

// Auth protects the write routes with HS256 JWTs when JWTSecret is set.
type Auth struct {
	JWTSecret   string `env:"JWT_SECRET"`
	JWTIssuer   string `env:"JWT_ISSUER"`
	JWTAudience string `env:"JWT_AUDIENCE"`
}

// Load parses the environment given by getenv and checks the result.
func Load(getenv func(string) string) (Config, error) {
	params, err := env.GetFieldParams(&Config{})
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	environ := make(map[string]string, len(params))
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			environ[p.Key] = v
		}
	}
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: environ})
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", nameVariables(err))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// nameVariables rewrites parse errors to name the environment variable, not the Go field.
func nameVariables(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	keys := map[string]string{}
	collectKeys(reflect.TypeFor[Config](), keys)
	errs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) && keys[pe.Name] != "" {
			errs = append(errs, fmt.Errorf("%s: %w", keys[pe.Name], pe.Err))
			continue
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func collectKeys(t reflect.Type, keys map[string]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		if key := f.Tag.Get("env"); key != "" {
			keys[f.Name] = key
		} else if f.Type.Kind() == reflect.Struct {
			collectKeys(f.Type, keys)
		}
	}
}

// Validate reports every setting that is out of range, all at once.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.DB.URL != "", "DATABASE_URL is required (for DB_TYPE=sqlite a file path such as file:data/app.db)")
	check(c.DB.MaxConns >= 1, "DB_MAX_CONNS must be at least 1")
	check(c.DB.MinConns >= 0 && c.DB.MinConns <= c.DB.MaxConns, "DB_MIN_CONNS must be from 0 to DB_MAX_CONNS")
	for name, d := range map[string]time.Duration{
		"REQUEST_TIMEOUT": c.HTTP.RequestTimeout, "HTTP_READ_HEADER_TIMEOUT": c.HTTP.ReadHeaderTimeout,
		"HTTP_READ_TIMEOUT": c.HTTP.ReadTimeout, "HTTP_WRITE_TIMEOUT": c.HTTP.WriteTimeout,
		"HTTP_IDLE_TIMEOUT": c.HTTP.IdleTimeout, "SHUTDOWN_TIMEOUT": c.HTTP.ShutdownTimeout,
		"DB_STATEMENT_TIMEOUT": c.DB.StatementTimeout, "DB_CONN_MAX_LIFETIME": c.DB.ConnMaxLifetime,
		"IDEMPOTENCY_TTL": c.DB.IdempotencyTTL, "IDEMPOTENCY_SWEEP_INTERVAL": c.DB.IdempotencySweepInterval,
	} {
		check(d > 0, "%s must be a positive duration", name)
	}
	check(c.HTTP.DrainDelay >= 0, "SHUTDOWN_DRAIN_DELAY must not be negative")
	check(c.HTTP.MaxBodyBytes >= 1, "HTTP_MAX_BODY_BYTES must be at least 1")
	check(c.HTTP.MaxPageSize >= 1, "PAGE_SIZE_MAX must be at least 1")
	check(c.HTTP.DefaultPageSize >= 1 && c.HTTP.DefaultPageSize <= c.HTTP.MaxPageSize, "PAGE_SIZE_DEFAULT must be from 1 to PAGE_SIZE_MAX")
	check(c.RateLimit.RPS > 0, "RATE_LIMIT_RPS must be positive")
	check(c.RateLimit.Burst >= 1, "RATE_LIMIT_BURST must be at least 1")
	check(c.Auth.JWTSecret == "" || len(c.Auth.JWTSecret) >= 32, "JWT_SECRET must be at least 32 bytes")
	return errors.Join(errs...)
}

// LogValue logs the configuration with secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("env", c.Env),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.String("db_type", c.DB.Type),
		slog.Int("db_max_conns", int(c.DB.MaxConns)),
		slog.Duration("idempotency_ttl", c.DB.IdempotencyTTL),
		slog.Duration("request_timeout", c.HTTP.RequestTimeout),
		slog.Float64("rate_limit_rps", c.RateLimit.RPS),
		slog.Bool("auth", c.Auth.JWTSecret != ""),
	)
}
