package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/example/my-service/internal/auth"
	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/httpapi"
	"github.com/example/my-service/internal/ratelimit"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/store/storetest"
	"github.com/example/my-service/internal/telemetry"
)

const base = "/api/v1/items"

type fixture struct {
	t      *testing.T
	h      http.Handler
	health *health.State
}

func newFixture(t *testing.T, tweak func(*httpapi.Deps)) *fixture {
	t.Helper()
	db := storetest.OpenSQLite(t)
	state := health.New(db, time.Second)
	state.MarkMigrated()
	d := httpapi.Deps{
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		HTTP:   config.HTTP{RequestTimeout: 5 * time.Second, MaxBodyBytes: 1024, BodyReadTimeout: time.Second},
		Policy: newPolicy(t, config.Auth{}), Limiter: ratelimit.New(1000, 1000),
		Audit:  telemetry.NewAudit(io.Discard),
		Items:  service.NewItems(db, service.Limits{DefaultPageSize: 2, MaxPageSize: 50}, nil),
		Health: state, Metrics: telemetry.NewMetrics(),
	}
	if tweak != nil {
		tweak(&d)
	}
	return &fixture{t: t, h: httpapi.NewServer(d), health: state}
}

// newPolicy returns the authentication policy for cfg (no verifier: everyone may).
func newPolicy(t *testing.T, cfg config.Auth) *auth.Policy {
	t.Helper()
	p, err := auth.New(t.Context(), cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type response struct {
	*httptest.ResponseRecorder
	body map[string]any
}

func (f *fixture) do(method, path, body string, headers ...string) response {
	f.t.Helper()
	req := httptest.NewRequestWithContext(f.t.Context(), method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	res := response{ResponseRecorder: rec}
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &res.body); err != nil {
			f.t.Fatalf("%s %s: body is not JSON: %q", method, path, rec.Body.String())
		}
	}
	return res
}

// wantError checks an error response: status, JSON code and a request ID.
func (r response) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status %d, want %d: %s", r.Code, status, r.Body.String())
	}
	e, ok := r.body["error"].(map[string]any)
	if !ok || e["code"] != code || e["message"] == "" || e["request_id"] == "" {
		t.Fatalf("error body %s, want code %q with message and request_id", r.Body.String(), code)
	}
}

func TestCRUD(t *testing.T) {
	f := newFixture(t, nil)
	created := f.do("POST", base, `{"name":"first","description":"d"}`)
	if created.Code != http.StatusCreated || created.Header().Get("ETag") != `"1"` {
		t.Fatalf("create: %d %s", created.Code, created.Body.String())
	}
	id, _ := created.body["id"].(string)
	if created.Header().Get("Location") != base+"/"+id {
		t.Fatalf("location: %q", created.Header().Get("Location"))
	}

	got := f.do("GET", base+"/"+id, "")
	if got.Code != http.StatusOK || got.body["name"] != "first" || got.body["version"] != float64(1) {
		t.Fatalf("get: %d %s", got.Code, got.Body.String())
	}

	upd := f.do("PUT", base+"/"+id, `{"name":"second"}`, "If-Match", `"1"`)
	if upd.Code != http.StatusOK || upd.body["version"] != float64(2) || upd.Header().Get("ETag") != `"2"` {
		t.Fatalf("update: %d %s", upd.Code, upd.Body.String())
	}
	f.do("PUT", base+"/"+id, `{"name":"third","version":1}`).wantError(t, http.StatusConflict, "conflict")
	f.do("PUT", base+"/"+id, `{"name":"third"}`).wantError(t, http.StatusBadRequest, "invalid")
	f.do("PUT", base+"/"+id, `{"name":"third"}`, "If-Match", "nope").wantError(t, http.StatusBadRequest, "invalid")

	if del := f.do("DELETE", base+"/"+id, ""); del.Code != http.StatusNoContent {
		t.Fatalf("delete: %d", del.Code)
	}
	f.do("GET", base+"/"+id, "").wantError(t, http.StatusNotFound, "not_found")
	f.do("DELETE", base+"/"+id, "").wantError(t, http.StatusNotFound, "not_found")
}

func TestIdempotentCreate(t *testing.T) {
	f := newFixture(t, nil)
	first := f.do("POST", base, `{"name":"a"}`, "Idempotency-Key", "abc")
	again := f.do("POST", base, `{"name":"a"}`, "Idempotency-Key", "abc")
	if first.Code != http.StatusCreated || again.Code != http.StatusOK || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("codes %d then %d", first.Code, again.Code)
	}
	if first.body["id"] != again.body["id"] {
		t.Fatalf("replay made a new item: %v vs %v", first.body["id"], again.body["id"])
	}
	f.do("POST", base, `{"name":"b"}`, "Idempotency-Key", "abc").wantError(t, http.StatusConflict, "conflict")
}

