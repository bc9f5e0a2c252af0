package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/ratelimit"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/store/storetest"
	"github.com/example/my-service/internal/telemetry"
)

// These tests are the template's (the example resource's tests in item_test.go are
// the team's), so they bring their own small fixture.

const base = "/api/v1/items"

var testSecret = strings.Repeat("k", 32)

type testServer struct {
	t testing.TB
	h http.Handler
}

// newTestServer serves the API on SQLite; tweak adjusts the dependencies. Policy, Limiter
// and Audit are left for NewServer to build from the settings.
func newTestServer(t testing.TB, tweak func(*Deps)) *testServer {
	t.Helper()
	db := storetest.OpenSQLite(t)
	state := health.New(db, time.Second)
	state.MarkMigrated()
	d := Deps{
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		HTTP:   config.HTTP{RequestTimeout: 5 * time.Second, MaxBodyBytes: 1024, BodyReadTimeout: time.Second},
		Items:  service.NewItems(db, service.Limits{DefaultPageSize: 2, MaxPageSize: 50}, nil),
		Health: state, Metrics: telemetry.NewMetrics(),
	}
	if tweak != nil {
		tweak(&d)
	}
	return &testServer{t: t, h: NewServer(d)}
}

type testResponse struct {
	*httptest.ResponseRecorder
	body map[string]any
}

func (s *testServer) do(method, path, body string, headers ...string) testResponse {
	s.t.Helper()
	req := httptest.NewRequestWithContext(s.t.Context(), method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	res := testResponse{ResponseRecorder: rec}
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &res.body); err != nil {
			s.t.Fatalf("%s %s: body is not JSON: %q", method, path, rec.Body.String())
		}
	}
	return res
}

func (r testResponse) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status %d, want %d: %s", r.Code, status, r.Body.String())
	}
	if e, ok := r.body["error"].(map[string]any); !ok || e["code"] != code || e["request_id"] == "" {
		t.Fatalf("error body %s, want code %q and a request_id", r.Body.String(), code)
	}
}

func token(t testing.TB, sub, scope string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "scope": scope, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return "Bearer " + tok
}

func TestEveryResponseCarriesTheHardeningHeaders(t *testing.T) {
	f := newTestServer(t, nil)
	for _, res := range []testResponse{f.do("GET", "/livez", ""), f.do("GET", base+"/nope", ""), f.do("GET", "/nowhere", "")} {
		for header, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Cache-Control":           "no-store",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
		} {
			if got := res.Header().Get(header); got != want {
				t.Errorf("%s = %q, want %q", header, got, want)
			}
		}
		if res.Header().Get("Strict-Transport-Security") != "" {
			t.Error("HSTS over plain HTTP")
		}
	}
	// Over TLS, HSTS too.
	srv := httptest.NewTLSServer(f.h)
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/livez", nil)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if !strings.HasPrefix(res.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("no HSTS over TLS: %v", res.Header)
	}
}

func TestMethodNotAllowedListsTheAllowedMethods(t *testing.T) {
	f := newTestServer(t, nil)
	for path, want := range map[string]string{
		base: "GET, POST", base + "/0190a0e4-0000-7000-8000-000000000000": "DELETE, GET, PUT", "/livez": "GET",
	} {
		res := f.do("PATCH", path, "")
		res.wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := res.Header().Get("Allow"); got != want {
			t.Errorf("PATCH %s: Allow %q, want %q", path, got, want)
		}
	}
}

func TestCORS(t *testing.T) {
	// Off by default: no CORS headers, a preflight is just a 405.
	f := newTestServer(t, nil)
	res := f.do("OPTIONS", base, "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST")
	if res.Header().Get("Access-Control-Allow-Origin") != "" || res.Code != http.StatusMethodNotAllowed {
		t.Fatalf("CORS off: %d %v", res.Code, res.Header())
	}
	f = newTestServer(t, func(d *Deps) {
		d.CORS = config.CORS{AllowedOrigins: []string{"https://app.example.com"}, AllowCredentials: true}
	})
	res = f.do("OPTIONS", base, "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type,idempotency-key")
	if res.Code != http.StatusNoContent || res.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		res.Header().Get("Access-Control-Allow-Credentials") != "true" || res.Header().Get("Access-Control-Max-Age") == "" {
		t.Fatalf("preflight from an allowed origin: %d %v", res.Code, res.Header())
	}
	res = f.do("OPTIONS", base, "", "Origin", "https://evil.example.net", "Access-Control-Request-Method", "POST")
	if res.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin allowed: %v", res.Header())
	}
	res = f.do("GET", base, "", "Origin", "https://app.example.com")
	if res.Code != http.StatusOK || res.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(res.Header().Get("Access-Control-Expose-Headers"), "Etag") {
		t.Fatalf("simple request from an allowed origin: %d %v", res.Code, res.Header())
	}
}

