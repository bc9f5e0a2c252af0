package mysql

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The MySQL path is tested against MariaDB servers here; these checks hold its SQL and
// settings to what MySQL 8 accepts as well.

func sqlFiles(t *testing.T, pattern string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(pattern)
	if err != nil || len(paths) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = string(b)
	}
	return out
}

func TestMigrationsSuitGalera(t *testing.T) {
	statement := regexp.MustCompile(`(?is)\b(CREATE|ALTER|DROP|RENAME)\s+(UNIQUE\s+)?(TABLE|INDEX)\b.*?;`)
	createTable := regexp.MustCompile(`(?i)^CREATE\s+TABLE`)
	for path, text := range sqlFiles(t, "../migrations/mysql/*.sql") {
		up := strings.SplitN(text, "-- +goose Down", 2)[0]
		statements := statement.FindAllString(up, -1)
		if len(statements) != 1 {
			t.Errorf("%s: %d DDL statements, want one per migration (MySQL DDL is not transactional)", path, len(statements))
		}
		for _, ddl := range statements {
			if !createTable.MatchString(ddl) {
				continue
			}
			if !strings.Contains(ddl, "PRIMARY KEY") || !strings.Contains(ddl, "ENGINE=InnoDB") {
				t.Errorf("%s: every table needs an explicit PRIMARY KEY and ENGINE=InnoDB", path)
			}
			if strings.Contains(ddl, "utf8mb4_0900") {
				t.Errorf("%s: utf8mb4_0900 collations exist on MySQL 8 only", path)
			}
		}
	}
}

func TestSessionSettingsPerFlavor(t *testing.T) {
	for flavor, want := range map[Flavor]string{MySQL: "max_execution_time=250", MariaDB: "max_statement_time=0.250"} {
		cfg, err := sessionConfig("user:pw@tcp(127.0.0.1:3306)/app", Options{Flavor: flavor, StatementTimeout: 250 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		dsn := cfg.FormatDSN()
		if !strings.Contains(dsn, want) || !strings.Contains(dsn, "parseTime=true") || !strings.Contains(dsn, "interpolateParams=true") {
			t.Errorf("%s: DSN %s lacks %s, parseTime or interpolateParams", flavor, dsn, want)
		}
		if strings.Contains(dsn, "wsrep_sync_wait") {
			t.Errorf("%s: the main pool must not force causal reads", flavor)
		}
	}
}

func TestURLForms(t *testing.T) {
	for _, dsn := range []string{"mysql://u:p@db:3307/app?tls=false", "mariadb://u:p@db/app", "u:p@tcp(db:3307)/app"} {
		cfg, err := parseDSN(dsn)
		if err != nil || cfg.User != "u" || cfg.Passwd != "p" || cfg.DBName != "app" || !strings.HasPrefix(cfg.Addr, "db:") {
			t.Errorf("%s: %+v %v", dsn, cfg, err)
		}
	}
}
