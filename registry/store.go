// Package registry is the health-worker registry in PostgreSQL: the location tree,
// facilities, cadres, skills and workers that iHRIS holds and mhero targets by, plus the
// API keys and audit log that say who may change it and who did. It imports iHRIS
// exports (CSV and FHIR mCSD bundles) and answers targeting queries.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mhero-health/mhero"
)

// Store is the registry's PostgreSQL adapter. It is safe for concurrent use.
type Store struct {
	db *pgxpool.Pool
	// Country is the default region for national-format phone numbers ("LR").
	Country string
	Log     *slog.Logger
	// MaxImportBody bounds an import uploaded over HTTP; 0 means MaxImportBody.
	MaxImportBody int64
}

// NewStore returns a Store on an open pool. country is the ISO 3166 region used to read
// national-format phone numbers.
func NewStore(db *pgxpool.Pool, country string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{db: db, Country: country, Log: log}
}

// Ping reports whether PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// DB returns the underlying pool, for packages that share the database (reports, outbox).
func (s *Store) DB() *pgxpool.Pool { return s.db }

// querier is what pgxpool.Pool and pgx.Tx share, so lookups work inside and outside a
// transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// tx runs fn in a transaction, committing when fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.db, fn)
}

// audit writes one audit row inside tx. The actor comes from ctx (the API key), or "cli".
// Audit records a change in the audit log, in the change's transaction, as made by the
// caller's key (or "cli"). Other packages' stores write theirs through it.
func Audit(ctx context.Context, tx pgx.Tx, action, entity, entityID string, detail any) error {
	return audit(ctx, tx, action, entity, entityID, detail)
}

func audit(ctx context.Context, tx pgx.Tx, action, entity, entityID string, detail any) error {
	actor, keyID := "cli", (*int64)(nil)
	if p := mhero.PrincipalFromContext(ctx); p != nil {
		actor, keyID = p.Name, &p.KeyID
		if p.KeyID == 0 {
			keyID = nil
		}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_log (key_id, actor, action, entity, entity_id, detail)
		VALUES ($1, $2, $3, $4, $5, $6)`, keyID, actor, action, entity, entityID, b)
	return err
}

// scopeRoot returns the location id the caller is limited to, or 0 when unscoped.
func scopeRoot(ctx context.Context) mhero.LocationID {
	if p := mhero.PrincipalFromContext(ctx); p != nil && p.Scope != nil {
		return p.Scope.ID
	}
	return 0
}

// inScope reports whether a location path lies inside the caller's scope.
func inScope(ctx context.Context, path []int64) bool {
	root := scopeRoot(ctx)
	if root == 0 {
		return true
	}
	for _, id := range path {
		if id == int64(root) {
			return true
		}
	}
	return false
}

func errOutOfScope(what string) error {
	return mhero.Errorf(mhero.EFORBIDDEN, "%s is outside this key's location scope.", what)
}

// pgError maps driver errors to application errors; unknown ones pass through (they
// become EINTERNAL at the edge).
func pgError(err error, what string) error {
	var pe *pgconn.PgError
	if errors.Is(err, pgx.ErrNoRows) {
		return mhero.Errorf(mhero.ENOTFOUND, "%s not found.", what)
	}
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return mhero.Errorf(mhero.ECONFLICT, "%s conflicts with an existing one (%s).", what, constraintField(pe.ConstraintName))
		case "23503": // foreign_key_violation
			return mhero.Errorf(mhero.ECONFLICT, "%s is still referenced or refers to something missing (%s).", what, pe.ConstraintName)
		case "22P02", "22003", "23514":
			return mhero.Errorf(mhero.EVALIDATION, "%s has an invalid value.", what)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func constraintField(name string) string {
	switch name {
	case "workers_msisdn_key":
		return "phone number already registered"
	case "workers_ihris_id_key":
		return "iHRIS id already registered"
	case "locations_code_key", "facilities_code_key", "cadres_code_key", "skills_code_key":
		return "code already used"
	}
	return name
}
