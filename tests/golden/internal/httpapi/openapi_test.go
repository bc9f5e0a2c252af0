package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/example/my-service/api"
	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/telemetry"
)

// loadOpenAPI loads an OpenAPI description and validates it as OpenAPI 3.1.
func loadOpenAPI(t *testing.T, data []byte) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("api/openapi.yaml does not load: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("api/openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("api/openapi.yaml is not valid OpenAPI: %v", err)
	}
	return doc
}

// TestOpenAPIDescribesEveryRoute holds api/openapi.yaml to the routes (routes.go, and the
// description's own in server.go): every endpoint is an operation of the description and
// every operation is an endpoint. Add a route, describe it.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t, api.OpenAPI)
	described := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+path] = true
		}
	}
	routed := map[string]bool{}
	for _, e := range allEndpoints(Deps{}) {
		routed[e.method+" "+e.pattern] = true
		if !described[e.method+" "+e.pattern] {
			t.Errorf("%s %s is routed but not described in api/openapi.yaml", e.method, e.pattern)
		}
	}
	for op := range described {
		if !routed[op] {
			t.Errorf("%s is described in api/openapi.yaml but not routed (routes.go)", op)
		}
	}
}

// TestOpenAPIIsServed: the service serves the description it embeds, without a token even
// when reads need one.
func TestOpenAPIIsServed(t *testing.T) {
	h := NewServer(Deps{
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Metrics: telemetry.NewMetrics(),
		Auth: config.Auth{JWTSecret: strings.Repeat("s", 32), ProtectReads: true},
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/api/v1/items", nil))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("a read without a token: status %d, want 401 (reads are protected here)", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, openAPIPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q, want application/yaml", ct)
	}
	if rec.Body.String() != string(api.OpenAPI) {
		t.Error("the served description is not api/openapi.yaml")
	}
	loadOpenAPI(t, rec.Body.Bytes())
}
