package ussd

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sync"
)

// A form gateway's request is a few hundred bytes with five fields, on every hop. Reading
// it with Request.ParseForm builds two url.Values maps and a string per key and value;
// readForm reads the body into a pooled buffer and keeps only the fields asked for. It
// accepts and refuses exactly what ParseForm does (the same content types, '&' pairs,
// '+' and %XX escapes, no ';' separators, a well-formed query string), and, as
// PostForm.Get does, takes a field's first value.

const formContentType = "application/x-www-form-urlencoded"

var errForm = errors.New("malformed form body")

// formBufs holds bodies while they are read; requests that grew a buffer past 4 KiB
// give it back to the collector rather than to the pool.
var formBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// readForm reads r's form body and returns the values of names, in that order ("" for a
// field the form lacks). A body that is not a form (another content type, or none) has
// no fields, as with ParseForm.
func readForm(r *http.Request, names ...string) ([]string, error) {
	if r.URL != nil && r.URL.RawQuery != "" {
		// ParseForm also reads the query string, and fails the request when it is
		// malformed; keep that.
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			return nil, err
		}
	}
	out := make([]string, len(names))
	if r.Body == nil {
		return nil, errors.New("missing form body")
	}
	ct := r.Header.Get("Content-Type")
	if ct != formContentType {
		if ct == "" {
			ct = "application/octet-stream"
		}
		var err error
		if ct, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, err
		}
		if ct != formContentType {
			return out, nil
		}
	}
	bp := formBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 4<<10 {
			formBufs.Put(bp)
		}
	}()
	body, err := readAll((*bp)[:0], r.Body)
	*bp = body
	if err != nil {
		return nil, err
	}
	return out, parseForm(body, names, out)
}

// readAll is io.ReadAll into buf.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// parseForm fills out[i] with the first value of names[i] in body (url.ParseQuery's
// rules), and fails where ParseQuery would, having read every pair. Only the values
// kept become strings.
func parseForm(body []byte, names, out []string) error {
	var (
		err     error
		found   uint64 // bit i: names[i] seen
		scratch [256]byte
	)
	buf := scratch[:0]
	for len(body) > 0 {
		var pair []byte
		if i := bytes.IndexByte(body, '&'); i >= 0 {
			pair, body = body[:i], body[i+1:]
		} else {
			pair, body = body, nil
		}
		if len(pair) == 0 {
			continue
		}
		if bytes.IndexByte(pair, ';') >= 0 {
			err = errForm
			continue
		}
		k, v, _ := bytes.Cut(pair, []byte{'='})
		var ok bool
		if buf, ok = unescapeForm(buf[:0], k); !ok {
			err = errForm
			continue
		}
		want := -1
		for i, n := range names {
			if found&(1<<i) == 0 && string(buf) == n {
				want = i
				break
			}
		}
		if buf, ok = unescapeForm(buf[:0], v); !ok {
			err = errForm
			continue
		}
		if want >= 0 {
			out[want], found = string(buf), found|1<<want
		}
	}
	return err
}

// unescapeForm appends b to dst as url.QueryUnescape reads it: '+' is a space, %XX a
// byte; a '%' without two hex digits after it is an error.
func unescapeForm(dst, b []byte) ([]byte, bool) {
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return dst, false
			}
			dst = append(dst, unhex(b[i+1])<<4|unhex(b[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}
