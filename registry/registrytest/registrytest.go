// Package registrytest gives tests a fresh, migrated PostgreSQL database of their own and
// a Redis-protocol key prefix of their own, on the real servers on loopback.
package registrytest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/reports"
	"github.com/mhero-health/mhero/sms"
)

// DefaultDatabaseURL is the admin connection used to create test databases when
// MHERO_TEST_DATABASE_URL is not set.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL returns the connection string tests use to create their databases.
func AdminURL() string {
	if u := os.Getenv("MHERO_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDatabaseURL
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// withDatabase returns base with its database name replaced.
func withDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// template migrates a template database once per test binary. Its name carries a hash of
// the migrations, so a changed schema never reuses a stale template and every test binary
// of the same schema shares one; an advisory lock keeps concurrent binaries from racing to
// create it. It is kept between runs, like a build cache.
func template(tb testing.TB) string {
	tb.Helper()
	templateOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		templateName, templateErr = migrationsHash()
		if templateErr != nil {
			return
		}
		templateName = "mhero_tpl_" + templateName
		admin, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			templateErr = fmt.Errorf("connect PostgreSQL at %s (run make deps): %w", redact(AdminURL()), err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(7261001)`); err != nil {
			templateErr = err
			return
		}
		defer admin.Exec(context.Background(), `SELECT pg_advisory_unlock(7261001)`) //nolint:errcheck
		var ready bool
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, templateName).Scan(&ready); err != nil {
			templateErr = err
			return
		}
		if ready {
			return
		}
		// A half-made template from an interrupted run is not marked; start it again.
		if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+templateName+` WITH (FORCE)`); err != nil {
			templateErr = err
			return
		}
		if _, err := admin.Exec(ctx, `CREATE DATABASE `+templateName); err != nil {
			templateErr = fmt.Errorf("create template database: %w", err)
			return
		}
		u, err := withDatabase(AdminURL(), templateName)
		if err != nil {
			templateErr = err
			return
		}
		for _, sc := range schemas() {
			if err := registry.MigrateFS(ctx, u, sc.fsys, sc.table, nil); err != nil {
				templateErr = err
				return
			}
		}
		_, templateErr = admin.Exec(ctx, `ALTER DATABASE `+templateName+` WITH is_template true`)
	})
	if templateErr != nil {
		tb.Fatalf("registrytest: %v", templateErr)
	}
	return templateName
}

// schemas are every package's migrations, in the order serve applies them (see
// cmd/mhero's migrateAll).
func schemas() []struct {
	table string
	fsys  fs.FS
} {
	return []struct {
		table string
		fsys  fs.FS
	}{
		{"goose_db_version", registry.Migrations()},
		{"goose_outbox_version", outbox.Migrations()},
		{"goose_reports_version", reports.Migrations()},
		{"goose_sms_version", sms.Migrations()},
	}
}

// migrationsHash names the schema: a short hash of every migration file.
func migrationsHash() (string, error) {
	h := sha256.New()
	for _, sc := range schemas() {
		err := fs.WalkDir(sc.fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(sc.fsys, path)
			h.Write([]byte(sc.table + "/" + path))
			h.Write(b)
			return err
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// NewEmptyDatabase creates a database with no schema at all (for migration tests), drops
// it when the test ends, and returns its URL.
func NewEmptyDatabase(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs PostgreSQL; skipped with -short")
	}
	return createDatabase(tb, "template0")
}

// NewDatabase creates a fresh migrated database for the test, drops it when the test
// ends, and returns its URL. A test that cannot reach PostgreSQL fails, never skips,
// unless run with -short.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs PostgreSQL; skipped with -short")
	}
	return createDatabase(tb, template(tb))
}

func createDatabase(tb testing.TB, tpl string) string {
	tb.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("connect PostgreSQL (run make deps): %v", err)
	}
	defer admin.Close(ctx)
	name := "mhero_t_" + randHex(8)
	// CREATE DATABASE ... TEMPLATE fails if another session is using the template at that
	// instant (a sibling test creating its copy); retry briefly.
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+tpl)
		if err == nil || attempt == 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		// DROP DATABASE waits for a checkpoint: after a benchmark's million rows on a busy
		// disk that takes more than a few seconds.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			tb.Errorf("drop test database: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
	u, err := withDatabase(AdminURL(), name)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// NewDB returns a pool on a fresh migrated database, closed when the test ends.
func NewDB(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	u := NewDatabase(tb)
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	// As the server's pool (cmd/mhero openDB): code that holds a transaction while a
	// store it calls takes another connection must not run out at the default of 4.
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	tb.Cleanup(pool.Close) // runs before the DROP registered earlier (cleanups are LIFO)
	return pool
}

// NewStore returns a registry store on a fresh database, reading national numbers as
// Liberian (the demo country).
func NewStore(tb testing.TB) *registry.Store {
	tb.Helper()
	return registry.NewStore(NewDB(tb), "LR", nil)
}

// ValkeyURL returns the Redis-protocol server tests use.
func ValkeyURL() string {
	if u := os.Getenv("MHERO_TEST_VALKEY_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// KeyPrefix returns a Valkey key prefix unique to this test, so packages and tests can
// run in parallel on one server.
func KeyPrefix(tb testing.TB) string {
	return "t:" + strings.ReplaceAll(tb.Name(), " ", "_") + ":" + randHex(4) + ":"
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}
