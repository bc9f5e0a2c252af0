// Package httpapi is the REST transport: a thin adapter from HTTP to the service layer.
// routes.go is the map of the API; errors.go is the one error-to-status table; router.go
// mounts the routes on the router (chi).
package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/rs/cors"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/example/my-service/internal/auth"
	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/ratelimit"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/telemetry"
)

// Deps are what the HTTP API needs.
//
// Policy, Limiter and Audit are built once by the app and shared with every transport;
// when one is nil (tests), NewServer builds it from the settings: the policy from Auth,
// the limiter from RateLimit (no limit when RPS is 0), and an audit trail that discards.
type Deps struct {
	Logger    *slog.Logger
	HTTP      config.HTTP
	CORS      config.CORS
	Auth      config.Auth
	RateLimit config.RateLimit
	Policy    *auth.Policy
	Limiter   *ratelimit.Limiter
	Proxies   ratelimit.Proxies
	Audit     *telemetry.Audit
	Health    *health.State
	Metrics   *telemetry.Metrics
	// Traced makes every request a server span (OpenTelemetry's global provider, which
	// telemetry.NewTracing installs when tracing is on).
	Traced bool

	Items *service.Items
}

// endpoint is one route of the API.
type endpoint struct {
	method  string
	pattern string
	handler http.Handler
}

// NewServer returns the HTTP handler of the API, middleware included.
func NewServer(d Deps) http.Handler {
	if d.Policy == nil {
		p, err := auth.New(context.Background(), d.Auth, d.Logger)
		if err != nil {
			d.Logger.Error("no authentication policy: refusing every request", "err", err.Error())
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeError(w, r, d.Logger, domain.Wrap(domain.KindUnavailable, err, "authentication is not configured"))
			})
		}
		d.Policy = p
	}
	if d.Limiter == nil {
		d.Limiter = ratelimit.New(d.RateLimit.RPS, d.RateLimit.Burst)
	}
	if d.Audit == nil {
		d.Audit = telemetry.NewAudit(io.Discard)
	}
	h := newRouter(d.Logger, allEndpoints(d))
	if len(d.CORS.AllowedOrigins) > 0 {
		h = corsPolicy(d.CORS).Handler(h)
	}
	h = chain(
		requestID,
		securityHeaders,
		withClientIP(d.Proxies),
		observe(d.Logger, d.Metrics),
		recoverer(d.Logger),
	)(h)
	if d.Traced {
		// The span is named by method here and by route pattern once routed (observe).
		h = otelhttp.NewHandler(h, "http.server",
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
			otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/livez" && r.URL.Path != "/readyz" }),
		)
	}
	return h
}

// openAPIPath is where the service serves its API description, api/openapi.yaml.
const openAPIPath = "/api/v1/openapi.yaml"

// allEndpoints are the team's endpoints (routes.go) and the platform's own: the API
// description, open to every caller (it holds no data) but rate-limited like the API.
func allEndpoints(d Deps) []endpoint {
	return append(endpoints(d), endpoint{http.MethodGet, openAPIPath, rateLimit(d.Logger, d.Limiter)(handleOpenAPI())})
}

// corsPolicy lets browsers on the allowed origins call the API (rs/cors answers the
// preflights). Off unless CORS_ALLOWED_ORIGINS is set; config refuses "*" with
// credentials.
func corsPolicy(c config.CORS) *cors.Cors {
	return cors.New(cors.Options{
		AllowedOrigins:   c.AllowedOrigins,
		AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete},
		AllowedHeaders:   []string{"Authorization", "Content-Type", "If-Match", "Idempotency-Key", requestIDHeader},
		ExposedHeaders:   []string{"ETag", "Location", "Retry-After", "Idempotent-Replayed", requestIDHeader},
		AllowCredentials: c.AllowCredentials,
		MaxAge:           600,
	})
}

// chain composes middleware; the first one is the outermost.
func chain(mws ...func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		return h
	}
}

// notFound answers requests no endpoint matched.
func notFound(logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeStatusError(w, r, logger, http.StatusNotFound, "not_found", "no route for "+r.URL.Path)
	}
}

// methodNotAllowed answers 405 with the Allow header (RFC 9110) listing the methods the
// endpoint table has for the path, whatever the router.
func methodNotAllowed(logger *slog.Logger, eps []endpoint) http.HandlerFunc {
	// A ServeMux of the method-less patterns finds which pattern a path matches.
	patterns := http.NewServeMux()
	allowed := map[string][]string{}
	for _, e := range eps {
		if _, seen := allowed[e.pattern]; !seen {
			patterns.Handle(e.pattern, http.NotFoundHandler())
		}
		allowed[e.pattern] = append(allowed[e.pattern], e.method)
	}
	for p, methods := range allowed {
		slices.Sort(methods)
		allowed[p] = methods
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := patterns.Handler(r); allowed[pattern] != nil {
			w.Header().Set("Allow", strings.Join(allowed[pattern], ", "))
		}
		writeStatusError(w, r, logger, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
	}
}
