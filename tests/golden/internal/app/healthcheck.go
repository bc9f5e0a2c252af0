package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/tlscert"
)

// checkHealth is the container HEALTHCHECK: it asks the local server's /readyz, so the
// image needs no curl. With TLS on it speaks HTTPS and accepts only the configured
// certificate (it dials 127.0.0.1, which the certificate need not name).
func checkHealth(ctx context.Context, addr string, tlsCfg config.TLS) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: HTTP_ADDR %q: %w", addr, err)
	}
	client, scheme := &http.Client{}, "http"
	if tlsCfg.Enabled() {
		pinned, err := tlscert.PinnedClientConfig(tlsCfg.CertFile)
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		client.Transport = &http.Transport{TLSClientConfig: pinned}
		scheme = "https"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort("127.0.0.1", port)+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %s", resp.Status)
	}
	return nil
}
