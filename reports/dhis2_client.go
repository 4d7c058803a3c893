package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sony/gobreaker/v2"
)

// ImportSummary is DHIS2's answer to a data value import, from either shape it comes in:
// the WebMessage of DHIS2 2.36 and later ({"status", "response": {"importCount",
// "conflicts"}}) or the bare import summary of earlier versions ({"status",
// "importCount", "conflicts"}).
type ImportSummary struct {
	Status      string // SUCCESS, WARNING or ERROR
	Description string
	ImportCount
	Conflicts      []Conflict // the first MaxConflicts
	ConflictsTotal int        // all of them
}

// ImportCount is how many values DHIS2 imported, updated, ignored and deleted.
type ImportCount struct {
	Imported int `json:"imported"`
	Updated  int `json:"updated"`
	Ignored  int `json:"ignored"`
	Deleted  int `json:"deleted"`
}

// Conflict is one value or object DHIS2 refused. Value is DHIS2's message.
type Conflict struct {
	Object    string `json:"object"`
	Value     string `json:"value"`
	ErrorCode string `json:"error_code,omitempty"` // E7617 ... (2.36+)
	Property  string `json:"property,omitempty"`
	Indexes   []int  `json:"indexes,omitempty"` // positions in the payload's dataValues (2.36+)
}

// DHIS2 import statuses.
const (
	DHIS2StatusSuccess = "SUCCESS"
	DHIS2StatusWarning = "WARNING"
	DHIS2StatusError   = "ERROR"
)

// Bounds on what is read of DHIS2's answer.
const (
	maxSummaryBytes = 16 << 20
	// MaxConflicts bounds the conflicts kept of one answer; ConflictsTotal counts them all.
	MaxConflicts      = 1000
	maxConflictIndex  = 1000 // indexes kept per conflict
	maxConflictTextSz = 1000
)

// flexText reads a JSON string, number or boolean as text (DHIS2 versions differ), null
// as empty, and anything else as its JSON.
type flexText string

func (t *flexText) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*t = flexText(s)
	} else if string(b) != "null" {
		*t = flexText(b)
	}
	if len(*t) > maxConflictTextSz {
		*t = flexText(truncate(string(*t), maxConflictTextSz))
	}
	return nil
}

// flexCount reads a count given as a number or a numeric string.
type flexCount int

func (c *flexCount) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" || s == "" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("count %s is not a whole number of 0 or more", truncate(s, 20))
	}
	*c = flexCount(n)
	return nil
}

type rawCount struct {
	Imported, Updated, Ignored, Deleted flexCount
}

type rawConflict struct {
	Object    flexText `json:"object"`
	Value     flexText `json:"value"`
	ErrorCode flexText `json:"errorCode"`
	Property  flexText `json:"property"`
	Indexes   []int    `json:"indexes"`
}

type rawSummaryBody struct {
	Status      flexText      `json:"status"`
	Description flexText      `json:"description"`
	ImportCount *rawCount     `json:"importCount"`
	Conflicts   []rawConflict `json:"conflicts"`
}

type rawSummary struct {
	rawSummaryBody
	Message  flexText        `json:"message"`
	Response *rawSummaryBody `json:"response"`
}

// readImportSummary reads DHIS2's answer. Anything that is not an import summary (an
// HTML page, a WebMessage with only a message) is an error that carries DHIS2's message
// when it has one.
func readImportSummary(r io.Reader) (*ImportSummary, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSummaryBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read DHIS2's answer: %w", err)
	}
	if len(b) > maxSummaryBytes {
		return nil, fmt.Errorf("DHIS2's answer is larger than %d MiB", maxSummaryBytes>>20)
	}
	var raw rawSummary
	if err := json.Unmarshal(b, &raw); err != nil {
		if json.Valid(b) {
			return nil, fmt.Errorf("DHIS2's answer is not an import summary: %s", truncate(err.Error(), 200))
		}
		return nil, fmt.Errorf("DHIS2's answer is not JSON: %s", snippet(b))
	}
	body := &raw.rawSummaryBody
	if raw.Response != nil && raw.Response.ImportCount != nil {
		body = raw.Response
	}
	if body.ImportCount == nil {
		msg := string(raw.Message)
		if msg == "" {
			msg = snippet(b)
		}
		return nil, fmt.Errorf("DHIS2's answer has no import count: %s", truncate(msg, 200))
	}
	s := &ImportSummary{Description: string(body.Description), ConflictsTotal: len(body.Conflicts),
		ImportCount: ImportCount{Imported: int(body.ImportCount.Imported), Updated: int(body.ImportCount.Updated),
			Ignored: int(body.ImportCount.Ignored), Deleted: int(body.ImportCount.Deleted)}}
	for i := range min(len(body.Conflicts), MaxConflicts) {
		c := &body.Conflicts[i]
		s.Conflicts = append(s.Conflicts, Conflict{Object: string(c.Object), Value: string(c.Value),
			ErrorCode: string(c.ErrorCode), Property: string(c.Property), Indexes: c.Indexes[:min(len(c.Indexes), maxConflictIndex)]})
	}
	status := body.Status
	if status == "" {
		status = raw.Status
	}
	s.Status = importStatus(string(status), s.ConflictsTotal)
	return s, nil
}

// importStatus reads DHIS2's status; a status it does not know is a warning (the values
// may not all be in), never a success.
func importStatus(s string, conflicts int) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "SUCCESS", "OK":
		if conflicts > 0 {
			return DHIS2StatusWarning
		}
		return DHIS2StatusSuccess
	case "ERROR":
		return DHIS2StatusError
	case "":
		if conflicts > 0 {
			return DHIS2StatusWarning
		}
		return DHIS2StatusSuccess
	}
	return DHIS2StatusWarning
}

