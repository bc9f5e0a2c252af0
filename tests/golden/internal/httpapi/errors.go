package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/telemetry"
)

// statusByKind is the one table from error kinds to HTTP statuses.
var statusByKind = map[domain.Kind]int{
	domain.KindInvalid:      http.StatusBadRequest,
	domain.KindUnauthorized: http.StatusUnauthorized,
	domain.KindForbidden:    http.StatusForbidden,
	domain.KindNotFound:     http.StatusNotFound,
	domain.KindConflict:     http.StatusConflict,
	domain.KindTooLarge:     http.StatusRequestEntityTooLarge,
	domain.KindRateLimited:  http.StatusTooManyRequests,
	domain.KindUnavailable:  http.StatusServiceUnavailable,
	domain.KindInternal:     http.StatusInternalServerError,
}

// errorBody is the JSON of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string            `json:"code"`
	Message   string            `json:"message"`
	Fields    map[string]string `json:"fields,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
}

// writeError answers with the status of err's kind and a JSON body. Internal errors are
// logged here, once, and masked.
func writeError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, err error) {
	kind := domain.KindOf(err)
	detail := errorDetail{Code: string(kind), RequestID: telemetry.RequestID(r.Context())}
	var de *domain.Error
	switch {
	case kind == domain.KindInternal:
		logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err.Error())
		detail.Message = "internal error"
	case errors.As(err, &de):
		detail.Message = de.Message
		detail.Fields = de.Fields
	default:
		detail.Message = "the request did not finish in time"
	}
	switch kind {
	case domain.KindUnavailable:
		w.Header().Set("Retry-After", "1")
	case domain.KindUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
	}
	writeJSON(w, r, logger, statusOfKind(kind), errorBody{Error: detail})
}

// statusOf is the HTTP status writeError answers err with.
func statusOf(err error) int {
	return statusOfKind(domain.KindOf(err))
}

func statusOfKind(kind domain.Kind) int {
	if status, ok := statusByKind[kind]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// writeStatusError answers with a status outside the taxonomy (404/405 from the router).
func writeStatusError(w http.ResponseWriter, r *http.Request, logger *slog.Logger, status int, code, message string) {
	writeJSON(w, r, logger, status, errorBody{Error: errorDetail{
		Code: code, Message: message, RequestID: telemetry.RequestID(r.Context()),
	}})
}
