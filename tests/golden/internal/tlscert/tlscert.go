// Package tlscert serves the certificate and key named by TLS_CERT_FILE and TLS_KEY_FILE,
// and picks up a renewed pair (cert-manager, a mounted Secret, certbot) without a restart.
package tlscert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ServerConfig is the TLS configuration of every listener that serves TLS: TLS
// 1.2 at least and, on TLS 1.2, only ECDHE key exchange (forward secrecy) with AEAD
// ciphers. TLS 1.3's suites are all AEAD and Go does not let them be chosen.
func ServerConfig(r *Reloader) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: r.GetCertificate,
	}
}

// Reloader holds the certificate being served. A handshake looks at the files' change
// times at most once per interval and loads a changed pair; a pair that does not load
// (half written, key and certificate mismatched, expired) is logged and the previous one
// stays in service until the files change again.
type Reloader struct {
	certFile, keyFile string
	every             time.Duration
	logger            *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	seen    stamp // the files as last loaded or tried
	checked time.Time
}

// stamp identifies a version of the two files.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// New loads the pair: the service does not start with a pair that does not load.
func New(certFile, keyFile string, every time.Duration, logger *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, every: every, logger: logger, checked: time.Now()}
	if err := r.load(true); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate, reloaded first
// when the files changed since the last look.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.every {
		r.checked = now
		_ = r.load(false) // logged; the previous certificate stays
	}
	return r.cert, nil
}

// Reload re-reads the pair now, changed or not (SIGHUP).
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked = time.Now()
	return r.load(true)
}

// ReloadOn reloads the pair at every signal until ctx ends.
func (r *Reloader) ReloadOn(ctx context.Context, signals <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			_ = r.Reload() // logged; the previous certificate stays
		}
	}
}

// load reads the pair when force is set or the files changed; r.mu is held.
func (r *Reloader) load(force bool) error {
	st, err := r.stat()
	if err == nil && !force && st == r.seen {
		return nil
	}
	if err == nil {
		r.seen = st
		err = r.replace()
	}
	if err != nil {
		err = fmt.Errorf("TLS_CERT_FILE %s, TLS_KEY_FILE %s: %w", r.certFile, r.keyFile, err)
		if r.cert != nil {
			r.logger.Error("TLS certificate not reloaded; serving the previous one", "err", err.Error())
		}
	}
	return err
}

// replace loads the pair and serves it from the next handshake on.
func (r *Reloader) replace() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	if err := usable(leaf, time.Now()); err != nil {
		return err
	}
	cert.Leaf = leaf
	if r.cert == nil || !bytes.Equal(r.cert.Leaf.Raw, leaf.Raw) {
		r.logger.Info("TLS certificate loaded", "subject", leaf.Subject.String(), "dns_names", leaf.DNSNames,
			"not_after", leaf.NotAfter)
	}
	r.cert = &cert
	return nil
}

func (r *Reloader) stat() (stamp, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return stamp{}, err
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// usable refuses a certificate outside its validity period: serving it would fail every
// client, while the previous one may still be good.
func usable(leaf *x509.Certificate, now time.Time) error {
	switch {
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("the certificate is not valid before %s", leaf.NotBefore)
	case now.After(leaf.NotAfter):
		return fmt.Errorf("the certificate expired at %s", leaf.NotAfter)
	}
	return nil
}

// PinnedClientConfig is a client configuration that accepts exactly the certificate in
// certFile, whatever names it carries: for the -healthcheck probe, which dials the local
// server at 127.0.0.1, an address the certificate need not name.
func PinnedClientConfig(certFile string) (*tls.Config, error) {
	raw, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("TLS_CERT_FILE %s: no PEM certificate", certFile)
	}
	want := block.Bytes
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Name checks are replaced, not skipped: VerifyConnection (which runs on resumed
		// sessions too) accepts only the configured certificate.
		InsecureSkipVerify: true, //nolint:gosec // G402: the peer is pinned to TLS_CERT_FILE below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return errors.New("the server's certificate is not the one in TLS_CERT_FILE")
			}
			return nil
		},
	}, nil
}
