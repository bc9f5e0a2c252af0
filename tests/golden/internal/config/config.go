// Package config reads the service's settings from the environment, once, at start-up.
// Defaults come from the template's computed plan (see docs/adr/0001-architecture.md).
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Config is every setting of the service. Secrets come only from the environment and are
// never logged (see LogValue).
type Config struct {
	// Env is the deployment environment. Only "development" may run without
	// authentication: every other value, the default included, fails closed.
	Env         string     `env:"APP_ENV" envDefault:"production"`
	LogLevel    slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	HTTPAddr    string     `env:"HTTP_ADDR" envDefault:":8080"`
	MetricsAddr string     `env:"METRICS_ADDR" envDefault:":9090"`

	DB        Database
	HTTP      HTTP
	TLS       TLS
	RateLimit RateLimit
	Auth      Auth
	CORS      CORS
	Pprof     Pprof
	// AuditLog is where audit records go, apart from the application log: "stderr"
	// (the default; the application log is stdout), "stdout", or a file path (appended).
	AuditLog string `env:"AUDIT_LOG" envDefault:"stderr"`
	Outbound Outbound
	Tracing  Tracing
}

// Tracing is OpenTelemetry tracing, set by the standard OTEL_* variables. It is on when an
// OTLP endpoint is set and OTEL_SDK_DISABLED is not true; off, nothing is installed. The
// exporter reads the other OTLP variables itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _COMPRESSION, _CERTIFICATE), as does the resource (OTEL_RESOURCE_ATTRIBUTES).
type Tracing struct {
	// Endpoint is the collector's base URL (http/protobuf appends /v1/traces);
	// TracesEndpoint, when set, is the full URL for traces and wins.
	Endpoint       string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	TracesEndpoint string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`
	// Protocol is http/protobuf (the default) or grpc; TracesProtocol wins when set.
	Protocol       string `env:"OTEL_EXPORTER_OTLP_PROTOCOL" envDefault:"http/protobuf"`
	TracesProtocol string `env:"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"`
	ServiceName    string `env:"OTEL_SERVICE_NAME" envDefault:"my-service"`
	// Sampler is one of the standard samplers; the default keeps the caller's decision and
	// samples SamplerArg of the traces that start here.
	Sampler    string `env:"OTEL_TRACES_SAMPLER" envDefault:"parentbased_traceidratio"`
	SamplerArg string `env:"OTEL_TRACES_SAMPLER_ARG" envDefault:"0.1"`
	Disabled   bool   `env:"OTEL_SDK_DISABLED" envDefault:"false"`
}

// Samplers are the OTEL_TRACES_SAMPLER values the service accepts.
var Samplers = []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// Enabled reports whether spans are exported.
func (t Tracing) Enabled() bool {
	return !t.Disabled && (t.Endpoint != "" || t.TracesEndpoint != "")
}

// ExportProtocol is the OTLP protocol for traces.
func (t Tracing) ExportProtocol() string {
	if t.TracesProtocol != "" {
		return t.TracesProtocol
	}
	return t.Protocol
}

// ExportURL is where traces go: TracesEndpoint as it is, else Endpoint with the signal's
// path for http/protobuf (the OTLP specification's rule) or as it is for gRPC.
func (t Tracing) ExportURL() string {
	if t.TracesEndpoint != "" {
		return t.TracesEndpoint
	}
	if t.ExportProtocol() == "grpc" {
		return t.Endpoint
	}
	return strings.TrimSuffix(t.Endpoint, "/") + "/v1/traces"
}

// Ratio is the sampling ratio of the ratio samplers (OTEL_TRACES_SAMPLER_ARG).
func (t Tracing) Ratio() float64 {
	r, _ := strconv.ParseFloat(t.SamplerArg, 64) // Validate checked it
	return r
}

// Database settings. The pool size comes from Little's law on the peak load.
type Database struct {
	Type             string        `env:"DB_TYPE" envDefault:"postgresql"`
	URL              string        `env:"DATABASE_URL"`
	MaxConns         int32         `env:"DB_MAX_CONNS" envDefault:"7"`
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

	// Traced makes every statement a span (set by Load when tracing is on; no variable).
	Traced bool
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
	DrainDelay        time.Duration `env:"SHUTDOWN_DRAIN_DELAY" envDefault:"5s"`
	MaxBodyBytes      int64         `env:"HTTP_MAX_BODY_BYTES" envDefault:"1048576"`
	// BodyReadTimeout bounds reading a request body, before REQUEST_TIMEOUT starts: a slow
	// client gets 408, and the request deadline only covers the service's own work.
	BodyReadTimeout time.Duration `env:"HTTP_BODY_READ_TIMEOUT" envDefault:"1s"`
	DefaultPageSize int           `env:"PAGE_SIZE_DEFAULT" envDefault:"20"`
	MaxPageSize     int           `env:"PAGE_SIZE_MAX" envDefault:"100"`
}

// RateLimit is the per-client token bucket. A client is the authenticated subject when
// there is one, else its IP address: the TCP peer, or the address forwarded by a proxy
// listed in TRUSTED_PROXIES (addresses or CIDR prefixes; X-Forwarded-For is ignored from
// anyone else, so callers cannot pick their own bucket).
type RateLimit struct {
	RPS            float64  `env:"RATE_LIMIT_RPS" envDefault:"1000"`
	Burst          int      `env:"RATE_LIMIT_BURST" envDefault:"2000"`
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`
}

