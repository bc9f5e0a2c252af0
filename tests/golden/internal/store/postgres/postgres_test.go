package postgres_test

import (
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// The database turns read-only (its sessions cut, the new ones read-only) and back: Ping
// reports it, and the first Ping that passes again replaces the sessions opened meanwhile.
func TestSessionsOpenedWhileReadOnlyAreReplacedOnRecovery(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.PostgresURL(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(ctx, os.Getenv("TEST_POSTGRES_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dsn)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pingUntil := func(what string, ok func(error) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for err := s.Ping(ctx); !ok(err); err = s.Ping(ctx) {
			if time.Now().After(deadline) {
				t.Fatalf("Ping did not report %s: %v", what, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	exec("ALTER DATABASE " + name + " SET default_transaction_read_only = on")
	exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'")
	pingUntil("that the database refuses writes", func(err error) bool {
		var de *domain.Error
		return errors.As(err, &de) && de.Message == "refuses writes"
	})
	exec("ALTER DATABASE " + name + " RESET default_transaction_read_only")
	pingUntil("recovery", func(err error) bool { return err == nil })
	deadline := time.Now().Add(5 * time.Second) // the pool closes the old sessions in the background
	for s.Stats().OpenConnections != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the sessions opened while the database was read-only were kept: %+v", s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("a new session: %v", err)
	}
}