func TestListPagination(t *testing.T) {
	f := newFixture(t, nil)
	for _, n := range []string{"a", "b", "c"} {
		f.do("POST", base, `{"name":"`+n+`"}`)
	}
	var names []string
	cursor := ""
	for range 3 {
		page := f.do("GET", base+"?limit=2&cursor="+cursor, "")
		if page.Code != http.StatusOK {
			t.Fatalf("list: %d %s", page.Code, page.Body.String())
		}
		for _, it := range page.body["data"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		next, _ := page.body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Fatalf("paged %v", names)
	}
	f.do("GET", base+"?limit=x", "").wantError(t, http.StatusBadRequest, "invalid")
	// An empty limit is not a number either (the API description says integer).
	f.do("GET", base+"?limit=", "").wantError(t, http.StatusBadRequest, "invalid")
	f.do("GET", base+"?limit=500", "").wantError(t, http.StatusBadRequest, "invalid")
	f.do("GET", base+"?cursor=!!!", "").wantError(t, http.StatusBadRequest, "invalid")
}

func TestBadRequestsGetTheTaxonomy(t *testing.T) {
	f := newFixture(t, nil)
	f.do("POST", base, `{"name":`).wantError(t, http.StatusBadRequest, "invalid")
	f.do("POST", base, `{"name":"a","extra":1}`).wantError(t, http.StatusBadRequest, "invalid")
	f.do("POST", base, `{"name":5}`).wantError(t, http.StatusBadRequest, "invalid")
	f.do("POST", base, `{"name":"a"} {}`).wantError(t, http.StatusBadRequest, "invalid")
	f.do("POST", base, ``).wantError(t, http.StatusBadRequest, "invalid")
	f.do("POST", base, `{"name":""}`).wantError(t, http.StatusBadRequest, "invalid")
	f.do("POST", base, `{"name":"a"}`, "Content-Type", "text/plain").wantError(t, http.StatusBadRequest, "invalid")
	f.do("GET", base+"/not-a-uuid", "").wantError(t, http.StatusBadRequest, "invalid")
	f.do("POST", base, `{"name":"`+strings.Repeat("x", 2048)+`"}`).wantError(t, http.StatusRequestEntityTooLarge, "too_large")
	f.do("PATCH", base, `{}`).wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
	f.do("GET", "/nowhere", "").wantError(t, http.StatusNotFound, "not_found")

	// A body over the limit with no Content-Length is cut off while reading.
	req := httptest.NewRequestWithContext(t.Context(), "POST", base, io.MultiReader(strings.NewReader(`{"name":"`), strings.NewReader(strings.Repeat("x", 4096)+`"}`)))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("streamed oversize body: %d %s", rec.Code, rec.Body.String())
	}
}

func TestInvalidFieldsAreNamed(t *testing.T) {
	f := newFixture(t, nil)
	res := f.do("POST", base, `{"name":""}`)
	fields, _ := res.body["error"].(map[string]any)["fields"].(map[string]any)
	if fields["name"] != "is required" {
		t.Fatalf("fields: %v", res.Body.String())
	}
}

func TestRequestIDIsKeptOrMade(t *testing.T) {
	f := newFixture(t, nil)
	res := f.do("GET", "/livez", "", "X-Request-ID", "abc-123")
	if res.Header().Get("X-Request-ID") != "abc-123" {
		t.Fatalf("request id: %q", res.Header().Get("X-Request-ID"))
	}
	res = f.do("GET", "/livez", "", "X-Request-ID", "bad id with spaces")
	if id := res.Header().Get("X-Request-ID"); id == "" || strings.Contains(id, " ") {
		t.Fatalf("request id: %q", id)
	}
}

func TestRateLimit(t *testing.T) {
	f := newFixture(t, func(d *httpapi.Deps) { d.Limiter = ratelimit.New(0.5, 2) })
	f.do("GET", base, "")
	f.do("GET", base, "")
	res := f.do("GET", base, "")
	res.wantError(t, http.StatusTooManyRequests, "rate_limited")
	if res.Header().Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

func TestReadiness(t *testing.T) {
	f := newFixture(t, nil)
	if res := f.do("GET", "/readyz", ""); res.Code != http.StatusOK {
		t.Fatalf("readyz: %d %s", res.Code, res.Body.String())
	}
	f.health.StartDraining()
	res := f.do("GET", "/readyz", "")
	if res.Code != http.StatusServiceUnavailable || res.body["ready"] != false {
		t.Fatalf("readyz while draining: %d %s", res.Code, res.Body.String())
	}
	if res := f.do("GET", "/livez", ""); res.Code != http.StatusOK {
		t.Fatalf("livez while draining: %d", res.Code)
	}
}

func TestWriteRoutesNeedAToken(t *testing.T) {
	secret := strings.Repeat("k", 32)
	f := newFixture(t, func(d *httpapi.Deps) { d.Policy = newPolicy(t, config.Auth{JWTSecret: secret, JWTIssuer: "issuer"}) })
	sign := func(scope, issuer string, ttl time.Duration) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"scope": scope, "iss": issuer, "sub": "tester", "exp": time.Now().Add(ttl).Unix(),
		}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	body := `{"name":"a"}`
	f.do("POST", base, body).wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("POST", base, body, "Authorization", "Bearer garbage").wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("POST", base, body, "Authorization", sign("items:write", "issuer", -time.Hour)).wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("POST", base, body, "Authorization", sign("items:write", "other", time.Hour)).wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("POST", base, body, "Authorization", sign("items:read", "issuer", time.Hour)).wantError(t, http.StatusForbidden, "forbidden")
	if res := f.do("POST", base, body, "Authorization", sign("items:read items:write", "issuer", time.Hour)); res.Code != http.StatusCreated {
		t.Fatalf("with the scope: %d %s", res.Code, res.Body.String())
	}
	if res := f.do("GET", base, ""); res.Code != http.StatusOK {
		t.Fatalf("reads stay open: %d", res.Code)
	}
}