// Auth is bearer-token authentication: HS256 JWTs signed with JWT_SECRET, and/or RS256 and
// ES256 JWTs verified with the keys published at JWT_JWKS_URL (refreshed for rotation).
// Writes need the write scope; reads need the read scope when AUTH_PROTECT_READS is set.
type Auth struct {
	JWTSecret    string        `env:"JWT_SECRET"`
	JWKSURL      string        `env:"JWT_JWKS_URL"`
	JWKSRefresh  time.Duration `env:"JWT_JWKS_REFRESH" envDefault:"15m"`
	JWTIssuer    string        `env:"JWT_ISSUER"`
	JWTAudience  string        `env:"JWT_AUDIENCE"`
	ProtectReads bool          `env:"AUTH_PROTECT_READS" envDefault:"false"`
}

// Enabled reports whether any way to verify tokens is configured.
func (a Auth) Enabled() bool { return a.JWTSecret != "" || a.JWKSURL != "" }

// CORS lets browsers on the listed origins call the API. Off when the list is empty.
type CORS struct {
	AllowedOrigins   []string `env:"CORS_ALLOWED_ORIGINS" envSeparator:","`
	AllowCredentials bool     `env:"CORS_ALLOW_CREDENTIALS" envDefault:"false"`
}

// Outbound is the default policy for calls to other services. It has the fields of
// outbound.Options, so a dependency's client is outbound.New(name,
// outbound.Options(cfg.Outbound), metrics). The deadlines are shares of the request
// deadline (docs/adr/0001-architecture.md).
type Outbound struct {
	Timeout         time.Duration `env:"OUTBOUND_TIMEOUT" envDefault:"200ms"`
	AttemptTimeout  time.Duration `env:"OUTBOUND_ATTEMPT_TIMEOUT" envDefault:"66ms"`
	RetryAttempts   int           `env:"OUTBOUND_RETRY_ATTEMPTS" envDefault:"3"`
	RetryBase       time.Duration `env:"OUTBOUND_RETRY_BASE" envDefault:"20ms"`
	RetryCap        time.Duration `env:"OUTBOUND_RETRY_CAP" envDefault:"1s"`
	RetryAfterCap   time.Duration `env:"OUTBOUND_RETRY_AFTER_CAP" envDefault:"5s"`
	BreakerFailures uint32        `env:"OUTBOUND_BREAKER_FAILURES" envDefault:"5"`
	BreakerOpen     time.Duration `env:"OUTBOUND_BREAKER_OPEN" envDefault:"10s"`
	MaxInFlight     int           `env:"OUTBOUND_MAX_IN_FLIGHT" envDefault:"64"`
}

// TLS names the certificate and key the service serves HTTPS with. Both or
// neither: without them the service speaks plaintext, for an ingress or mesh that
// terminates TLS in front of it. The files are re-read when they change (no restart).
type TLS struct {
	CertFile string `env:"TLS_CERT_FILE"`
	KeyFile  string `env:"TLS_KEY_FILE"`
}

