// Package store opens the database named by DB_TYPE and returns the adapter for it. It is
// the one place that knows which engines exist.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/store/mysql"
	"github.com/example/my-service/internal/store/postgres"
	"github.com/example/my-service/internal/store/sqlite"
)

// Store is what the service runs on: the service's store interfaces, with idempotency
// records that expire (idempotency.go), plus lifecycle. Open returns it.
type Store interface {
	service.ItemStore
	// SweepIdempotencyRecords deletes up to limit idempotency records older than
	// IDEMPOTENCY_TTL, oldest first, and returns how many it deleted.
	SweepIdempotencyRecords(ctx context.Context, limit int) (int64, error)
	Ping(ctx context.Context) error
	Migrate(ctx context.Context) error
	Stats() sql.DBStats
	// Retries counts the transactions run again after a retryable failure (deadlock,
	// Galera certification failure, ...), for the metrics.
	Retries() uint64
	Close() error
}

// Adapter is what each engine package implements: the service's store interfaces,
// deletes of idempotency records by age, and lifecycle. The store contract
// (internal/store/storetest) holds every one to the same behaviour.
type Adapter interface {
	service.ItemStore
	// DeleteExpiredIdempotencyRecord deletes the record of key if it was created before
	// expiredBefore.
	DeleteExpiredIdempotencyRecord(ctx context.Context, key string, expiredBefore time.Time) error
	// DeleteExpiredIdempotencyRecords deletes up to limit records created before
	// expiredBefore, oldest first, and returns how many it deleted.
	DeleteExpiredIdempotencyRecords(ctx context.Context, expiredBefore time.Time, limit int) (int64, error)
	Ping(ctx context.Context) error
	Migrate(ctx context.Context) error
	Stats() sql.DBStats
	// Retries counts the transactions run again after a retryable failure (deadlock,
	// Galera certification failure, ...), for the metrics.
	Retries() uint64
	Close() error
}

// Types lists the DB_TYPE values this build accepts (the databases compiled in).
var Types = []string{"postgresql", "mysql", "mariadb", "sqlite"}

// Open returns the store for cfg.Type: its adapter, with idempotency records that expire
// after cfg.IdempotencyTTL.
func Open(ctx context.Context, cfg config.Database) (Store, error) {
	a, err := OpenAdapter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return withIdempotencyTTL(a, cfg.IdempotencyTTL), nil
}

// OpenAdapter returns the adapter for cfg.Type. It does
// not wait for a database server: Ping and Migrate do, so a service can start while its
// database is still coming up.
func OpenAdapter(ctx context.Context, cfg config.Database) (Adapter, error) {
	return openEngine(ctx, cfg)
}

// openEngine opens the database engine named by cfg.Type.
func openEngine(ctx context.Context, cfg config.Database) (Adapter, error) {
	switch cfg.Type {
	case "postgresql":
		return postgres.Open(ctx, cfg.URL, postgres.Options{
			MaxConns: cfg.MaxConns, MinConns: cfg.MinConns,
			ConnMaxLifetime: cfg.ConnMaxLifetime, ConnMaxIdleTime: cfg.ConnMaxIdleTime,
			StatementTimeout: cfg.StatementTimeout, Traced: cfg.Traced,
		})
	case "mysql", "mariadb":
		return mysql.Open(cfg.URL, mysql.Options{
			Flavor: mysql.Flavor(cfg.Type), MaxConns: int(cfg.MaxConns),
			ConnMaxLifetime: cfg.ConnMaxLifetime, ConnMaxIdleTime: cfg.ConnMaxIdleTime,
			StatementTimeout: cfg.StatementTimeout,
			Retry:            mysql.RetryPolicy{Attempts: cfg.RetryAttempts, Base: cfg.RetryBase, Cap: cfg.RetryCap},
			Traced:           cfg.Traced,
		})
	case "sqlite":
		return sqlite.Open(cfg.URL, sqlite.Options{
			MaxConns: int(cfg.MaxConns), ConnMaxLifetime: cfg.ConnMaxLifetime,
			BusyTimeout: cfg.StatementTimeout, Traced: cfg.Traced,
		})
	default:
		return nil, fmt.Errorf("DB_TYPE %q is not supported by this build: use one of %s", cfg.Type, strings.Join(Types, ", "))
	}
}
