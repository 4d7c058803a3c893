package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// keyPrefix marks mhero API keys so that secret scanners and people recognise them.
const keyPrefix = "mhk_"

// APIKey describes a key without its secret.
type APIKey struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Role       mhero.Role `json:"role"`
	Scope      string     `json:"scope,omitempty"` // location code, empty for the whole country
	Prefix     string     `json:"prefix"`          // first characters of the key, to recognise it
	CreatedAt  time.Time  `json:"created_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// hashKey is SHA-256: keys carry 160 random bits, so a slow password hash adds nothing
// but latency to every request.
func hashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// CreateAPIKey makes a key and returns it in clear text; this is the only time the
// secret exists outside the caller. scope is a location id or code, or "" for all.
func (s *Store) CreateAPIKey(ctx context.Context, name string, role mhero.Role, scope string) (string, *APIKey, error) {
	var d []mhero.ErrorDetail
	if strings.TrimSpace(name) == "" {
		d = append(d, mhero.ErrorDetail{Field: "name", Message: "name is required"})
	}
	if !role.Valid() {
		d = append(d, mhero.ErrorDetail{Field: "role", Message: "role must be admin, sender or reader"})
	}
	if len(d) > 0 {
		return "", nil, &mhero.Error{Code: mhero.EVALIDATION, Message: "API key is not valid.", Details: d}
	}
	raw := make([]byte, 20)
	if _, err := rand.Read(raw); err != nil {
		return "", nil, err
	}
	key := keyPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw))
	k := &APIKey{Name: name, Role: role, Prefix: key[:len(keyPrefix)+6]}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var scopeID *int64
		if scope != "" {
			l, path, err := resolveLocation(ctx, tx, scope)
			if err != nil {
				return err
			}
			if !inScope(ctx, path) {
				return errOutOfScope("The key's scope")
			}
			scopeID, k.Scope = (*int64)(&l.ID), l.Code
		} else if scopeRoot(ctx) != 0 {
			return errOutOfScope("An unscoped key")
		}
		if err := tx.QueryRow(ctx, `INSERT INTO api_keys (name, role, scope_location_id, key_hash, key_prefix)
			VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at`, name, string(role), scopeID, hashKey(key), k.Prefix).Scan(&k.ID, &k.CreatedAt); err != nil {
			return pgError(err, "API key")
		}
		return audit(ctx, tx, "create", "api_key", strconv.FormatInt(k.ID, 10), map[string]string{"name": name, "role": string(role), "scope": k.Scope})
	})
	if err != nil {
		return "", nil, err
	}
	return key, k, nil
}

// Authenticate returns the principal for a bearer key, or EUNAUTHORIZED for an unknown
// or revoked key.
func (s *Store) Authenticate(ctx context.Context, key string) (*mhero.Principal, error) {
	if !strings.HasPrefix(key, keyPrefix) || len(key) > 100 {
		return nil, mhero.Errorf(mhero.EUNAUTHORIZED, "Invalid API key.")
	}
	var p mhero.Principal
	var role string
	var scopeID *int64
	// last_used_at is refreshed at most once a minute, so busy clients do not turn every
	// read into a row write.
	err := s.db.QueryRow(ctx, `WITH k AS (
			SELECT id, name, role, scope_location_id, last_used_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL),
		u AS (UPDATE api_keys SET last_used_at = now() FROM k
			WHERE api_keys.id = k.id AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute'))
		SELECT id, name, role, scope_location_id FROM k`, hashKey(key)).Scan(&p.KeyID, &p.Name, &role, &scopeID)
	if err == pgx.ErrNoRows {
		return nil, mhero.Errorf(mhero.EUNAUTHORIZED, "Invalid API key.")
	} else if err != nil {
		return nil, err
	}
	p.Role = mhero.Role(role)
	if scopeID != nil {
		l, _, err := resolveLocation(ctx, s.db, strconv.FormatInt(*scopeID, 10))
		if err != nil {
			return nil, err
		}
		p.Scope = l
	}
	return &p, nil
}

// ListAPIKeys lists every key (without secrets).
func (s *Store) ListAPIKeys(ctx context.Context) ([]*APIKey, error) {
	rows, err := s.db.Query(ctx, `SELECT k.id, k.name, k.role, COALESCE(l.code, ''), k.key_prefix, k.created_at, k.revoked_at, k.last_used_at
		FROM api_keys k LEFT JOIN locations l ON l.id = k.scope_location_id ORDER BY k.id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*APIKey, error) {
		var k APIKey
		err := r.Scan(&k.ID, &k.Name, &k.Role, &k.Scope, &k.Prefix, &k.CreatedAt, &k.RevokedAt, &k.LastUsedAt)
		return &k, err
	})
}

// RevokeAPIKey stops a key from working, at once.
func (s *Store) RevokeAPIKey(ctx context.Context, id int64) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return mhero.Errorf(mhero.ENOTFOUND, "API key %d not found or already revoked.", id)
		}
		return audit(ctx, tx, "revoke", "api_key", strconv.FormatInt(id, 10), nil)
	})
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID       int64          `json:"id"`
	At       time.Time      `json:"at"`
	Actor    string         `json:"actor"`
	Action   string         `json:"action"`
	Entity   string         `json:"entity"`
	EntityID string         `json:"entity_id"`
	Detail   map[string]any `json:"detail"`
}

// ListAudit returns audit entries newest first, before the cursor id (0 = from the top).
func (s *Store) ListAudit(ctx context.Context, before int64, n int) ([]*AuditEntry, error) {
	rows, err := s.db.Query(ctx, `SELECT id, at, actor, action, entity, entity_id, detail FROM audit_log
		WHERE ($1 = 0 OR id < $1) ORDER BY id DESC LIMIT $2`, before, limit(n))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*AuditEntry, error) {
		var e AuditEntry
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Entity, &e.EntityID, &e.Detail)
		return &e, err
	})
}
