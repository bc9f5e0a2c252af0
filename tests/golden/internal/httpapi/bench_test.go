package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/example/my-service/internal/config"
)

// The request path's cost with every middleware on (request ID, metrics, recovery,
// hardening headers, client IP, body limit, deadline, rate limit, routing, JSON), on SQLite:
//
//	go test -run '^$' -bench . -benchmem ./internal/httpapi/
//
// allocs/op is the number to watch in review: a change that adds allocations to every
// request shows here first.

// benchServer is the test server with authentication on and a rate limit no benchmark
// reaches, so the limiter's path runs without refusing.
type benchServer struct {
	*testServer
	writer string // a bearer token with the write scope
}

func newBenchServer(b *testing.B) benchServer {
	return benchServer{
		testServer: newTestServer(b, func(d *Deps) {
			d.Auth = config.Auth{JWTSecret: testSecret}
			d.RateLimit = config.RateLimit{RPS: 1e9, Burst: 1e9}
		}),
		writer: token(b, "bench", "items:write"),
	}
}

// serve answers one GET without decoding the answer: the harness costs as little as it can
// (a request and a recorder), so the numbers are the service's.
func (s benchServer) serve(b *testing.B, path string) {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, httptest.NewRequestWithContext(b.Context(), http.MethodGet, path, nil))
	if rec.Code != http.StatusOK {
		b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body.String())
	}
}

// seed creates an item and returns its ID.
func (s benchServer) seed(b *testing.B) string {
	res := s.do(http.MethodPost, base, `{"name":"bench"}`, "Authorization", s.writer)
	if res.Code != http.StatusCreated {
		b.Fatalf("create: %d %s", res.Code, res.Body.String())
	}
	return res.body["id"].(string)
}

func BenchmarkLivez(b *testing.B) {
	s := newBenchServer(b)
	b.ReportAllocs()
	for b.Loop() {
		s.serve(b, "/livez")
	}
}

func BenchmarkGetItem(b *testing.B) {
	s := newBenchServer(b)
	id := s.seed(b)
	b.ReportAllocs()
	for b.Loop() {
		s.serve(b, base+"/"+id)
	}
}

func BenchmarkCreateItem(b *testing.B) {
	s := newBenchServer(b)
	b.ReportAllocs()
	for b.Loop() {
		s.seed(b)
	}
}

func BenchmarkListItems(b *testing.B) {
	s := newBenchServer(b)
	for range 3 {
		s.seed(b)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.serve(b, base)
	}
}
