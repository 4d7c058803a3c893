package reports

import (
	"context"
	"iter"

	"github.com/jackc/pgx/v5"
)

// Views return their rows as iterators over a live query: a view of a million rows is
// read from PostgreSQL as it is written out, never held whole. An error resolving the
// filter or running the query is the first (and only) thing yielded, so the HTTP edge
// can still answer it with a proper status; an error later ends the sequence.
//
//	for row, err := range store.LatestStock(ctx, reports.Filter{Location: "LR-01"}) {
//		if err != nil { ... }
//		...
//	}

// view runs the query that build writes for a resolved filter and yields each row as
// scan reads it. check, when not nil, refuses a filter before anything is resolved.
func view[T any](ctx context.Context, s *Store, f Filter, check func(Filter) error,
	build func(*scope, *sqlArgs) (string, error), scan func(pgx.Rows, *T) error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		if check != nil {
			if err := check(f); err != nil {
				yield(zero, err)
				return
			}
		}
		sc, err := s.resolve(ctx, f)
		if err != nil {
			yield(zero, err)
			return
		}
		var args sqlArgs
		q, err := build(sc, &args)
		if err != nil {
			yield(zero, err)
			return
		}
		rows, err := s.db.Query(ctx, q, args...)
		if err != nil {
			yield(zero, err)
			return
		}
		defer rows.Close()
		var row T
		for rows.Next() {
			if err := scan(rows, &row); err != nil {
				yield(zero, err)
				return
			}
			if !yield(row, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(zero, err)
		}
	}
}

// Collect reads a whole view into memory: for tests and small views only.
func Collect[T any](seq iter.Seq2[T, error]) ([]T, error) {
	var out []T
	for row, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, nil
}