func TestWritesAndRefusalsAreAudited(t *testing.T) {
	var audit bytes.Buffer
	f := newTestServer(t, func(d *Deps) {
		d.Auth = config.Auth{JWTSecret: testSecret}
		d.Audit = telemetry.NewAudit(&audit)
	})
	alice := token(t, "alice", "items:write")
	created := f.do("POST", base, `{"name":"secret-name"}`, "Authorization", alice)
	if created.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", created.Code, created.Body.String())
	}
	f.do("POST", base, `{"name":"x"}`).wantError(t, http.StatusUnauthorized, "unauthorized")
	f.do("DELETE", base+"/"+created.body["id"].(string), "", "Authorization", token(t, "bob", "items:read")).
		wantError(t, http.StatusForbidden, "forbidden")
	f.do("GET", base, "") // reads are not audited

	var records []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(audit.String()), "\n") {
		var r map[string]string
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		records = append(records, r)
	}
	if len(records) != 3 {
		t.Fatalf("%d audit records, want 3:\n%s", len(records), audit.String())
	}
	want := []map[string]string{
		{"subject": "alice", "action": "items.create", "resource": "items/" + created.body["id"].(string), "outcome": "success", "status": "201"},
		{"subject": "anonymous", "action": "items.create", "outcome": "denied", "status": "401"},
		{"subject": "anonymous", "action": "items.delete", "outcome": "denied", "status": "403"},
	}
	for i, w := range want {
		for k, v := range w {
			if records[i][k] != v {
				t.Errorf("record %d: %s = %q, want %q (%v)", i, k, records[i][k], v, records[i])
			}
		}
		if records[i]["request_id"] == "" || records[i]["log"] != "audit" || records[i]["client_ip"] == "" {
			t.Errorf("record %d lacks request_id, log or client_ip: %v", i, records[i])
		}
	}
	if strings.Contains(audit.String(), "secret-name") || strings.Contains(audit.String(), strings.TrimPrefix(alice, "Bearer ")) {
		t.Fatal("the audit trail holds a body or a token")
	}
}

func TestRateLimitKeysBySubjectThenTrustedClientIP(t *testing.T) {
	f := newTestServer(t, func(d *Deps) {
		d.Auth = config.Auth{JWTSecret: testSecret}
		d.RateLimit = config.RateLimit{RPS: 0.001, Burst: 1}
		var err error
		if d.Proxies, err = ratelimit.NewProxies([]string{"192.0.2.0/24"}); err != nil {
			t.Fatal(err)
		}
	})
	// httptest requests come from 192.0.2.1, a trusted proxy here.
	alice, bob := token(t, "alice", "items:read"), token(t, "bob", "items:read")
	if f.do("GET", base, "", "Authorization", alice).Code != http.StatusOK || f.do("GET", base, "", "Authorization", bob).Code != http.StatusOK {
		t.Fatal("first request of a subject refused")
	}
	f.do("GET", base, "", "Authorization", alice).wantError(t, http.StatusTooManyRequests, "rate_limited")
	// Anonymous callers behind the proxy have a bucket per forwarded address.
	if f.do("GET", base, "", "X-Forwarded-For", "198.51.100.1").Code != http.StatusOK ||
		f.do("GET", base, "", "X-Forwarded-For", "198.51.100.2").Code != http.StatusOK {
		t.Fatal("first request of a forwarded client refused")
	}
	f.do("GET", base, "", "X-Forwarded-For", "198.51.100.1").wantError(t, http.StatusTooManyRequests, "rate_limited")
}

func TestUntrustedForwardedForIsIgnored(t *testing.T) {
	f := newTestServer(t, func(d *Deps) { d.RateLimit = config.RateLimit{RPS: 0.001, Burst: 1} })
	if f.do("GET", base, "", "X-Forwarded-For", "198.51.100.1").Code != http.StatusOK {
		t.Fatal("first request refused")
	}
	f.do("GET", base, "", "X-Forwarded-For", "198.51.100.2").wantError(t, http.StatusTooManyRequests, "rate_limited")
}

// rawRequest sends a POST whose body arrives in parts, pause apart, and returns the status.
func rawRequest(t *testing.T, addr string, parts []string, pause time.Duration) int {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	body := strings.Join(parts, "")
	head := "POST " + base + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	for i, p := range parts {
		if i > 0 {
			time.Sleep(pause)
		}
		if _, err := io.WriteString(conn, p); err != nil {
			break // the server may have answered and closed already
		}
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	return res.StatusCode
}

// Reading the body has its own limit (408), and the request deadline starts after it: a
// body in two parts 300 ms apart is fine with a 100 ms request deadline.
func TestSlowBodiesAreNotBlamedOnTheDatabase(t *testing.T) {
	f := newTestServer(t, func(d *Deps) {
		d.HTTP.RequestTimeout = 100 * time.Millisecond
		d.HTTP.BodyReadTimeout = time.Second
	})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if got := rawRequest(t, addr, []string{`{"name":`, `"slow"}`}, 300*time.Millisecond); got != http.StatusCreated {
		t.Fatalf("slow but timely body: %d, want 201", got)
	}
	f = newTestServer(t, func(d *Deps) { d.HTTP.BodyReadTimeout = 200 * time.Millisecond })
	srv2 := httptest.NewServer(f.h)
	defer srv2.Close()
	if got := rawRequest(t, strings.TrimPrefix(srv2.URL, "http://"), []string{`{"name":`, `"late"}`}, 600*time.Millisecond); got != http.StatusRequestTimeout {
		t.Fatalf("body too slow: %d, want 408", got)
	}
}
