// Package migrations embeds the schema migrations, one directory per SQL dialect. The
// same files are sqlc's schema input (sqlc.yaml).
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// For returns the migrations of one dialect directory ("sqlite", "postgres").
func For(dialect string) (fs.FS, error) {
	sub, err := fs.Sub(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", dialect, err)
	}
	return sub, nil
}
