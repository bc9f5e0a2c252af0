package mysql_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/mysql"
	"github.com/example/my-service/internal/store/storetest"
)

func TestStatsReportThePool(t *testing.T) {
	s, err := mysql.Open(storetest.MySQLDSN(t), mysql.Options{Flavor: mysql.MariaDB, MaxConns: 4, ConnMaxLifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if st := s.Stats(); st.MaxOpenConnections != 4 {
		t.Fatalf("stats: %+v", st)
	}
}

// A session that may only read (a server made read-only, or a demoted primary) refuses
// the write probe, so readiness fails, and its connection is closed rather than kept: once
// the server takes writes, the pool's connections are new ones.
func TestReadOnlySessionsAreNotKept(t *testing.T) {
	ctx := t.Context()
	dsn := storetest.MySQLDSN(t)
	opts := mysql.Options{Flavor: mysql.MariaDB, MaxConns: 2, ConnMaxLifetime: time.Minute}
	rw, err := mysql.Open(dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rw.Close() })
	if err := rw.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rw.Ping(ctx); err != nil {
		t.Fatalf("a writable server: %v", err)
	}

	ro, err := mysql.Open(storetest.ReadOnlyMySQLDSN(t, dsn), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ro.Close() })
	var de *domain.Error
	if err := ro.Ping(ctx); !errors.As(err, &de) || de.Kind != domain.KindUnavailable || de.Message != "refuses writes" {
		t.Fatalf("Ping: %v, want an unavailable error that says the database refuses writes", err)
	}
	if st := ro.Stats(); st.OpenConnections != 0 {
		t.Fatalf("read-only connections were kept: %+v", st)
	}
}

// The MySQL path is tested against a MariaDB server here; this holds the SQL it sends to
// what MySQL 8 accepts as well.
func TestQueriesUseOnlyMySQL8Syntax(t *testing.T) {
	paths, err := filepath.Glob("../queries/mysql/*.sql")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no queries found (%v)", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		storetest.CheckMySQL8(t, p, string(b))
	}
}
