package mysql_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
