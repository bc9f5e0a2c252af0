package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// newRouter mounts the endpoints on chi. chi sets r.PathValue for the handlers.
func newRouter(logger *slog.Logger, eps []endpoint) http.Handler {
	r := chi.NewRouter()
	r.NotFound(notFound(logger))
	r.MethodNotAllowed(methodNotAllowed(logger, eps))
	for _, e := range eps {
		r.Method(e.method, e.pattern, routed(e.pattern, e.handler))
	}
	return r
}
