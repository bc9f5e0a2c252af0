// Package httpapi is the REST transport: a thin adapter from HTTP to the service layer.
// routes.go is the map of the API; errors.go is the one error-to-status table; router.go
// mounts the routes on the router (chi).
package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/telemetry"
)

// Deps are what the HTTP API needs.
type Deps struct {
	Logger    *slog.Logger
	HTTP      config.HTTP
	RateLimit config.RateLimit
	Auth      config.Auth
	Health    *health.State
	Metrics   *telemetry.Metrics

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
	return chain(
		requestID,
		observe(d.Logger, d.Metrics),
		recoverer(d.Logger),
	)(newRouter(d.Logger, endpoints(d)))
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

// notFound and methodNotAllowed answer requests no endpoint matched.
func notFound(logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeStatusError(w, r, logger, http.StatusNotFound, "not_found", "no route for "+r.URL.Path)
	}
}

func methodNotAllowed(logger *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeStatusError(w, r, logger, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
	}
}
