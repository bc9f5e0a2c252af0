// Package store opens the database named by DB_TYPE and returns the adapter for it. It is
// the one place that knows which engines exist.
package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/example/my-service/internal/config"
	"github.com/example/my-service/internal/service"
	"github.com/example/my-service/internal/store/mysql"
	"github.com/example/my-service/internal/store/postgres"
	"github.com/example/my-service/internal/store/sqlite"
)

// Store is a database adapter: the service's store interfaces plus lifecycle.
type Store interface {
	service.ItemStore
	// DeleteExpiredIdempotencyRecords deletes up to limit idempotency records older than
	// IDEMPOTENCY_TTL, oldest first, and returns how many it deleted. Lookups already treat
	// expired records as absent; this keeps the table from growing.
	DeleteExpiredIdempotencyRecords(ctx context.Context, limit int) (int64, error)
	Ping(ctx context.Context) error
	Migrate(ctx context.Context) error
	Stats() sql.DBStats
	Close() error
}

// Types lists the DB_TYPE values this build accepts (the databases compiled in).
var Types = []string{"postgresql", "mysql", "mariadb", "sqlite"}

// Open returns the adapter for cfg.Type. It does
// not wait for a database server: Ping and Migrate do, so a service can start while its
// database is still coming up.
func Open(ctx context.Context, cfg config.Database) (Store, error) {
	return openEngine(ctx, cfg)
}

// openEngine opens the database engine named by cfg.Type.
func openEngine(ctx context.Context, cfg config.Database) (Store, error) {
	switch cfg.Type {
	case "postgresql":
		return postgres.Open(ctx, cfg.URL, postgres.Options{
			MaxConns: cfg.MaxConns, MinConns: cfg.MinConns,
			ConnMaxLifetime: cfg.ConnMaxLifetime, ConnMaxIdleTime: cfg.ConnMaxIdleTime,
			StatementTimeout: cfg.StatementTimeout, IdempotencyTTL: cfg.IdempotencyTTL,
		})
	case "mysql", "mariadb":
		return mysql.Open(cfg.URL, mysql.Options{
			Flavor: mysql.Flavor(cfg.Type), MaxConns: int(cfg.MaxConns),
			ConnMaxLifetime: cfg.ConnMaxLifetime, ConnMaxIdleTime: cfg.ConnMaxIdleTime,
			StatementTimeout: cfg.StatementTimeout,
			Retry:            mysql.RetryPolicy{Attempts: cfg.RetryAttempts, Base: cfg.RetryBase, Cap: cfg.RetryCap},
			IdempotencyTTL:   cfg.IdempotencyTTL,
		})
	case "sqlite":
		return sqlite.Open(cfg.URL, sqlite.Options{
			MaxConns: int(cfg.MaxConns), ConnMaxLifetime: cfg.ConnMaxLifetime,
			BusyTimeout: cfg.StatementTimeout, IdempotencyTTL: cfg.IdempotencyTTL,
		})
	default:
		return nil, fmt.Errorf("DB_TYPE %q is not supported by this build: use one of %s", cfg.Type, strings.Join(Types, ", "))
	}
}
