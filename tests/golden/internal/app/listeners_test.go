package app

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/health"
	"github.com/example/my-service/internal/telemetry"
)

// writePair writes a self-signed certificate for 127.0.0.1 and its key into dir.
func writePair(t *testing.T, dir string) config.TLS {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "svc.test"}, DNSNames: []string{"svc.test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.TLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	for path, block := range map[string]*pem.Block{
		cfg.CertFile: {Type: "CERTIFICATE", Bytes: der}, cfg.KeyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// syncBuffer is the log output of a running service, read while it writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// addr returns the value of key in the "listening" log line, or "".
func (b *syncBuffer) addr(key string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "listening" {
			s, _ := line[key].(string)
			return s
		}
	}
	return ""
}

// TestTLSOnEveryAPIListenerAndTheHealthcheck runs the service with a certificate: the
// -healthcheck probe passes over TLS, a client pinned to another certificate is refused,
// and a plaintext client gets no answer from the API.
func TestTLSOnEveryAPIListenerAndTheHealthcheck(t *testing.T) {
	tlsCfg := writePair(t, t.TempDir())
	vars := map[string]string{
		"DB_TYPE": "sqlite", "DATABASE_URL": "file:" + filepath.Join(t.TempDir(), "tls.db"), "SHUTDOWN_DRAIN_DELAY": "0s",
		"HTTP_ADDR": "127.0.0.1:0", "METRICS_ADDR": "127.0.0.1:0",
		"TLS_CERT_FILE": tlsCfg.CertFile, "TLS_KEY_FILE": tlsCfg.KeyFile, "APP_ENV": "development",
	}
	ctx, cancel := context.WithCancel(t.Context())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"svc"}, func(k string) string { return vars[k] }, logs, io.Discard) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	key := "http_addr"
	deadline := time.Now().Add(20 * time.Second)
	for {
		addr := logs.addr(key)
		if addr != "" && checkHealth(t.Context(), addr, tlsCfg) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the healthcheck never passed over TLS: %s", logs.buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	addr := logs.addr(key)
	if err := checkHealth(t.Context(), addr, writePair(t, t.TempDir())); err == nil {
		t.Fatal("the healthcheck accepted a certificate other than the configured one")
	}
	if err := checkHealth(t.Context(), addr, config.TLS{}); err == nil {
		t.Fatal("a plaintext healthcheck passed against the TLS listener")
	}
}

func TestServerTLSIsOffWithoutFilesAndRefusesABadPair(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	cfg, reload, err := serverTLS(config.TLS{}, logger)
	if err != nil || cfg != nil {
		t.Fatalf("TLS without files: %v %v", cfg, err)
	}
	reload(t.Context()) // nothing to reload: returns at once
	bad := writePair(t, t.TempDir())
	bad.KeyFile = bad.CertFile
	if _, _, err := serverTLS(bad, logger); err == nil {
		t.Fatal("a certificate given as its own key was accepted")
	}
	cfg, reload, err = serverTLS(writePair(t, t.TempDir()), logger)
	if err != nil || cfg.GetCertificate == nil || cfg.MinVersion == 0 {
		t.Fatalf("TLS with a pair: %v %v", cfg, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	reload(ctx) // stops watching SIGHUP when its context ends
}

func TestMetricsListenerServesOnlyMetrics(t *testing.T) {
	srv := newMetricsServer(config.HTTP{ReadHeaderTimeout: time.Second}, telemetry.NewMetrics(), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("a metrics server timeout is unset: %+v", srv)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/metrics/extra", http.StatusNotFound},
		{http.MethodGet, "/debug/pprof/", http.StatusNotFound},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}
}

// TestDebugListenerServesOnlyPprof: the pprof handlers on their own mux, a write timeout
// long enough for the longest profile, and stopping ends a profile in progress.
func TestDebugListenerServesOnlyPprof(t *testing.T) {
	srv, stop := newDebugServer(config.HTTP{ReadHeaderTimeout: time.Second}, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.WriteTimeout <= 0 {
		t.Fatalf("a debug server timeout is unset: %+v", srv)
	}
	if srv.Handler == http.DefaultServeMux {
		t.Fatal("the debug server uses http.DefaultServeMux")
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/debug/pprof/", http.StatusOK},
		{http.MethodGet, "/debug/pprof/cmdline", http.StatusOK},
		{http.MethodGet, "/debug/pprof/goroutine", http.StatusOK},
		{http.MethodPost, "/debug/pprof/symbol", http.StatusOK},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/metrics", http.StatusNotFound},
		{http.MethodPost, "/debug/pprof/cmdline", http.StatusMethodNotAllowed},
		{http.MethodGet, "/debug/pprof/profile?seconds=61", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/trace?seconds=NaN", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/heap?seconds=soon", http.StatusBadRequest},
		{http.MethodGet, "/debug/pprof/trace?seconds=0.1", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- serveHTTP(srv, ln) }()
	got := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+ln.Addr().String()+"/debug/pprof/profile?seconds=30", nil)
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond) // the profile has started
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the profile in progress: %v", err)
	}
	if err := <-served; err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("serve: %v after %v", err, time.Since(start))
	}
}

func TestConnectionsCloseAfterTheirRequestWhileDraining(t *testing.T) {
	state := health.New(okPinger{}, time.Second)
	h := closeWhileDraining(state, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
	if rec.Header().Get("Connection") != "" {
		t.Fatal("a connection is closed before shutdown")
	}
	state.StartDraining()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
	if rec.Header().Get("Connection") != "close" || rec.Code != http.StatusNoContent {
		t.Fatalf("while draining: %d, Connection %q", rec.Code, rec.Header().Get("Connection"))
	}
}
