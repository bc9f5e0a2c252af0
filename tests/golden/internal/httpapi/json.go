package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/example/my-service/internal/domain"
)

// writeJSON encodes v with the status. Encoding errors are logged: the status is sent.
func writeJSON(w http.ResponseWriter, r *http.Request, logger *slog.Logger, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		logger.WarnContext(r.Context(), "writing response", "err", err.Error())
	}
}

// decode reads one JSON object into T, refusing unknown fields, trailing data and bodies
// over the limit, with errors of the taxonomy's kinds.
func decode[T any](r *http.Request) (T, error) {
	var v T
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return v, domain.Invalid("the body must be JSON", map[string]string{"Content-Type": "must be application/json"})
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return v, domain.Invalid("the body must hold a single JSON object", nil)
	}
	return v, nil
}

func decodeError(err error) error {
	var (
		tooBig    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig):
		return domain.Errorf(domain.KindTooLarge, "the body is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return domain.Invalid("the body is empty: send a JSON object", nil)
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return domain.Invalid("the body is not valid JSON", nil)
	case errors.As(err, &typeErr):
		return domain.Invalid("a field has the wrong type",
			map[string]string{typeErr.Field: fmt.Sprintf("must be of type %s", typeErr.Type)})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return domain.Invalid("the body has an unknown field", map[string]string{field: "is not a known field"})
	default:
		return domain.Invalid("the body could not be read as JSON", nil)
	}
}
