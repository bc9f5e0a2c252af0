package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/my-service/internal/app"
)

// logSink collects the service's JSON logs and finds lines in them.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) find(msg string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(s.buf.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			return line
		}
	}
	return nil
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func sqliteEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DB_TYPE": "sqlite", "DATABASE_URL": "file:" + filepath.Join(t.TempDir(), "e2e.db"), "SHUTDOWN_DRAIN_DELAY": "0s",
		"HTTP_ADDR": "127.0.0.1:0", "METRICS_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
		"APP_ENV": "development",
	}
}

// service is a running instance: its addresses by log key (http_addr, grpc_addr, ...).
type service struct {
	addrs map[string]string
	stop  func() error
}

func (s service) url(key string) string { return "http://" + s.addrs[key] }

// start runs the service and waits until it reports ready.
func start(t *testing.T, vars map[string]string) service {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	logs := &logSink{}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, []string{"svc"}, env(vars), logs, io.Discard) }()
	deadline := time.Now().Add(20 * time.Second)
	svc := service{addrs: map[string]string{}}
	for len(svc.addrs) == 0 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no listening log line: %s", logs.buf.String())
		}
		if line := logs.find("listening"); line != nil {
			for k, v := range line {
				if strings.HasSuffix(k, "_addr") {
					svc.addrs[k] = v.(string)
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for !ready(t, svc) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("never ready: %s", logs.buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	svc.stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
	return svc
}

func ready(t *testing.T, svc service) bool {
	code, err := get(t, svc.url("http_addr")+"/readyz")
	return err == nil && code == http.StatusOK
}
func get(t *testing.T, url string) (int, error) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_ = res.Body.Close()
	return res.StatusCode, nil
}

func call(t *testing.T, method, url, body string, headers ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: not JSON: %q", method, url, raw)
		}
	}
	return res.StatusCode, res.Header, out
}

func TestEndToEndOnSQLite(t *testing.T) {
	svc := start(t, sqliteEnv(t))
	base := svc.url("http_addr") + "/api/v1/items"

	code, hdr, created := call(t, "POST", base, `{"name":"e2e","description":"made by the test"}`, "Idempotency-Key", "e2e-1")
	if code != http.StatusCreated || hdr.Get("X-Request-ID") == "" {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["id"].(string)
	if code, _, again := call(t, "POST", base, `{"name":"e2e","description":"made by the test"}`, "Idempotency-Key", "e2e-1"); code != http.StatusOK || again["id"] != id {
		t.Fatalf("idempotent retry: %d %v", code, again)
	}
	if code, _, got := call(t, "GET", base+"/"+id, ""); code != http.StatusOK || got["name"] != "e2e" {
		t.Fatalf("get: %d %v", code, got)
	}
	if code, _, list := call(t, "GET", base+"?limit=10", ""); code != http.StatusOK || len(list["data"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, list)
	}
	if code, _, upd := call(t, "PUT", base+"/"+id, `{"name":"renamed","version":1}`); code != http.StatusOK || upd["version"] != float64(2) {
		t.Fatalf("update: %d %v", code, upd)
	}
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/" + id, `{"name":"stale","version":1}`, http.StatusConflict},
		{"POST", "", `{"name":`, http.StatusBadRequest},
		{"POST", "", `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, http.StatusRequestEntityTooLarge},
		{"GET", "/0190b6a4-0000-7000-8000-000000000000", "", http.StatusNotFound},
		{"GET", "/bad-id", "", http.StatusBadRequest},
		{"DELETE", "/" + id, "", http.StatusNoContent},
		{"DELETE", "/" + id, "", http.StatusNotFound},
	} {
		code, _, body := call(t, tc.method, base+tc.path, tc.body)
		if code != tc.want {
			t.Errorf("%s %s: %d, want %d (%v)", tc.method, tc.path, code, tc.want, body)
		}
		if tc.want >= 400 && body["error"] == nil {
			t.Errorf("%s %s: error without a JSON body", tc.method, tc.path)
		}
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, svc.url("metrics_addr")+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	for _, want := range []string{`http_requests_total{code="201",method="POST",route="/api/v1/items"}`, "go_goroutines", "http_request_duration_seconds_bucket"} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := svc.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestHealthcheckFlag(t *testing.T) {
	vars := sqliteEnv(t)
	svc := start(t, vars)
	defer func() { _ = svc.stop() }()
	key, addr := "HTTP_ADDR", svc.addrs["http_addr"]
	vars[key] = addr
	if err := app.Run(t.Context(), []string{"svc", "-healthcheck"}, env(vars), io.Discard, io.Discard); err != nil {
		t.Fatalf("healthcheck against a ready server: %v", err)
	}
	vars[key] = "127.0.0.1:1"
	if err := app.Run(t.Context(), []string{"svc", "-healthcheck"}, env(vars), io.Discard, io.Discard); err == nil {
		t.Fatal("healthcheck with nothing listening succeeded")
	}
}

func TestStartupErrors(t *testing.T) {
	vars := sqliteEnv(t)
	vars["DB_TYPE"] = "oracle"
	err := app.Run(t.Context(), []string{"svc"}, env(vars), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "use one of postgresql, mysql, mariadb, sqlite") {
		t.Fatalf("bad DB_TYPE: %v", err)
	}
	err = app.Run(t.Context(), []string{"svc"}, env(map[string]string{"DB_TYPE": "sqlite"}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL is required") {
		t.Fatalf("missing DATABASE_URL: %v", err)
	}
	if err := app.Run(t.Context(), []string{"svc", "frobnicate"}, env(sqliteEnv(t)), io.Discard, io.Discard); err == nil {
		t.Fatal("unknown command accepted")
	}
}

// Outside development the service fails closed: no authentication configured, no start.
func TestProductionRefusesToServeWithoutAuthentication(t *testing.T) {
	for _, appEnv := range []string{"", "production", "staging"} {
		vars := sqliteEnv(t)
		vars["APP_ENV"] = appEnv
		err := app.Run(t.Context(), []string{"svc"}, env(vars), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "authentication is required") {
			t.Fatalf("APP_ENV=%q without JWT_SECRET or JWT_JWKS_URL: %v", appEnv, err)
		}
	}
	// Migrations need no authentication: a migration job runs with the same settings.
	vars := sqliteEnv(t)
	vars["APP_ENV"] = "production"
	if err := app.Run(t.Context(), []string{"svc", "migrate"}, env(vars), io.Discard, io.Discard); err != nil {
		t.Fatalf("migrate in production: %v", err)
	}
}

func TestMigrateAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := app.Run(t.Context(), []string{"svc", "migrate"}, env(sqliteEnv(t)), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "migrations applied") {
		t.Fatalf("migrate output: %s", out.String())
	}
	out.Reset()
	if err := app.Run(t.Context(), []string{"svc", "-version"}, env(nil), &out, io.Discard); err != nil || strings.TrimSpace(out.String()) != app.Version {
		t.Fatalf("version: %q %v", out.String(), err)
	}
}
