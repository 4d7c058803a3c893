package reports

import (
	"bufio"
	"encoding/csv"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"time"

	"github.com/mhero-health/mhero/api"
)

// table is how one view's rows are written: as CSV (the header, and each row's fields
// appended to a reused slice) and as JSON (each row appended to a reused buffer).
type table[T any] struct {
	name   string // file name stem of a CSV download
	header []string
	row    func(r *T, dst []string) []string
	json   func(r *T, b []byte) []byte
}

// errWriter remembers the first write error (the client went away), so the stream stops
// reading rows nobody will receive.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// csvTime is how CSV cells write times: UTC, to the second, as the registry's CSV does.
func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

// writeStream answers a view as JSON ({"period", "start", "end", "items": [...]}) or, when
// the client asks for it, CSV, writing each row as it comes off the query. Nothing is
// written until the first row (or the end) arrives, so an error resolving the filter or
// running the query still gets its proper status and error envelope. An error after
// that cuts the connection: a truncated download must not look complete.
func writeStream[T any](w http.ResponseWriter, r *http.Request, log *slog.Logger, p Period, t table[T], seq iter.Seq2[T, error]) {
	ew := &errWriter{w: w}
	bw := bufio.NewWriterSize(ew, 32<<10)
	wantCSV := api.WantsCSV(r)
	var (
		cw      *csv.Writer
		buf     []byte
		fields  []string
		started bool
		n       int
	)
	begin := func() {
		started = true
		if !p.IsZero() {
			w.Header().Set("X-Period", p.String())
		}
		if wantCSV {
			name := t.name
			if !p.IsZero() {
				name += "-" + p.String()
			}
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
			w.WriteHeader(http.StatusOK)
			cw = csv.NewWriter(bw)
			_ = cw.Write(t.header)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		bw.WriteString("{")
		if !p.IsZero() {
			bw.WriteString(`"period":"` + p.String() + `","start":"` + p.Start.Format(time.RFC3339) +
				`","end":"` + p.End.Format(time.RFC3339) + `",`)
		}
		bw.WriteString(`"items":[`)
	}
	for row, err := range seq {
		if err != nil {
			if !started {
				api.Error(w, r, log, err)
				return
			}
			log.ErrorContext(r.Context(), "report stream broken", "path", r.URL.Path, "rows", n, "error", err)
			panic(http.ErrAbortHandler)
		}
		if !started {
			begin()
		}
		if wantCSV {
			fields = t.row(&row, fields[:0])
			_ = cw.Write(fields)
		} else {
			if n > 0 {
				bw.WriteString(",\n")
			}
			buf = t.json(&row, buf[:0])
			bw.Write(buf)
		}
		n++
		if ew.err != nil {
			return // the client is gone; leaving the loop closes the query
		}
	}
	if !started {
		begin()
	}
	if wantCSV {
		cw.Flush()
	} else {
		bw.WriteString("]}\n")
	}
	_ = bw.Flush()
}
