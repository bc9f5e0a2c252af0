package tlscert_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/my-service/internal/tlscert"
)

// pair writes a fresh self-signed certificate and its key to dir and returns the
// certificate's DER bytes. Each call moves the files' change time on, as a renewal does.
func pair(t *testing.T, dir, name string, notAfter time.Time) []byte {
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
		SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: notAfter,
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
	write(t, filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return der
}

var tick = time.Now()

// write writes a file and gives it a change time later than any before, so a rewrite in
// the same clock tick still counts as a change.
func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tick = tick.Add(time.Second)
	if err := os.Chtimes(path, tick, tick); err != nil {
		t.Fatal(err)
	}
}

func served(t *testing.T, r *tlscert.Reloader) []byte {
	t.Helper()
	cert, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return cert.Certificate[0]
}

type logs struct{ bytes.Buffer }

func newReloader(t *testing.T, dir string, every time.Duration) (*tlscert.Reloader, *logs) {
	t.Helper()
	out := &logs{}
	r, err := tlscert.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), every, slog.New(slog.NewJSONHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return r, out
}

func TestReloadsAChangedPairAndKeepsTheOldOneWhenTheNewOneIsBad(t *testing.T) {
	dir := t.TempDir()
	first := pair(t, dir, "first.test", time.Now().Add(time.Hour))
	r, out := newReloader(t, dir, 0)
	if !bytes.Equal(served(t, r), first) {
		t.Fatal("not serving the pair on disk")
	}
	second := pair(t, dir, "second.test", time.Now().Add(time.Hour))
	if !bytes.Equal(served(t, r), second) {
		t.Fatal("a renewed pair was not picked up")
	}

	// A half-written renewal: the certificate is new, the key is not valid yet.
	write(t, filepath.Join(dir, "tls.key"), []byte("not a key"))
	if !bytes.Equal(served(t, r), second) {
		t.Fatal("a bad pair replaced the good one")
	}
	if !strings.Contains(out.String(), "TLS certificate not reloaded; serving the previous one") {
		t.Fatalf("the bad pair was not logged: %s", out.String())
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload accepted a bad pair")
	}

	// An expired certificate is refused too.
	pair(t, dir, "expired.test", time.Now().Add(-time.Minute))
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired pair: %v", err)
	}
	if !bytes.Equal(served(t, r), second) {
		t.Fatal("an expired pair replaced the good one")
	}
}

func TestLooksAtTheFilesAtMostOncePerInterval(t *testing.T) {
	dir := t.TempDir()
	first := pair(t, dir, "first.test", time.Now().Add(time.Hour))
	r, _ := newReloader(t, dir, time.Hour)
	pair(t, dir, "second.test", time.Now().Add(time.Hour))
	if !bytes.Equal(served(t, r), first) {
		t.Fatal("the files were read again inside the interval")
	}
	third := pair(t, dir, "third.test", time.Now().Add(time.Hour))
	signals := make(chan os.Signal)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		r.ReloadOn(ctx, signals)
		close(done)
	}()
	signals <- syscall.SIGHUP
	signals <- syscall.SIGHUP // the first one has been handled once this one is taken
	if !bytes.Equal(served(t, r), third) {
		t.Fatal("a signal did not reload the pair")
	}
	cancel()
	<-done
}

func TestNewRefusesAPairThatDoesNotLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlscert.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), time.Second, slog.New(slog.NewJSONHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), "TLS_CERT_FILE") {
		t.Fatalf("missing files: %v", err)
	}
	pair(t, dir, "svc.test", time.Now().Add(time.Hour))
	write(t, filepath.Join(dir, "tls.key"), []byte("not a key"))
	if _, err := tlscert.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), time.Second, slog.New(slog.NewJSONHandler(io.Discard, nil))); err == nil {
		t.Fatal("a bad key was accepted")
	}
}

// TestServerConfigRefusesOldProtocolsAndWeakSuites: a real handshake per client setting.
func TestServerConfigRefusesOldProtocolsAndWeakSuites(t *testing.T) {
	dir := t.TempDir()
	pair(t, dir, "svc.test", time.Now().Add(time.Hour))
	r, _ := newReloader(t, dir, time.Second)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlscert.ServerConfig(r))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = conn.(*tls.Conn).HandshakeContext(t.Context())
				_ = conn.Close()
			}()
		}
	}()
	pinned, err := tlscert.PinnedClientConfig(filepath.Join(dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(cfg *tls.Config) error {
		d := tls.Dialer{Config: cfg}
		conn, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
		if err == nil {
			_ = conn.Close()
		}
		return err
	}
	with := func(change func(*tls.Config)) *tls.Config {
		cfg := pinned.Clone()
		change(cfg)
		return cfg
	}
	for name, tc := range map[string]struct {
		cfg *tls.Config
		ok  bool
	}{
		"TLS 1.3": {with(func(c *tls.Config) { c.MinVersion = tls.VersionTLS13 }), true},
		"TLS 1.2 ECDHE AEAD": {with(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}), true},
		"TLS 1.1": {with(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 }), false},
		"TLS 1.0": {with(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10 }), false},
		"TLS 1.2 CBC": {with(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		}), false},
	} {
		if err := handshake(tc.cfg); (err == nil) != tc.ok {
			t.Errorf("%s: handshake error %v, want success %v", name, err, tc.ok)
		}
	}

	// The pinned client accepts only the configured certificate.
	other := t.TempDir()
	pair(t, other, "svc.test", time.Now().Add(time.Hour))
	stranger, err := tlscert.PinnedClientConfig(filepath.Join(other, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(stranger); err == nil {
		t.Fatal("a client pinned to another certificate accepted this one")
	}
	if _, err := tlscert.PinnedClientConfig(filepath.Join(dir, "tls.key")); err == nil {
		t.Fatal("a key file was taken for a certificate")
	}
}
