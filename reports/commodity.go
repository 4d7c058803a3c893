package reports

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/mhero-health/mhero"
)

// Commodity is an item workers report stock of ("ors", "ORS sachets").
type Commodity struct {
	Code   string `json:"code"`
	Name   string `json:"name"`
	Active bool   `json:"active"` // false once dropped from the configuration; its history stays
}

// normCode is how commodity and reason codes are compared: an SMS says "STOCK ORS 20",
// the configuration says "ors".
func normCode(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// SyncCommodities makes the commodity list the one given (from the configuration):
// new codes are added, names follow, and codes no longer listed are deactivated — new
// reports of them are refused, old ones keep their name. cmd calls it at start; several
// instances starting together converge on the same list.
func (s *Store) SyncCommodities(ctx context.Context, list []Commodity) error {
	codes, names := make([]string, 0, len(list)), make([]string, 0, len(list))
	seen := map[string]bool{}
	for i, c := range list {
		code := normCode(c.Code)
		if code == "" || seen[code] {
			return mhero.Errorf(mhero.EVALIDATION, "Commodity %d: code %q is empty or repeated.", i+1, c.Code)
		}
		seen[code] = true
		name := strings.TrimSpace(c.Name)
		if name == "" {
			name = code
		}
		codes, names = append(codes, code), append(names, name)
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO commodities AS c (code, name)
			SELECT * FROM unnest($1::text[], $2::text[]) ORDER BY 1
			ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, active = true
			WHERE (c.name, c.active) IS DISTINCT FROM (EXCLUDED.name, true)`, codes, names); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE commodities SET active = false WHERE active AND code <> ALL ($1::text[])`, codes)
		return err
	})
}

// ListCommodities lists every commodity, active or not, by code.
func (s *Store) ListCommodities(ctx context.Context) ([]Commodity, error) {
	rows, err := s.db.Query(ctx, `SELECT code, name, active FROM commodities ORDER BY code`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Commodity])
}

// commodityID finds a commodity by code for a view (deactivated ones included: their
// history is still worth reading).
func (s *Store) commodityID(ctx context.Context, code string) (int16, error) {
	var id int16
	err := s.db.QueryRow(ctx, `SELECT id FROM commodities WHERE code = $1`, normCode(code)).Scan(&id)
	if err == pgx.ErrNoRows {
		return 0, &mhero.Error{Code: mhero.EVALIDATION, Message: "Unknown commodity.",
			Details: []mhero.ErrorDetail{{Field: "commodity", Message: "no commodity has the code " + strconv.Quote(truncate(code, 40))}}}
	}
	return id, err
}
