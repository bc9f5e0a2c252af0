// Package mysql is the MySQL 8+ and MariaDB (Galera-aware) engine over go-sql-driver/mysql:
// the pools, their settings, migrations, retries and what the server's errors mean.
// With the sqlc code in ./gen it is also the store adapter (item.go).
//
// Galera rules: write transactions are retried as a whole on certification failures and
// deadlocks (1213), lock wait timeouts (1205), "node not ready" (1047) and failed commits
// (1180, a node briefly out of the primary component), with capped,
// jittered backoff; reads that must see the caller's own writes use a pool with
// wsrep_sync_wait=1 (MariaDB only); nothing takes table locks.
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/XSAM/otelsql"
	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/migrations"
	"github.com/example/my-service/internal/store/mysql/gen"
	"github.com/example/my-service/internal/store/storeerr"
	"github.com/example/my-service/internal/telemetry"
)

// Flavor is the server family: the SQL is the same, some session settings differ.
type Flavor string

// The flavors, by DB_TYPE.
const (
	MySQL   Flavor = "mysql"
	MariaDB Flavor = "mariadb"
)

// Options tune the connection pools and the retry of write transactions.
type Options struct {
	Flavor           Flavor
	MaxConns         int
	ConnMaxLifetime  time.Duration
	ConnMaxIdleTime  time.Duration
	StatementTimeout time.Duration
	Retry            RetryPolicy
	Traced           bool // every statement is a span (OpenTelemetry's global provider)
}

// Store is a MySQL or MariaDB database; it implements the service's store interfaces.
type Store struct {
	flavor  Flavor
	db      *sql.DB
	causal  *sql.DB // reads that must see this service's own writes (Galera)
	q       *gen.Queries
	qc      *gen.Queries
	retry   RetryPolicy
	retries atomic.Uint64 // transactions run again (withRetry)
}

// Open configures the pools for dsn: a driver DSN (user:pass@tcp(host:3306)/db) or a URL
// (mysql://user:pass@host:3306/db, mariadb://user:pass@host:3306/db). It does not connect.
func Open(dsn string, opts Options) (*Store, error) {
	cfg, err := sessionConfig(dsn, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{flavor: opts.Flavor, retry: opts.Retry}
	if s.db, err = openPool(cfg, opts); err != nil {
		return nil, err
	}
	s.causal = s.db
	if opts.Flavor == MariaDB {
		causal := cfg.Clone()
		causal.Params["wsrep_sync_wait"] = "1"
		if s.causal, err = openPool(causal, opts); err != nil {
			_ = s.db.Close()
			return nil, err
		}
	}
	s.q, s.qc = gen.New(s.db), gen.New(s.causal)
	return s, nil
}

// sessionConfig is the main pool's driver configuration: dsn with UTC times, the
// statement timeout and interpolated arguments.
func sessionConfig(dsn string, opts Options) (*mysql.Config, error) {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL for %s: %w", opts.Flavor, err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	// A server that says it is read-only (1290, 1792, 1836) gets its connection closed and
	// database/sql opens another: after a failover that demotes the primary, the pool then
	// reaches the new one instead of keeping sessions with the old.
	cfg.RejectReadOnly = true
	// Statements go as text with their arguments escaped in by the driver, not as
	// server-side prepared statements: one round trip instead of three and, on Galera, a
	// transaction that a conflicting replicated write aborts between two statements reports
	// 1213 to the next one and is retried. Under the prepared-statement protocol MariaDB can
	// lose that error (on the statement close, which has no reply): the rest of the
	// transaction then runs on its own, and an update the caller is told succeeded is gone.
	cfg.InterpolateParams = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	if opts.StatementTimeout > 0 {
		switch opts.Flavor {
		case MariaDB:
			cfg.Params["max_statement_time"] = strconv.FormatFloat(opts.StatementTimeout.Seconds(), 'f', 3, 64)
		default:
			cfg.Params["max_execution_time"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
		}
	}
	return cfg, nil
}

func openPool(cfg *mysql.Config, opts Options) (*sql.DB, error) {
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s connector: %w", opts.Flavor, err)
	}
	db := sql.OpenDB(connector)
	if opts.Traced {
		db = otelsql.OpenDB(connector, otelsql.WithTracerProvider(telemetry.StatementTracing()), otelsql.WithAttributes(dbSystem(opts.Flavor)),
			otelsql.WithSpanOptions(otelsql.SpanOptions{OmitConnResetSession: true, OmitRows: true}))
	}
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	db.SetConnMaxLifetime(opts.ConnMaxLifetime)
	db.SetConnMaxIdleTime(opts.ConnMaxIdleTime)
	return db, nil
}

// dbSystem is the flavor's name in spans (OpenTelemetry's db.system.name).
func dbSystem(f Flavor) attribute.KeyValue {
	if f == MariaDB {
		return semconv.DBSystemNameMariaDB
	}
	return semconv.DBSystemNameMySQL
}

// parseDSN accepts the driver's DSN form and mysql:// or mariadb:// URLs.
func parseDSN(dsn string) (*mysql.Config, error) {
	if !strings.HasPrefix(dsn, "mysql://") && !strings.HasPrefix(dsn, "mariadb://") {
		return mysql.ParseDSN(dsn)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":3306"
	}
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	for k, v := range u.Query() {
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params[k] = v[0]
	}
	return cfg, nil
}

// Ping checks that the database answers and takes writes and, on a Galera node, that it is
// synced (wsrep_ready=ON).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return err
	}
	if s.flavor != MariaDB {
		return s.checkWrites(ctx)
	}
	var on int
	if err := s.db.QueryRowContext(ctx, "SELECT @@wsrep_on").Scan(&on); err != nil || on == 0 {
		return s.checkWrites(ctx) // a server without wsrep support is not a Galera node
	}
	rows, err := s.db.QueryContext(ctx, "SHOW STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state_comment')")
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	status := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return err
		}
		status[name] = value
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := galeraReady(status["wsrep_ready"], status["wsrep_local_state_comment"]); err != nil {
		return err
	}
	return s.checkWrites(ctx)
}

