// Package sqlite is the SQLite engine (modernc.org/sqlite: pure Go, no cgo): the
// connection settings, migrations and what SQLite's errors mean. With the sqlc
// code in ./gen it is also the store adapter (item.go).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/example/my-service/internal/store/migrations"
	"github.com/example/my-service/internal/store/sqlite/gen"
	"github.com/example/my-service/internal/store/storeerr"
)

// Options tune the connection pool.
type Options struct {
	MaxConns        int
	ConnMaxLifetime time.Duration
	BusyTimeout     time.Duration
}

// Store is a SQLite database; it implements the service's store interfaces.
type Store struct {
	db *sql.DB
	q  *gen.Queries
}

// Open opens (creating if needed) the SQLite database at dsn, a file path or a "file:"
// URI. It sets WAL mode, a busy timeout and foreign keys on every connection.
func Open(dsn string, opts Options) (*Store, error) {
	db, err := sql.Open("sqlite", withPragmas(dsn, opts.BusyTimeout))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	db.SetConnMaxLifetime(opts.ConnMaxLifetime)
	return &Store{db: db, q: gen.New(db)}, nil
}

func withPragmas(dsn string, busy time.Duration) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%s%s_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_txlock=immediate",
		dsn, sep, busy.Milliseconds())
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// Stats reports the pool's statistics (for the metrics).
func (s *Store) Stats() sql.DBStats { return s.db.Stats() }

// Migrate applies the embedded migrations.
func (s *Store) Migrate(ctx context.Context) error {
	return migrations.Up(ctx, s.db, goose.DialectSQLite3, "sqlite")
}

func classify(err error) storeerr.Class {
	class := storeerr.Other
	var se *sqlite.Error
	switch {
	case errors.Is(err, sql.ErrNoRows):
		class = storeerr.NoRows
	case errors.As(err, &se):
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			class = storeerr.Duplicate
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			class = storeerr.Busy
		}
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
		ExpiredBefore: expiredBefore, BatchSize: int64(limit),
	})
	return n, mapErr(err, "expired idempotency records")
}
