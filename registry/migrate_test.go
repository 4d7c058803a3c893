package registry_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero/registry"
	"github.com/mhero-health/mhero/registry/registrytest"
)

// TestMigrateTwoInstancesAtOnce starts several migrations on one empty database at the
// same moment, as instances starting together do: all succeed and each version is
// applied once.
func TestMigrateTwoInstancesAtOnce(t *testing.T) {
	t.Parallel()
	url := registrytest.NewEmptyDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = registry.Migrate(context.Background(), url, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migration %d: %v", i, err)
		}
	}
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var applied, distinct int
	if err := c.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied != distinct || applied == 0 {
		t.Errorf("goose_db_version has %d rows for %d versions, want each applied once", applied, distinct)
	}
	// Running again is a no-op.
	if err := registry.Migrate(context.Background(), url, nil); err != nil {
		t.Errorf("second migrate: %v", err)
	}
}

// A database URL with the pool's own settings, which serve honours in MHERO_DATABASE_URL,
// migrates too (they were once sent to PostgreSQL, which refused to connect).
func TestMigrateTakesAURLWithPoolSettings(t *testing.T) {
	t.Parallel()
	url := registrytest.NewEmptyDatabase(t) + "&pool_max_conns=7"
	if err := registry.Migrate(context.Background(), url, nil); err != nil {
		t.Fatalf("Migrate with pool_max_conns in the URL: %v", err)
	}
}
