package api

import (
	"encoding/base64"
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"

	"github.com/mhero-health/mhero"
)

// Page is the JSON shape of every list: the items and the cursor for the next page,
// empty on the last page.
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// PageParams reads ?cursor= and ?limit= (1..1000, default 100).
func PageParams(r *http.Request) (after int64, n int, err error) {
	q := r.URL.Query()
	n = 100
	if s := q.Get("limit"); s != "" {
		n, err = strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return 0, 0, mhero.Errorf(mhero.EINVALID, "limit must be a number from 1 to 1000.")
		}
	}
	if c := q.Get("cursor"); c != "" {
		after, err = DecodeCursor(c)
	}
	return after, n, err
}

// EncodeCursor makes an opaque cursor from the last id of a page.
func EncodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
}

// DecodeCursor reads a cursor made by EncodeCursor.
func DecodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil && strings.HasPrefix(string(b), "id:") {
		if id, err := strconv.ParseInt(string(b[3:]), 10, 64); err == nil && id >= 0 {
			return id, nil
		}
	}
	return 0, mhero.Errorf(mhero.EINVALID, "cursor is not one this API gave out.")
}

// WantsCSV reports whether the client asked for CSV (Accept: text/csv or ?format=csv).
func WantsCSV(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/csv") || r.URL.Query().Get("format") == "csv"
}

// WriteList answers a page as JSON, or as CSV when asked, using header and row for the
// CSV columns. The next cursor travels in the X-Next-Cursor header for CSV.
func WriteList[T any](w http.ResponseWriter, r *http.Request, items []T, n int, id func(T) int64, header []string, row func(T) []string) {
	next := ""
	if len(items) == n && n > 0 {
		next = EncodeCursor(id(items[len(items)-1]))
	}
	if !WantsCSV(r) {
		if items == nil {
			items = []T{}
		}
		JSON(w, http.StatusOK, Page[T]{Items: items, NextCursor: next})
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	if next != "" {
		w.Header().Set("X-Next-Cursor", next)
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(header)
	for _, it := range items {
		_ = cw.Write(row(it))
	}
	cw.Flush()
}

// QueryList reads a repeatable, comma-separable query parameter: ?cadre=a&cadre=b or
// ?cadre=a,b.
func QueryList(r *http.Request, name string) []string {
	var out []string
	for _, v := range r.URL.Query()[name] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
