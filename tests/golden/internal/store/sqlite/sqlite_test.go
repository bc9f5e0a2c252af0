package sqlite

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/storeerr"
)

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(dsn, Options{MaxConns: 4, ConnMaxLifetime: time.Minute, BusyTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// A file SQLite can only open read-only (here mode=ro; in production a file or directory
// made read-only): reads work, writes are unavailable, readiness says why, and no
// connection is kept in the pool, so the first one opened once the file is writable works.
func TestConnectionsThatCannotWriteAreNotKept(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "test.db")
	rw := open(t, "file:"+path)
	if err := rw.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rw.Ping(ctx); err != nil {
		t.Fatalf("a writable file: %v", err)
	}
	if _, err := rw.db.ExecContext(ctx, storeerr.WriteProbe); err != nil {
		t.Fatal(err)
	}
	if idle := rw.db.Stats().Idle; idle == 0 {
		t.Fatalf("the writable pool keeps its connection: %d idle", idle)
	}

	ro := open(t, "file:"+path+"?mode=ro")
	var n int
	if err := ro.db.QueryRowContext(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&n); err != nil {
		t.Fatalf("a read: %v", err)
	}
	_, err := ro.db.ExecContext(ctx, storeerr.WriteProbe)
	if classify(err) != storeerr.Unavailable {
		t.Fatalf("a write: %v, want it classified unavailable", err)
	}
	if st := ro.db.Stats(); st.OpenConnections != 0 {
		t.Fatalf("connections that cannot write were kept: %+v", st)
	}
	var de *domain.Error
	if err := ro.Ping(ctx); !errors.As(err, &de) || de.Kind != domain.KindUnavailable {
		t.Fatalf("Ping: %v, want unavailable", err)
	}
}

func TestClassify(t *testing.T) {
	ctx := t.Context()
	s := open(t, "file:"+filepath.Join(t.TempDir(), "test.db"))
	for name, tc := range map[string]struct {
		query string
		want  storeerr.Class
	}{
		"duplicate": {"INSERT INTO t VALUES (1)", storeerr.Duplicate},
		"syntax":    {"INSERT INTO", storeerr.Other},
		"read-only": {"PRAGMA query_only = ON; INSERT INTO t VALUES (2)", storeerr.Unavailable},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := s.db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY); INSERT OR IGNORE INTO t VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			_, err = conn.ExecContext(ctx, tc.query)
			if got := classify(err); got != tc.want {
				t.Fatalf("%q: %v classified %d, want %d", tc.query, err, got, tc.want)
			}
			_, _ = conn.ExecContext(ctx, "PRAGMA query_only = OFF")
		})
	}
	if classify(errReadOnly) != storeerr.Unavailable {
		t.Fatal("a connection opened read-only is not unavailable")
	}
}
