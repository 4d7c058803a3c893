package reports

import (
	"embed"
	"io/fs"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the reports' versioned SQL migrations (goose format). Apply them
// after the registry's (reports point at its workers and facilities), tracked in their own
// table:
//
//	registry.MigrateFS(ctx, url, reports.Migrations(), "goose_reports_version", log)
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}
