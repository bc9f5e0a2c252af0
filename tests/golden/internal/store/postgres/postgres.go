// Package postgres is the PostgreSQL engine: the pgx pool, its settings, migrations and
// what the server's errors mean. With the sqlc code in ./gen it is also the
// store adapter (item.go).
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/migrations"
	"github.com/example/my-service/internal/store/postgres/gen"
	"github.com/example/my-service/internal/store/storeerr"
	"github.com/example/my-service/internal/telemetry"
)

// Options tune the connection pool.
type Options struct {
	MaxConns         int32
	MinConns         int32
	ConnMaxLifetime  time.Duration
	ConnMaxIdleTime  time.Duration
	StatementTimeout time.Duration
	Traced           bool // every statement (and pool wait) is a span (OpenTelemetry's global provider)
}

// Store is a PostgreSQL database; it implements the service's store interfaces.
type Store struct {
	pool *pgxpool.Pool
	db   *sql.DB // database/sql over the same pool (migrations)
	q    *gen.Queries
	// refused is set while the write probe finds the database refusing writes (see Ping).
	refused atomic.Bool
}

// Open configures a pool for dsn (a postgres:// URL or key=value string). It does not
// connect: Ping tells whether the database answers.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL for postgresql: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	cfg.MinConns = opts.MinConns
	cfg.MaxConnLifetime = opts.ConnMaxLifetime
	cfg.MaxConnIdleTime = opts.ConnMaxIdleTime
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	cfg.ConnConfig.OnPgError = endBrokenSession
	if opts.Traced {
		cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(telemetry.StatementTracing()))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgresql pool: %w", err)
	}
	return &Store{pool: pool, db: stdlib.OpenDBFromPool(pool), q: gen.New(pool)}, nil
}

// endBrokenSession is pgx's handler of the errors the server sends: false closes the
// session, and the pool replaces a closed session with a new one. It keeps pgx's rule (a
// FATAL error, such as an administrator terminating the backend, ends the session) and also
// ends a session that is read-only (25006): a session keeps the read-only default it began
// with, and a standby's sessions stay read-only, so only a new session can reach a
// writable primary again once the database takes writes.
func endBrokenSession(_ *pgconn.PgConn, pe *pgconn.PgError) bool {
	return !strings.EqualFold(pe.Severity, "FATAL") && pe.Code != "25006"
}

// Ping checks that the database answers and takes writes (storeerr.WriteProbe). The first
// check that passes after the database refused writes replaces every session in the pool
// (Reset): a session that began while the database was read-only stays read-only, and one
// that has not tried to write since would fail the next write it serves.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return err
	}
	err := storeerr.CheckWrites(ctx, func(ctx context.Context, query string) error {
		_, err := s.pool.Exec(ctx, query)
		return err
	}, classify)
	switch {
	case err == nil && s.refused.Swap(false):
		s.pool.Reset()
	case domain.IsKind(err, domain.KindUnavailable):
		s.refused.Store(true)
	}
	return err
}

// Close closes the pool.
func (s *Store) Close() error {
	err := s.db.Close()
	s.pool.Close()
	return err
}

// Retries is 0: transactions are not retried (at READ COMMITTED they do not fail with
// serialization errors; a deadlock is reported as busy, 503).
func (s *Store) Retries() uint64 { return 0 }

// Stats reports the pool's statistics in database/sql's terms (for the metrics).
func (s *Store) Stats() sql.DBStats {
	st := s.pool.Stat()
	return sql.DBStats{
		MaxOpenConnections: int(st.MaxConns()),
		OpenConnections:    int(st.TotalConns()),
		InUse:              int(st.AcquiredConns()),
		Idle:               int(st.IdleConns()),
		WaitCount:          st.EmptyAcquireCount(),
		WaitDuration:       st.EmptyAcquireWaitTime(),
	}
}

// Migrate applies the embedded migrations under a session advisory lock, so replicas
// starting together migrate once.
func (s *Store) Migrate(ctx context.Context) error {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	return migrations.Up(ctx, s.db, goose.DialectPostgres, "postgres", goose.WithSessionLocker(locker))
}

func classify(err error) storeerr.Class {
	class := storeerr.Other
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.Is(err, sql.ErrNoRows):
		class = storeerr.NoRows
	case errors.As(err, &pe):
		switch code := pe.Code; {
		case code == "23505": // unique_violation
			class = storeerr.Duplicate
		case code == "57014", code == "40001", code == "40P01": // statement timeout, serialization failure, deadlock
			class = storeerr.Busy
		case unavailable(code):
			class = storeerr.Unavailable
		case strings.HasPrefix(code, "22"): // data exception: bad encoding (a NUL), too long, out of range
			class = storeerr.Rejected
		}
	case pgconn.SafeToRetry(err):
		class = storeerr.Busy
	case storeerr.ConnectionLost(err), errors.As(err, new(*pgconn.ConnectError)), errors.Is(err, pgconn.ErrConnClosed):
		class = storeerr.Unavailable
	}
	return class
}

// unavailable reports whether a SQLSTATE says the database cannot take the work now:
// 25006 read_only_sql_transaction (a read-only database or a standby), class 08 connection
// exceptions, class 53 insufficient resources (disk full, out of memory, too many
// connections), 57P01-57P05 (administrator or crash shutdown, cannot connect now, database
// dropped, idle session timeout) and 58030 (I/O error).
func unavailable(code string) bool {
	return code == "25006" || code == "58030" ||
		strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "57P")
}

// mapErr gives database errors their domain kinds.
func mapErr(err error, what string) error { return storeerr.Map(err, what, classify(err)) }

// DeleteExpiredIdempotencyRecord deletes the idempotency record of key if it was created
// before expiredBefore (a record a concurrent create has just written stays).
func (s *Store) DeleteExpiredIdempotencyRecord(ctx context.Context, key string, expiredBefore time.Time) error {
	_, err := s.q.DeleteExpiredIdempotencyRecord(ctx, gen.DeleteExpiredIdempotencyRecordParams{RecordKey: key, ExpiredBefore: expiredBefore})
	return mapErr(err, "idempotency key")
}

// DeleteExpiredIdempotencyRecords deletes up to limit idempotency records created before
// expiredBefore, oldest first, and returns how many it deleted.
func (s *Store) DeleteExpiredIdempotencyRecords(ctx context.Context, expiredBefore time.Time, limit int) (int64, error) {
	n, err := s.q.DeleteExpiredIdempotencyRecords(ctx, gen.DeleteExpiredIdempotencyRecordsParams{
		ExpiredBefore: expiredBefore, BatchSize: int32(min(limit, 1<<20)), //nolint:gosec // bounded above
	})
	return n, mapErr(err, "expired idempotency records")
}