// Enabled reports whether the service terminates TLS itself.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Pprof is the profiling listener: net/http/pprof on its own address, never on the API
// or metrics listeners. Off by default. When on it listens on loopback only (reach it with
// kubectl port-forward) unless PPROF_ALLOW_NON_LOOPBACK is set: profiles show the
// process from inside (allocation sites, goroutine stacks, the command line) and cost CPU.
type Pprof struct {
	Enabled          bool   `env:"PPROF_ENABLED" envDefault:"false"`
	Addr             string `env:"PPROF_ADDR" envDefault:"127.0.0.1:6060"`
	AllowNonLoopback bool   `env:"PPROF_ALLOW_NON_LOOPBACK" envDefault:"false"`
}

// Loopback reports whether Addr's host is a loopback IP address (127.0.0.0/8 or ::1).
// Host names, "localhost" included, are not: what they resolve to is not known here. An
// empty host means every interface.
func (p Pprof) Loopback() bool {
	host, _, err := net.SplitHostPort(p.Addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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
	cfg.DB.Traced = cfg.Tracing.Enabled()
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
		"OUTBOUND_TIMEOUT": c.Outbound.Timeout, "OUTBOUND_ATTEMPT_TIMEOUT": c.Outbound.AttemptTimeout,
		"OUTBOUND_BREAKER_OPEN": c.Outbound.BreakerOpen,
		"IDEMPOTENCY_TTL":       c.DB.IdempotencyTTL, "IDEMPOTENCY_SWEEP_INTERVAL": c.DB.IdempotencySweepInterval,
	} {
		check(d > 0, "%s must be a positive duration", name)
	}
	check(c.HTTP.DrainDelay >= 0, "SHUTDOWN_DRAIN_DELAY must not be negative")
	check((c.TLS.CertFile == "") == (c.TLS.KeyFile == ""), "TLS_CERT_FILE and TLS_KEY_FILE must be set together (or neither, for plaintext behind a TLS-terminating ingress)")
	check(c.HTTP.MaxBodyBytes >= 1, "HTTP_MAX_BODY_BYTES must be at least 1")
	check(c.HTTP.MaxPageSize >= 1, "PAGE_SIZE_MAX must be at least 1")
	check(c.Outbound.AttemptTimeout <= c.Outbound.Timeout, "OUTBOUND_ATTEMPT_TIMEOUT must not exceed OUTBOUND_TIMEOUT")
	check(c.Outbound.RetryAttempts >= 1, "OUTBOUND_RETRY_ATTEMPTS must be at least 1")
	check(c.Outbound.RetryBase >= 0 && c.Outbound.RetryBase <= c.Outbound.RetryCap, "OUTBOUND_RETRY_BASE must be from 0 to OUTBOUND_RETRY_CAP")
	check(c.Outbound.RetryAfterCap >= 0, "OUTBOUND_RETRY_AFTER_CAP must not be negative")
	check(c.Outbound.BreakerFailures >= 1, "OUTBOUND_BREAKER_FAILURES must be at least 1")
	check(c.Outbound.MaxInFlight >= 1, "OUTBOUND_MAX_IN_FLIGHT must be at least 1")
	check(c.HTTP.DefaultPageSize >= 1 && c.HTTP.DefaultPageSize <= c.HTTP.MaxPageSize, "PAGE_SIZE_DEFAULT must be from 1 to PAGE_SIZE_MAX")
	check(c.HTTP.BodyReadTimeout > 0, "HTTP_BODY_READ_TIMEOUT must be a positive duration")
	// The answer is written after the request's work: a write timeout inside the deadline
	// closes the connection on a request still within it, with no answer at all.
	check(c.HTTP.WriteTimeout > c.HTTP.RequestTimeout,
		"HTTP_WRITE_TIMEOUT (%s) must be longer than REQUEST_TIMEOUT (%s): raise both together", c.HTTP.WriteTimeout, c.HTTP.RequestTimeout)
	check(c.RateLimit.RPS > 0, "RATE_LIMIT_RPS must be positive")
	check(c.RateLimit.Burst >= 1, "RATE_LIMIT_BURST must be at least 1")
	for _, p := range c.RateLimit.TrustedProxies {
		_, err := ParsePrefix(p)
		check(err == nil, "TRUSTED_PROXIES: %q is not an IP address or CIDR prefix", p)
	}
	check(c.Auth.JWTSecret == "" || len(c.Auth.JWTSecret) >= 32, "JWT_SECRET must be at least 32 bytes")
	if c.Auth.JWKSURL != "" {
		u, err := url.Parse(c.Auth.JWKSURL)
		check(err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "", "JWT_JWKS_URL must be an http(s) URL")
		check(c.Auth.JWKSRefresh > 0, "JWT_JWKS_REFRESH must be a positive duration")
	}
	for _, o := range c.CORS.AllowedOrigins {
		u, err := url.Parse(o)
		check(o == "*" || (err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.Path == ""),
			"CORS_ALLOWED_ORIGINS: %q is not an origin such as https://app.example.com", o)
	}
	check(!c.CORS.AllowCredentials || !slices.Contains(c.CORS.AllowedOrigins, "*"),
		"CORS_ALLOW_CREDENTIALS cannot be used with CORS_ALLOWED_ORIGINS=*: list the origins")
	check(strings.TrimSpace(c.AuditLog) != "", "AUDIT_LOG must be stderr, stdout or a file path")
	if c.Tracing.Enabled() {
		p := c.Tracing.ExportProtocol()
		check(p == "http/protobuf" || p == "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported: use http/protobuf or grpc", p)
		u, err := url.Parse(c.Tracing.ExportURL())
		check(err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "",
			"OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL such as http://otel-collector:4318")
		check(slices.Contains(Samplers, c.Tracing.Sampler), "OTEL_TRACES_SAMPLER: %q is not one of %s", c.Tracing.Sampler, strings.Join(Samplers, ", "))
		if strings.HasSuffix(c.Tracing.Sampler, "traceidratio") {
			r, err := strconv.ParseFloat(c.Tracing.SamplerArg, 64)
			check(err == nil && r >= 0 && r <= 1, "OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1")
		}
		check(strings.TrimSpace(c.Tracing.ServiceName) != "", "OTEL_SERVICE_NAME must not be blank")
	}
	if c.Pprof.Enabled {
		_, _, err := net.SplitHostPort(c.Pprof.Addr)
		check(err == nil, "PPROF_ADDR must be host:port, such as 127.0.0.1:6060 (got %q)", c.Pprof.Addr)
		check(err != nil || c.Pprof.Loopback() || c.Pprof.AllowNonLoopback,
			"PPROF_ADDR %q is not a loopback address (127.0.0.1 or [::1]): profiles show the process from inside; reach them with kubectl port-forward, or set PPROF_ALLOW_NON_LOOPBACK=true to listen there anyway", c.Pprof.Addr)
	}
	return errors.Join(errs...)
} // CheckServing reports what must hold before the service answers callers, beyond
// Validate (which also guards the migrate command and -healthcheck): outside development,
// authentication fails closed.
func (c Config) CheckServing() error {
	if c.Env != "development" && !c.Auth.Enabled() {
		return fmt.Errorf("config: authentication is required when APP_ENV is not development (APP_ENV=%q): set JWT_SECRET or JWT_JWKS_URL", c.Env)
	}
	return nil
}

