// Package sqlite is the SQLite engine (modernc.org/sqlite: pure Go, no cgo): the
// connection settings, migrations and what SQLite's errors mean. With the sqlc
// code in ./gen it is also the store adapter (item.go).
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/XSAM/otelsql"
	"github.com/pressly/goose/v3"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/example/my-service/internal/store/migrations"
	"github.com/example/my-service/internal/store/sqlite/gen"
	"github.com/example/my-service/internal/store/storeerr"
	"github.com/example/my-service/internal/telemetry"
)

// Options tune the connection pool.
type Options struct {
	MaxConns        int
	ConnMaxLifetime time.Duration
	BusyTimeout     time.Duration
	Traced          bool // every statement is a span (OpenTelemetry's global provider)
}

// Store is a SQLite database; it implements the service's store interfaces.
type Store struct {
	db        *sql.DB
	connector writable
	q         *gen.Queries
}

// Open opens (creating if needed) the SQLite database at dsn, a file path or a "file:"
// URI. It sets WAL mode, a busy timeout and foreign keys on every connection, and refuses
// connections that cannot write (see writable).
func Open(dsn string, opts Options) (*Store, error) {
	base, err := sqlite.NewConnector(withPragmas(dsn, opts.BusyTimeout))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	connector := writable{base}
	db := sql.OpenDB(connector)
	if opts.Traced {
		db = otelsql.OpenDB(connector, otelsql.WithTracerProvider(telemetry.StatementTracing()), otelsql.WithAttributes(semconv.DBSystemNameSQLite),
			otelsql.WithSpanOptions(otelsql.SpanOptions{OmitConnResetSession: true, OmitRows: true}))
	}
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	db.SetConnMaxLifetime(opts.ConnMaxLifetime)
	return &Store{db: db, connector: connector, q: gen.New(db)}, nil
}

// writable opens the pool's connections. SQLite opens a file it may not write (the file or
// its directory made read-only) read-only, without an error, and the pool would keep that
// connection for its whole lifetime: its writes fail long after the file is writable again.
// So a new connection must show that it can write; one that cannot serves the request that
// opened it (reads work on a read-only file, writes get SQLite's error) and is then
// discarded (oneUse). The pool keeps only connections that can write, and the first one
// opened after the fault ends works.
type writable struct{ driver.Connector }

// Connect implements driver.Connector.
func (c writable) Connect(ctx context.Context) (driver.Conn, error) {
	conn, _, err := c.open(ctx)
	return conn, err
}

// open opens a connection and checks that it can write: cannotWrite says why not, and then
// conn is a oneUse.
func (c writable) open(ctx context.Context) (conn driver.Conn, cannotWrite, err error) {
	if conn, err = c.Connector.Connect(ctx); err != nil {
		return nil, nil, err
	}
	sc, ok := conn.(sqliteConn)
	if !ok {
		_ = conn.Close()
		return nil, nil, errors.New("sqlite: the driver's connections lack methods this package uses")
	}
	if cannotWrite = checkWrites(ctx, sc); cannotWrite == nil {
		return sc, nil, nil
	}
	return oneUse{sc}, cannotWrite, nil
}

// sqliteConn is what database/sql and checkWrites use of a modernc.org/sqlite connection.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	IsReadOnly(schema string) (bool, error) // sqlite3_db_readonly
}

// oneUse is a connection that database/sql discards when it is given back, instead of
// keeping it in the pool.
type oneUse struct{ sqliteConn }

// IsValid implements driver.Validator: false discards the connection.
func (oneUse) IsValid() bool { return false }

// ResetSession implements driver.SessionResetter (before a reuse that IsValid prevents).
func (oneUse) ResetSession(context.Context) error { return driver.ErrBadConn }

// errReadOnly says that SQLite opened the database file read-only.
var errReadOnly = errors.New("the database file is open read-only")

// checkWrites shows that conn can write, or says why not. SQLite opens a file it may not
// write read-only, which sqlite3_db_readonly reports (BEGIN IMMEDIATE on it is a read
// transaction, not an error). It opens the write-ahead log apart from the file, so the file
// can be writable and the log not: beginning a write transaction shows that
// (SQLITE_READONLY). A check that finds another writer's lock held past the busy timeout
// has not shown that conn can write either.
func checkWrites(ctx context.Context, conn sqliteConn) error {
	switch readOnly, err := conn.IsReadOnly("main"); {
	case err != nil:
		return err
	case readOnly:
		return errReadOnly
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE", nil); err != nil {
		return err
	}
	_, err := conn.ExecContext(ctx, "ROLLBACK", nil)
	return err
}

func withPragmas(dsn string, busy time.Duration) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%s%s_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_txlock=immediate",
		dsn, sep, busy.Milliseconds())
}

// Ping checks that a new connection can be opened for writing. The pool's connections
// stay open and keep working when the file or its directory turns read-only or goes away;
// the next connection the pool opens is the one that fails, so readiness opens one.
func (s *Store) Ping(ctx context.Context) error {
	conn, cannotWrite, err := s.connector.open(ctx)
	if err != nil {
		return err
	}
	_ = conn.Close()
	switch class := classify(cannotWrite); {
	case cannotWrite == nil, class == storeerr.Busy: // other writers held the lock all along: busy, not broken
		return nil
	case class == storeerr.Unavailable:
		return storeerr.RefusesWrites(cannotWrite)
	default:
		return cannotWrite
	}
}

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// Stats reports the pool's statistics (for the metrics).
func (s *Store) Stats() sql.DBStats { return s.db.Stats() }

// Retries is 0: write transactions wait for SQLite's write lock instead of failing and
// being retried.
func (s *Store) Retries() uint64 { return 0 }

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
	case errors.Is(err, errReadOnly):
		class = storeerr.Unavailable
	case errors.As(err, &se):
		// Codes are extended (SQLITE_BUSY_TIMEOUT, SQLITE_IOERR_WRITE, ...); the low byte is
		// the primary code.
		code := se.Code()
		switch code & 0xff {
		case sqlite3.SQLITE_CONSTRAINT:
			if code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || code == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
				class = storeerr.Duplicate
			}
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED: // the busy timeout ran out
			class = storeerr.Busy
		case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PERM:
			class = storeerr.Unavailable // the file cannot be written: read-only, gone, failing or full
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
