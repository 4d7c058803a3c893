package registry

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the registry's versioned SQL migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrations, "migrations")
	return sub
}

// Migrate applies the registry's migrations to the database at url. It holds a PostgreSQL
// advisory lock for the duration, so several instances starting at once apply each
// migration exactly once.
func Migrate(ctx context.Context, url string, log *slog.Logger) error {
	return MigrateFS(ctx, url, Migrations(), "goose_db_version", log)
}

// MigrateFS applies the migrations in fsys, tracking versions in table. Packages that own
// further tables (reports, broadcasts) call it with their own folder and table.
func MigrateFS(ctx context.Context, url string, fsys fs.FS, table string, log *slog.Logger) error {
	// Read the URL as the server's pool does, so that pool settings in it (pool_max_conns,
	// which serve honours) are taken as such rather than sent to PostgreSQL as run-time
	// parameters it refuses.
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker), goose.WithTableName(table))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	for _, r := range results {
		if log != nil {
			log.Info("migration applied", "table", table, "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
		}
	}
	return nil
}
