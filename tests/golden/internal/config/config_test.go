package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/example/my-service/internal/config"
)

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := config.Load(getenv(map[string]string{"DATABASE_URL": "postgres://db/app"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DB.Type != "postgresql" || cfg.DB.MaxConns != 7 {
		t.Fatalf("db defaults: %+v", cfg.DB)
	}
	if cfg.HTTP.RequestTimeout != 250*time.Millisecond {
		t.Fatalf("request timeout: %v", cfg.HTTP.RequestTimeout)
	}
	if cfg.Outbound.Timeout != 200*time.Millisecond || cfg.Outbound.AttemptTimeout != 66*time.Millisecond {
		t.Fatalf("outbound timeouts: %+v", cfg.Outbound)
	}
	// Readiness fails this long before the listeners close, so a load balancer stops
	// sending first.
	if cfg.HTTP.DrainDelay != 5*time.Second || cfg.HTTP.DrainDelay <= 0 {
		t.Fatalf("drain delay: %v", cfg.HTTP.DrainDelay)
	}
	if cfg.DB.IdempotencyTTL != 24*time.Hour || cfg.DB.IdempotencySweepInterval != 10*time.Minute {
		t.Fatalf("idempotency: TTL %v, sweep every %v", cfg.DB.IdempotencyTTL, cfg.DB.IdempotencySweepInterval)
	}
	if cfg.MetricsAddr != ":9090" {
		t.Fatalf("metrics address: %s", cfg.MetricsAddr)
	}
	if cfg.Pprof.Enabled || cfg.Pprof.Addr != "127.0.0.1:6060" || !cfg.Pprof.Loopback() || cfg.Pprof.AllowNonLoopback {
		t.Fatalf("pprof defaults: %+v", cfg.Pprof)
	}
	if cfg.HTTPAddr != ":8080" {
		t.Fatalf("HTTP address: %s", cfg.HTTPAddr)
	}
}

func TestLoadRejectsBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no database url": {map[string]string{}, "DATABASE_URL is required"},
		"bad duration":    {map[string]string{"DATABASE_URL": "x", "REQUEST_TIMEOUT": "soon"}, "REQUEST_TIMEOUT"},
		"zero pool":       {map[string]string{"DATABASE_URL": "x", "DB_MAX_CONNS": "0"}, "DB_MAX_CONNS must be at least 1"},
		"outbound budget": {map[string]string{"DATABASE_URL": "x", "OUTBOUND_ATTEMPT_TIMEOUT": "1h"}, "OUTBOUND_ATTEMPT_TIMEOUT must not exceed OUTBOUND_TIMEOUT"},
		"write timeout":   {map[string]string{"DATABASE_URL": "x", "REQUEST_TIMEOUT": "1h"}, "must be longer than REQUEST_TIMEOUT (1h0m0s): raise both together"},
		"tls cert alone":  {map[string]string{"DATABASE_URL": "x", "TLS_CERT_FILE": "tls.crt"}, "TLS_CERT_FILE and TLS_KEY_FILE must be set together"},
		"tls key alone":   {map[string]string{"DATABASE_URL": "x", "TLS_KEY_FILE": "tls.key"}, "TLS_CERT_FILE and TLS_KEY_FILE must be set together"},
		"no idempotency":  {map[string]string{"DATABASE_URL": "x", "IDEMPOTENCY_TTL": "0s"}, "IDEMPOTENCY_TTL must be a positive duration"},
		"otlp protocol":   {map[string]string{"DATABASE_URL": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		"otlp endpoint":   {map[string]string{"DATABASE_URL": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL"},
		"sampler":         {map[string]string{"DATABASE_URL": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"},
		"sampler ratio":   {map[string]string{"DATABASE_URL": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1"},
		"short secret":    {map[string]string{"DATABASE_URL": "x", "JWT_SECRET": "short"}, "JWT_SECRET must be at least 32 bytes"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load(getenv(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	secret := strings.Repeat("s", 40)
	cfg, err := config.Load(getenv(map[string]string{
		"DATABASE_URL": "postgres://app:" + secret + "@db/app",
		"JWT_SECRET":   secret,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cfg.LogValue().String(), secret) {
		t.Fatal("a secret reached the log value")
	}
}

func TestTLSIsOnWithACertificateAndKey(t *testing.T) {
	cfg, err := config.Load(getenv(map[string]string{"DATABASE_URL": "x"}))
	if err != nil || cfg.TLS.Enabled() {
		t.Fatalf("TLS on without files: %v %v", cfg.TLS, err)
	}
	cfg, err = config.Load(getenv(map[string]string{"DATABASE_URL": "x", "TLS_CERT_FILE": "tls.crt", "TLS_KEY_FILE": "tls.key"}))
	if err != nil || !cfg.TLS.Enabled() {
		t.Fatalf("TLS off with both files: %v %v", cfg.TLS, err)
	}
}

func TestTracingFollowsTheOTELVariables(t *testing.T) {
	cfg, err := config.Load(getenv(map[string]string{"DATABASE_URL": "x"}))
	if err != nil || cfg.Tracing.Enabled() || cfg.DB.Traced {
		t.Fatalf("tracing on without an endpoint: %+v %v", cfg.Tracing, err)
	}
	if cfg.Tracing.Sampler != "parentbased_traceidratio" || cfg.Tracing.Ratio() != 0.1 || cfg.Tracing.ServiceName != "my-service" {
		t.Fatalf("tracing defaults: %+v", cfg.Tracing)
	}
	for _, tc := range []struct {
		env      map[string]string
		protocol string
		url      string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http/protobuf", "http://c:4318/v1/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "grpc", "http://c:4317"},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/traces", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}, "http/protobuf", "https://c/traces"},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "grpc", "http://c:4317"},
	} {
		tc.env["DATABASE_URL"] = "x"
		cfg, err := config.Load(getenv(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.Tracing.Enabled() || !cfg.DB.Traced || cfg.Tracing.ExportProtocol() != tc.protocol || cfg.Tracing.ExportURL() != tc.url {
			t.Errorf("%v: enabled %v, traced statements %v, %s %s", tc.env, cfg.Tracing.Enabled(), cfg.DB.Traced, cfg.Tracing.ExportProtocol(), cfg.Tracing.ExportURL())
		}
	}
	cfg, err = config.Load(getenv(map[string]string{"DATABASE_URL": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}))
	if err != nil || cfg.Tracing.Enabled() {
		t.Fatalf("OTEL_SDK_DISABLED=true left tracing on: %v", err)
	}
}

// TestPprofListensOnLoopbackUnlessAllowed: profiling is off by default, and when on it
// listens beyond loopback only with PPROF_ALLOW_NON_LOOPBACK.
func TestPprofListensOnLoopbackUnlessAllowed(t *testing.T) {
	const refused = "PPROF_ALLOW_NON_LOOPBACK=true"
	for _, tc := range []struct {
		addr, allow string
		enabled     bool
		want        string // "" when accepted, else part of the error
	}{
		{":0", "", false, ""}, // off: the address is not used
		{"127.0.0.1:0", "", true, ""},
		{"127.0.0.2:0", "", true, ""},
		{"[::1]:0", "", true, ""},
		{":0", "", true, refused},
		{"0.0.0.0:0", "", true, refused},
		{"[::]:0", "", true, refused},
		{"10.0.0.1:0", "", true, refused},
		{"localhost:0", "", true, refused},
		{"0.0.0.0:0", "true", true, ""},
		{"127.0.0.1", "", true, "PPROF_ADDR must be host:port"},
	} {
		vars := map[string]string{"DATABASE_URL": "x", "PPROF_ADDR": tc.addr, "PPROF_ALLOW_NON_LOOPBACK": tc.allow}
		if tc.enabled {
			vars["PPROF_ENABLED"] = "true"
		}
		_, err := config.Load(getenv(vars))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("PPROF_ENABLED=%v PPROF_ADDR=%q PPROF_ALLOW_NON_LOOPBACK=%q: %v, want %q", tc.enabled, tc.addr, tc.allow, err, tc.want)
		}
	}
}
