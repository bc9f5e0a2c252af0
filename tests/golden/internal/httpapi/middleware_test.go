package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/example/my-service/internal/domain"
)

func TestRecovererAnswersAMaskedJSON500(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := requestID(recoverer(logger)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("secret detail")
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", "/", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", rec.Code)
	}
	var body errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Code != "internal" || body.Error.Message != "internal error" || body.Error.RequestID == "" {
		t.Fatalf("body %s", rec.Body.String())
	}
}

func TestPassedDeadlineIsUnavailable(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := deadline(time.Nanosecond)(handler(logger, func(_ http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done()
		return r.Context().Err()
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), "GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestEveryKindHasAStatus(t *testing.T) {
	for _, kind := range []domain.Kind{
		domain.KindInvalid, domain.KindUnauthorized, domain.KindForbidden, domain.KindNotFound,
		domain.KindConflict, domain.KindTooLarge, domain.KindRateLimited, domain.KindUnavailable,
		domain.KindInternal,
	} {
		if statusByKind[kind] == 0 {
			t.Errorf("kind %s has no HTTP status", kind)
		}
	}
	rec := httptest.NewRecorder()
	writeError(rec, httptest.NewRequestWithContext(context.Background(), "GET", "/", nil),
		slog.New(slog.NewJSONHandler(io.Discard, nil)), domain.Errorf(domain.KindConflict, "taken"))
	if rec.Code != http.StatusConflict {
		t.Fatalf("conflict answered %d", rec.Code)
	}
}
