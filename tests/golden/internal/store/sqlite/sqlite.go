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

	"github.com/example/my-service/internal/domain"
	"github.com/example/my-service/internal/store/migrations"
	"github.com/example/my-service/internal/store/sqlite/gen"
	"github.com/example/my-service/internal/store/storeerr"
)

// Options tune the connection pool; IdempotencyTTL is how long an idempotency record is
// replayed.
type Options struct {
	MaxConns        int
	ConnMaxLifetime time.Duration
	BusyTimeout     time.Duration
	IdempotencyTTL  time.Duration
}

// Store is a SQLite database; it implements the service's store interfaces.
type Store struct {
	db  *sql.DB
	q   *gen.Queries
	ttl time.Duration // of idempotency records
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
	return &Store{db: db, q: gen.New(db), ttl: opts.IdempotencyTTL}, nil
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

// DeleteExpiredIdempotencyRecords deletes up to limit idempotency records older than the
// TTL, oldest first, and returns how many it deleted.
func (s *Store) DeleteExpiredIdempotencyRecords(ctx context.Context, limit int) (int64, error) {
	n, err := s.q.DeleteExpiredIdempotencyRecords(ctx, gen.DeleteExpiredIdempotencyRecordsParams{
		ExpiredBefore: s.expiredBefore(), BatchSize: int64(limit),
	})
	return n, mapErr(err, "expired idempotency records")
}

// checkExpiry returns nil for an idempotency record made at createdAt that is still live.
// An expired one is deleted, unless a concurrent create has replaced it since, and is
// reported as KindNotFound: to the service the key is unused.
func (s *Store) checkExpiry(ctx context.Context, key string, createdAt time.Time) error {
	before := s.expiredBefore()
	if !createdAt.Before(before) {
		return nil
	}
	if _, err := s.q.DeleteIdempotencyRecordIfExpired(ctx, gen.DeleteIdempotencyRecordIfExpiredParams{
		RecordKey: key, ExpiredBefore: before,
	}); err != nil {
		return mapErr(err, "idempotency key")
	}
	return domain.Errorf(domain.KindNotFound, "idempotency key not found")
}

// expiredBefore is the creation time before which idempotency records have expired. It
// is UTC, as the records' times are: SQLite compares them as text.
func (s *Store) expiredBefore() time.Time { return time.Now().UTC().Add(-s.ttl) }
