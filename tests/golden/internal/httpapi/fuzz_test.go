package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/example/my-service/internal/auth"
	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/ratelimit"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/store/storetest"
	"github.com/example/my-service/internal/telemetry"
)

// Fuzz targets for every parser that faces callers. `go test` runs the seeds; the
// template's suite runs each with -fuzz for a bounded time (make fuzz does too).

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{`{"name":"a"}`, `{"name":"a","description":"d"}`, `{"name":1}`, `{"nope":1}`,
		`{"name":"a"}{}`, `[]`, `null`, "", `{"name":"\u0000"}`, "{\"name\":\"\xff\"}", `{"name":"\ud800"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		_, err := decode[domain.ItemInput](r)
		if err != nil && domain.KindOf(err) != domain.KindInvalid && domain.KindOf(err) != domain.KindTooLarge {
			t.Fatalf("decode error of kind %s: %v", domain.KindOf(err), err)
		}
	})
}

func FuzzExpectedVersion(f *testing.F) {
	for _, seed := range []string{`"3"`, `W/"3"`, `3`, `"0"`, `"-1"`, `"99999999999999999999"`, `*`, ``, `"3", "4"`} {
		f.Add(seed, int64(0))
		f.Add(seed, int64(3))
	}
	f.Fuzz(func(t *testing.T, ifMatch string, body int64) {
		v, err := expectedVersion(ifMatch, body)
		if err != nil {
			if domain.KindOf(err) != domain.KindInvalid {
				t.Fatalf("kind %s: %v", domain.KindOf(err), err)
			}
			return
		}
		if ifMatch != "" && v < 1 {
			t.Fatalf("If-Match %q accepted as version %d", ifMatch, v)
		}
	})
}

func FuzzRequestID(f *testing.F) {
	for _, seed := range []string{"abc-123", "", "has space", strings.Repeat("x", 129), "tab\tin", "ünïcode"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !validRequestID(id) {
			return
		}
		if len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			t.Fatalf("accepted %q", id)
		}
	})
}

// FuzzAPI sends whole requests through the API, middleware included: whatever the
// method, path, query, headers and body, the answer is never a 500 and always JSON.
func FuzzAPI(f *testing.F) {
	const items = "/api/v1/items"
	for _, s := range []struct{ method, target, auth, ifMatch, body string }{
		{"POST", items, "", "", `{"name":"a"}`},
		{"GET", items + "?limit=2&cursor=abc", "", "", ""},
		{"GET", items + "?limit=-1", "", "", ""},
		{"PUT", items + "/0190a0e4-0000-7000-8000-000000000000", "Bearer x.y.z", `W/"1"`, `{"name":"b","version":1}`},
		{"DELETE", items + "/not-a-uuid", "bearer", "", ""},
		{"PATCH", items, "", "", "{"},
		{"GET", "/readyz", "", "", ""},
	} {
		f.Add(s.method, s.target, s.auth, s.ifMatch, s.body)
	}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	db := storetest.OpenSQLite(f)
	state := health.New(db, time.Second)
	state.MarkMigrated()
	policy, err := auth.New(f.Context(), config.Auth{JWTSecret: strings.Repeat("k", 32)}, logger)
	if err != nil {
		f.Fatal(err)
	}
	h := NewServer(Deps{
		Logger: logger, HTTP: config.HTTP{RequestTimeout: 5 * time.Second, MaxBodyBytes: 4096, BodyReadTimeout: time.Second, DefaultPageSize: 2, MaxPageSize: 50},
		Policy: policy, Limiter: ratelimit.New(1e9, 1e9), Audit: telemetry.NewAudit(io.Discard), Health: state, Metrics: telemetry.NewMetrics(),
		Items: service.NewItems(db, service.Limits{DefaultPageSize: 2, MaxPageSize: 50}, nil),
	})
	f.Fuzz(func(t *testing.T, method, target, authorization, ifMatch, body string) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		r, err := http.NewRequestWithContext(t.Context(), method, "http://svc"+target, strings.NewReader(body))
		if err != nil {
			return // not a request a server could receive
		}
		r.RequestURI = target
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", authorization)
		r.Header.Set("If-Match", ifMatch)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body.String())
		}
		if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: body is not JSON: %q", method, target, rec.Body.String())
		}
	})
}
