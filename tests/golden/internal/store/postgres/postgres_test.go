package postgres_test

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/postgres"
	"github.com/example/my-service/internal/store/storetest"
)

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{
		MaxConns: 2, ConnMaxLifetime: time.Minute, ConnMaxIdleTime: time.Minute, StatementTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// A read-only session (as on a standby, or after default_transaction_read_only was set on
// the database) refuses the write probe, so readiness fails, and is ended rather than kept:
// only a new session can take writes once the database does again.
func TestReadOnlySessionsAreNotKept(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.PostgresURL(t)
	rw := open(t, dsn)
	if err := rw.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rw.Ping(ctx); err != nil {
		t.Fatalf("a writable database: %v", err)
	}
	if open := rw.Stats().OpenConnections; open != 1 {
		t.Fatalf("the writable session is kept: %d open", open)
	}

	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("default_transaction_read_only", "on")
	u.RawQuery = q.Encode()
	ro := open(t, u.String())
	var de *domain.Error
	if err := ro.Ping(ctx); !errors.As(err, &de) || de.Kind != domain.KindUnavailable || de.Message != "refuses writes" {
		t.Fatalf("Ping: %v, want an unavailable error that says the database refuses writes", err)
	}
	deadline := time.Now().Add(5 * time.Second) // the pool closes a broken session in the background
	for ro.Stats().OpenConnections != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the read-only session was kept: %+v", ro.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