// snippet is the start of an answer as one line of valid text, for error messages.
func snippet(b []byte) string {
	b = b[:min(len(b), 300)]
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	for len(s) > 200 {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// DHIS2Error is a request to DHIS2 that brought back no import summary.
type DHIS2Error struct {
	StatusCode int    // the HTTP status; 0 when no answer came
	Retryable  bool   // 5xx, timeouts and connection failures are; 4xx are not
	Message    string // safe to show and record: never a credential
	Err        error
}

func (e *DHIS2Error) Error() string { return "dhis2: " + e.Message }
func (e *DHIS2Error) Unwrap() error { return e.Err }

func retryable(err error) bool {
	var de *DHIS2Error
	return errors.As(err, &de) && de.Retryable
}

// dhis2Client posts data value sets: each attempt goes through a circuit breaker, and
// 5xx answers, timeouts and connection failures are retried with back-off; 4xx answers
// are not (the same payload would be refused again).
type dhis2Client struct {
	endpoint string
	cfg      *DHIS2Config
	hc       *http.Client
	cb       *gobreaker.CircuitBreaker[*ImportSummary]
	log      *slog.Logger
}

func newDHIS2Client(cfg *DHIS2Config, hc *http.Client, log *slog.Logger) *dhis2Client {
	if hc == nil {
		hc = &http.Client{}
	}
	c := *hc
	// A redirect means a login page or a wrong URL; following it would turn the POST into
	// a GET of something else.
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cl := &dhis2Client{endpoint: strings.TrimRight(cfg.URL, "/") + "/api/dataValueSets", cfg: cfg, hc: &c, log: log}
	cl.cb = gobreaker.NewCircuitBreaker[*ImportSummary](gobreaker.Settings{
		Name:        "dhis2",
		Timeout:     cfg.BreakerCooldown,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= uint32(cfg.BreakerFailures) },
		// Only DHIS2 being unreachable or failing counts against it; a refusal (4xx) is
		// an answer.
		IsSuccessful: func(err error) bool { return err == nil || !retryable(err) },
		IsExcluded:   func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			log.Warn("DHIS2 circuit breaker", "from", from.String(), "to", to.String())
		},
	})
	return cl
}

func (c *dhis2Client) query(dryRun bool) string {
	q := url.Values{}
	q.Set("dryRun", strconv.FormatBool(dryRun))
	q.Set("importStrategy", "CREATE_AND_UPDATE")
	q.Set("idScheme", scheme(c.cfg.DataElementIDScheme))
	q.Set("orgUnitIdScheme", scheme(c.cfg.IDScheme))
	return q.Encode()
}

// post sends the size bytes of body to DHIS2 and returns its import summary, which may
// itself report an ERROR status (DHIS2 answers 409 with one).
func (c *dhis2Client) post(ctx context.Context, body io.ReaderAt, size int64, dryRun bool) (*ImportSummary, error) {
	u := c.endpoint + "?" + c.query(dryRun)
	wait := c.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		sum, err := c.cb.Execute(func() (*ImportSummary, error) { return c.once(ctx, u, body, size) })
		switch {
		case err == nil:
			return sum, nil
		case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
			return nil, &DHIS2Error{Err: err, Message: fmt.Sprintf("DHIS2 is not answering: the circuit breaker opened after %d failed requests in a row; it lets a request through again after %s",
				c.cfg.BreakerFailures, c.cfg.BreakerCooldown)}
		case !retryable(err) || attempt >= c.cfg.Attempts || ctx.Err() != nil:
			return nil, err
		}
		c.log.WarnContext(ctx, "DHIS2 request failed; retrying", "attempt", attempt, "dry_run", dryRun, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait *= 2
	}
}

// once makes one attempt.
func (c *dhis2Client) once(ctx context.Context, u string, body io.ReaderAt, size int64) (*ImportSummary, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, u, io.NewSectionReader(body, 0, size))
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.cfg.token != "" {
		req.Header.Set("Authorization", "ApiToken "+c.cfg.token)
	} else {
		req.SetBasicAuth(c.cfg.Username, c.cfg.password)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The caller giving up is not DHIS2's failure; a timeout of this attempt is.
		return nil, &DHIS2Error{Retryable: ctx.Err() == nil, Message: "no answer from DHIS2: " + err.Error(), Err: err}
	}
	defer resp.Body.Close()
	defer io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // lets the connection be reused
	code := resp.StatusCode
	switch {
	case code >= 500:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, &DHIS2Error{StatusCode: code, Retryable: true, Message: fmt.Sprintf("DHIS2 answered %d: %s", code, snippet(b))}
	case code >= 300 && code < 400:
		return nil, &DHIS2Error{StatusCode: code, Message: fmt.Sprintf("DHIS2 answered %d, a redirect to %q: check dhis2.url and the credentials",
			code, truncate(resp.Header.Get("Location"), 200))}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, &DHIS2Error{StatusCode: code, Message: fmt.Sprintf("DHIS2 refused the credentials (%d): check the user or token and its authorities", code)}
	}
	sum, err := readImportSummary(resp.Body)
	if err != nil {
		return nil, &DHIS2Error{StatusCode: code, Message: fmt.Sprintf("DHIS2 answered %d: %v", code, err), Err: err}
	}
	return sum, nil
}

// decodeJSONBytes is json.Unmarshal that tolerates an empty document (a NULL column).
func decodeJSONBytes(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return json.Unmarshal(b, v)
}