// galeraReady says whether a Galera node may take the service's traffic: it is part of
// the primary component (wsrep_ready=ON) and synced with it. A joiner, a donor (blocked
// or lagging while it sends a state transfer) and a node desynced by an operator are not;
// the error, shown by /readyz, gives both states as the server reports them.
func galeraReady(ready, state string) error {
	if ready == "ON" && state == "Synced" {
		return nil
	}
	return domain.Errorf(domain.KindUnavailable, "galera node is not ready (wsrep_ready=%s, wsrep_local_state_comment=%s)", ready, state)
}

// Close closes the pools.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.causal != s.db {
		err = errors.Join(err, s.causal.Close())
	}
	return err
}

// checkWrites runs storeerr.WriteProbe: a read-only server refuses it.
func (s *Store) checkWrites(ctx context.Context) error {
	return storeerr.CheckWrites(ctx, func(ctx context.Context, query string) error {
		_, err := s.db.ExecContext(ctx, query)
		return err
	}, classify)
}

// Stats reports the main pool's statistics (for the metrics).
func (s *Store) Stats() sql.DBStats { return s.db.Stats() }

// Retries reports how many times a transaction was run again because the server said
// another try may succeed (for the metrics).
func (s *Store) Retries() uint64 { return s.retries.Load() }

// Migrate applies the embedded migrations (no table locks: goose keeps its version table
// with plain statements).
func (s *Store) Migrate(ctx context.Context) error {
	return migrations.Up(ctx, s.db, goose.DialectMySQL, "mysql")
}

// inTx runs fn in a transaction, retried as a whole (RetryPolicy) when MySQL or Galera says
// the transaction may succeed on another try. Keep side effects out of fn.
func (s *Store) inTx(ctx context.Context, fn func(q *gen.Queries) error) error {
	return withRetry(ctx, s.retry, &s.retries, func(ctx context.Context) (err error) {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				_ = tx.Rollback()
			}
		}()
		if err := fn(s.q.WithTx(tx)); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// mapErr gives database errors their domain kinds.
func mapErr(err error, what string) error { return storeerr.Map(err, what, classify(err)) }

// DeleteExpiredIdempotencyRecord deletes the idempotency record of key if it was created
// before expiredBefore (a record a concurrent create has just written stays).
func (s *Store) DeleteExpiredIdempotencyRecord(ctx context.Context, key string, expiredBefore time.Time) error {
	err := withRetry(ctx, s.retry, &s.retries, func(ctx context.Context) error {
		_, err := s.q.DeleteExpiredIdempotencyRecord(ctx, gen.DeleteExpiredIdempotencyRecordParams{RecordKey: key, ExpiredBefore: expiredBefore})
		return err
	})
	return mapErr(err, "idempotency key")
}

// DeleteExpiredIdempotencyRecords deletes up to limit idempotency records created before
// expiredBefore, oldest first, and returns how many it deleted.
func (s *Store) DeleteExpiredIdempotencyRecords(ctx context.Context, expiredBefore time.Time, limit int) (int64, error) {
	var n int64
	err := withRetry(ctx, s.retry, &s.retries, func(ctx context.Context) (err error) {
		n, err = s.q.DeleteExpiredIdempotencyRecords(ctx, gen.DeleteExpiredIdempotencyRecordsParams{
			CreatedAt: expiredBefore, Limit: int32(min(limit, 1<<20)), //nolint:gosec // bounded above
		})
		return err
	})
	return n, mapErr(err, "expired idempotency records")
}

func classify(err error) storeerr.Class {
	class := storeerr.Other
	var me *mysql.MySQLError
	switch {
	case errors.Is(err, sql.ErrNoRows):
		class = storeerr.NoRows
	case errors.As(err, &me):
		switch me.Number {
		case 1062: // ER_DUP_ENTRY
			class = storeerr.Duplicate
		case 1213, 1205, 1047: // deadlock/certification, lock wait, node not ready (after the retries)
			class = storeerr.Busy
		case 1290, 1792, 1836, // read-only server, transaction or mode
			1040, 1203, // too many connections (server, user)
			1053, 1927, // server shutting down, connection killed
			1021, 1041, // disk full, out of memory
			1180,       // error during commit (Galera: not in the primary component), after the retries
			1969, 3024: // statement timeout (MariaDB max_statement_time, MySQL max_execution_time)
			class = storeerr.Unavailable
		case 1366, 1406, 1264: // incorrect string value, data too long, out of range
			class = storeerr.Rejected
		}
	case errors.Is(err, mysql.ErrInvalidConn), storeerr.ConnectionLost(err):
		class = storeerr.Unavailable
	}
	return class
}
