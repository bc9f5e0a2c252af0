package storetest

// The test databases: one fresh database per test, on SQLite or on the servers named by
// TEST_POSTGRES_DSN and TEST_MARIADB_DSN. This file is the template's (`copier update`
// keeps it current); the contract in storetest.go is the team's.

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/store"
)

// Config returns the settings of a fresh database of type dbType (a DB_TYPE value),
// dropped when the test ends. SQLite lives in a temporary directory; the servers come from
// TEST_POSTGRES_DSN and TEST_MARIADB_DSN (the test skips when its variable is unset).
func Config(tb testing.TB, dbType string) config.Database {
	tb.Helper()
	cfg := config.Database{
		Type: dbType, MaxConns: 4, ConnMaxLifetime: time.Minute, ConnMaxIdleTime: time.Minute,
		StatementTimeout: 5 * time.Second, IdempotencyTTL: 24 * time.Hour,
		RetryAttempts: 5, RetryBase: time.Millisecond, RetryCap: 20 * time.Millisecond,
	}
	switch dbType {
	case "sqlite":
		cfg.URL = "file:" + filepath.Join(tb.TempDir(), "test.db")
	case "postgresql":
		cfg.URL = PostgresURL(tb)
	case "mysql", "mariadb":
		cfg.URL = MySQLDSN(tb)
		if dbType == "mysql" {
			// The MySQL path's statement timeout (max_execution_time) is a MySQL 8 variable
			// the MariaDB test server does not know; the mysql package checks it separately.
			cfg.StatementTimeout = 0
		}
	}
	return cfg
}

// Open returns a migrated adapter of type dbType in a fresh database (see Config), closed
// when the test ends: what the contract (Run) holds to account.
func Open(tb testing.TB, dbType string) store.Adapter {
	tb.Helper()
	s, err := store.OpenAdapter(context.Background(), Config(tb, dbType))
	return ready(tb, s, err)
}

// OpenSQLite returns a migrated SQLite store as the service runs on it (store.Open: its
// idempotency records expire), in a temporary directory, closed when the test ends: the
// real database for tests of the layers above the store.
func OpenSQLite(tb testing.TB) store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), Config(tb, "sqlite"))
	return ready(tb, s, err)
}

// ready fails the test on err, or migrates s and closes it when the test ends.
func ready[S interface {
	Lifecycle
	Close() error
}](tb testing.TB, s S, err error) S {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	Prepare(tb, s)
	return s
}

// OpenReadOnly returns a store of type dbType over a fresh, migrated database that its
// connections may only read: the SQLite file opened read-only (mode=ro), PostgreSQL
// sessions with default_transaction_read_only, MySQL/MariaDB sessions with a read-only
// transaction default. It stands for a database that stopped taking writes.
func OpenReadOnly(tb testing.TB, dbType string) store.Store {
	tb.Helper()
	cfg := Config(tb, dbType)
	migrated, err := store.Open(context.Background(), cfg)
	ready(tb, migrated, err) // the schema first, through a writable connection
	switch dbType {
	case "sqlite":
		cfg.URL += "?mode=ro"
	case "postgresql":
		u, err := url.Parse(cfg.URL)
		if err != nil {
			tb.Fatal(err)
		}
		q := u.Query()
		q.Set("default_transaction_read_only", "on") // a run-time parameter of every session
		u.RawQuery = q.Encode()
		cfg.URL = u.String()
	case "mysql", "mariadb":
		cfg.URL = ReadOnlyMySQLDSN(tb, cfg.URL)
	}
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func requireEnv(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		tb.Skip(name + " is not set: no server to test this engine against")
	}
	return v
}

// PostgresURL creates a database for this test on the TEST_POSTGRES_DSN server (a URL of a
// user that may create databases), drops it when the test ends, and returns its URL.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	admin := requireEnv(tb, "TEST_POSTGRES_DSN")
	name := "test_" + uuid.NewString()[:8]
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to TEST_POSTGRES_DSN: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, admin); err == nil {
			_, _ = c.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
			_ = c.Close(ctx)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// MySQLDSN creates a database for this test on the TEST_MARIADB_DSN server (a MySQL or
// MariaDB user that may create databases), drops it when the test ends, and returns its DSN.
func MySQLDSN(tb testing.TB) string {
	tb.Helper()
	cfg, err := mysqldriver.ParseDSN(requireEnv(tb, "TEST_MARIADB_DSN"))
	if err != nil {
		tb.Fatalf("TEST_MARIADB_DSN: %v", err)
	}
	name := "test_" + uuid.NewString()[:8]
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if _, err := db.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := sql.Open("mysql", cfg.FormatDSN()); err == nil {
			_, _ = c.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
			_ = c.Close()
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

// ReadOnlyMySQLDSN is dsn with sessions whose transactions are read-only by default. The
// variable is transaction_read_only on MySQL 8 and MariaDB 11.1+, tx_read_only on older
// MariaDB.
func ReadOnlyMySQLDSN(tb testing.TB, dsn string) string {
	tb.Helper()
	cfg, err := mysqldriver.ParseDSN(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	variable := "transaction_read_only"
	var on int
	if err := db.QueryRowContext(context.Background(), "SELECT @@transaction_read_only").Scan(&on); err != nil {
		variable = "tx_read_only"
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params[variable] = "1"
	return cfg.FormatDSN()
}

// notMySQL8 lists SQL that MySQL 8 does not accept, or that Galera forbids, by what it is.
var notMySQL8 = map[string]*regexp.Regexp{
	"RETURNING (MariaDB/PostgreSQL only)":          regexp.MustCompile(`(?i)\bRETURNING\b`),
	"$n placeholders (PostgreSQL)":                 regexp.MustCompile(`\$\d`),
	":: casts (PostgreSQL)":                        regexp.MustCompile(`::`),
	"table locks (not on Galera)":                  regexp.MustCompile(`(?i)\bLOCK\s+TABLES?\b|\bGET_LOCK\s*\(`),
	"CREATE OR REPLACE (MariaDB only)":             regexp.MustCompile(`(?i)CREATE\s+OR\s+REPLACE`),
	"auto-increment keys (gapped on Galera)":       regexp.MustCompile(`(?i)AUTO_INCREMENT`),
	"ILIKE (PostgreSQL)":                           regexp.MustCompile(`(?i)\bILIKE\b`),
	"double-quoted identifiers (ANSI_QUOTES only)": regexp.MustCompile(`(?i)\b(FROM|INTO|UPDATE|JOIN)\s+"`),
}

// CheckMySQL8 fails the test for each construct in query (named by where) that the MySQL
// path must not send.
func CheckMySQL8(tb testing.TB, where, query string) {
	tb.Helper()
	for what, re := range notMySQL8 {
		if re.MatchString(query) {
			tb.Errorf("%s uses %s: %s", where, what, query)
		}
	}
}
