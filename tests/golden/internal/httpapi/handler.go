package httpapi

import (
	"log/slog"
	"net/http"

	"github.com/example/my-service/api"
	"github.com/example/my-service/internal/health"
)

// handler adapts a handler that returns an error: the error becomes a response through
// the one error table (errors.go).
func handler(logger *slog.Logger, h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, logger, err)
		}
	})
}

func handleLivez(logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, logger, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func handleReadyz(logger *slog.Logger, state *health.State) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		check := state.Ready(r.Context())
		status := http.StatusOK
		if !check.Ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, r, logger, status, check)
	})
}

// handleOpenAPI serves the API's OpenAPI description, embedded from api/openapi.yaml.
func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(api.OpenAPI)
	})
}