// ParsePrefix reads a TRUSTED_PROXIES entry: a CIDR prefix, or one address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// LogValue logs the configuration with secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("env", c.Env),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.String("db_type", c.DB.Type),
		slog.Int("db_max_conns", int(c.DB.MaxConns)),
		slog.Bool("tls", c.TLS.Enabled()),
		slog.Duration("idempotency_ttl", c.DB.IdempotencyTTL),
		slog.Duration("request_timeout", c.HTTP.RequestTimeout),
		slog.Float64("rate_limit_rps", c.RateLimit.RPS),
		slog.Bool("auth_hs256", c.Auth.JWTSecret != ""),
		slog.String("auth_jwks_url", c.Auth.JWKSURL),
		slog.Bool("auth_protect_reads", c.Auth.ProtectReads),
		slog.Int("trusted_proxies", len(c.RateLimit.TrustedProxies)),
		slog.Bool("tracing", c.Tracing.Enabled()),
		slog.String("tracing_endpoint", tracingEndpoint(c.Tracing)),
		slog.String("tracing_sampler", c.Tracing.Sampler+":"+c.Tracing.SamplerArg),
		slog.Bool("pprof", c.Pprof.Enabled),
		slog.String("pprof_addr", c.Pprof.Addr),
	)
}

// tracingEndpoint is where spans go, for the start-up log, or "" when tracing is off.
func tracingEndpoint(t Tracing) string {
	if !t.Enabled() {
		return ""
	}
	return t.ExportProtocol() + " " + t.ExportURL()
}
