package outbox

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the outbox's versioned SQL migrations (goose format). Apply them
// after the registry's, tracked in their own table:
//
//	registry.MigrateFS(ctx, url, outbox.Migrations(), "goose_outbox_version", log)
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}
