package outbox_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero/outbox"
	"github.com/mhero-health/mhero/registry/registrytest"
)

// newDB returns a pool on a fresh database with every migration applied; params are
// extra connection parameters.
func newDB(tb testing.TB, params string) *pgxpool.Pool {
	tb.Helper()
	u := registrytest.NewDatabase(tb)
	ctx := context.Background()
	if params != "" {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + params
	}
	db, err := pgxpool.New(ctx, u)
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	tb.Cleanup(db.Close)
	return db
}

func newStore(tb testing.TB) (*outbox.Store, *pgxpool.Pool) {
	tb.Helper()
	db := newDB(tb, "")
	return outbox.NewStore(db, nil), db
}

// count runs a counting query.
func count(tb testing.TB, db *pgxpool.Pool, sql string, args ...any) int {
	tb.Helper()
	var n int
	if err := db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return n
}
