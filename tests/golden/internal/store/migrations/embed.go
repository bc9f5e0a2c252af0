// Package migrations embeds the schema migrations, one directory per SQL dialect. The
// same files are sqlc's schema input (sqlc.yaml).
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed postgres/*.sql mysql/*.sql sqlite/*.sql
var files embed.FS

// For returns the migrations of one dialect directory (postgres, mysql, sqlite).
func For(dialect string) (fs.FS, error) {
	sub, err := fs.Sub(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", dialect, err)
	}
	return sub, nil
}

// Up applies the migrations of one dialect directory to db with goose.
func Up(ctx context.Context, db *sql.DB, dialect goose.Dialect, dir string, opts ...goose.ProviderOption) error {
	fsys, err := For(dir)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", dir, err)
	}
	return nil
}
