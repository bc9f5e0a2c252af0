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
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/example/my-service/internal/store/migrations"
	"github.com/example/my-service/internal/store/postgres/gen"
	"github.com/example/my-service/internal/store/storeerr"
)

// Options tune the connection pool.
type Options struct {
	MaxConns         int32
	MinConns         int32
	ConnMaxLifetime  time.Duration
	ConnMaxIdleTime  time.Duration
	StatementTimeout time.Duration
}

// Store is a PostgreSQL database; it implements the service's store interfaces.
type Store struct {
	pool *pgxpool.Pool
	db   *sql.DB // database/sql over the same pool (migrations)
	q    *gen.Queries
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
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgresql pool: %w", err)
	}
	return &Store{pool: pool, db: stdlib.OpenDBFromPool(pool), q: gen.New(pool)}, nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Close closes the pool.
func (s *Store) Close() error {
	err := s.db.Close()
	s.pool.Close()
	return err
}

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
		switch pe.Code {
		case "23505": // unique_violation
			class = storeerr.Duplicate
		case "57014", "40001", "40P01", "53300", "57P03": // canceled, serialization, deadlock, too many connections, starting up
			class = storeerr.Busy
		}
	case pgconn.SafeToRetry(err):
		class = storeerr.Busy
	}
	return class
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
