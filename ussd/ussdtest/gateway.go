// Package ussdtest drives the USSD gateways the way aggregators do: request builders for
// each dialect, a transcript runner for dialogue tests, and in-memory stand-ins for the
// registry and the actions, for tests that exercise the engine and not PostgreSQL.
package ussdtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mhero-health/mhero/ussd"
)

// Session builds the requests of one USSD session in a gateway's dialect.
type Session interface {
	// Dial is the first hop; shortcut is what the user typed after the service code
	// (*384*12*1# → "1"), usually "".
	Dial(shortcut string) *http.Request
	// Answer sends the user's next input.
	Answer(input string) *http.Request
	// Hop rebuilds the request of hop n (0 is the dial) as it was first sent: the
	// gateway retrying it, or a copy arriving late.
	Hop(n int) *http.Request
	// Len is how many hops were sent.
	Len() int
	// Close is the gateway saying the session ended (timeout: the network timed it out);
	// nil for a dialect that never says.
	Close(timeout bool) *http.Request
	// Reply reads the server's answer.
	Reply(resp *http.Response) (ussd.Reply, error)
}

// NewSession starts a session of the named gateway ("africastalking" or "jsonop") at
// baseURL (the server's root, http://127.0.0.1:port). secret, when set, is sent in the
// X-Mhero-Secret header.
func NewSession(gateway, baseURL, sessionID, phone, secret string) (Session, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/") + "/ussd/" + gateway)
	if err != nil {
		return nil, fmt.Errorf("ussdtest: %w", err)
	}
	c := common{url: u, id: sessionID, phone: phone, service: "*384*12#", secret: secret}
	switch gateway {
	case "africastalking":
		return &AfricasTalking{common: c}, nil
	case "jsonop":
		return &JSONOp{common: c}, nil
	}
	return nil, fmt.Errorf("ussdtest: no builder for gateway %q", gateway)
}

type common struct {
	url                        *url.URL
	id, phone, service, secret string
	contentType                []string
	hops                       []string // the body of each hop sent
}

// post builds a request of the session's content type with body. Benchmarks send many:
// the URL is parsed once per session, and only the body is kept for Hop.
func (c *common) post(body string) *http.Request {
	h := http.Header{"Content-Type": c.contentType}
	if c.secret != "" {
		h["X-Mhero-Secret"] = []string{c.secret}
	}
	return &http.Request{Method: http.MethodPost, URL: c.url, Host: c.url.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
		GetBody: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
}

func (c *common) keep(body string) *http.Request {
	c.hops = append(c.hops, body)
	return c.post(body)
}

// Len is how many hops were sent.
func (c *common) Len() int { return len(c.hops) }

// Hop returns a fresh copy of hop n.
func (c *common) Hop(n int) *http.Request {
	if n < 0 || n >= len(c.hops) {
		panic(fmt.Sprintf("ussdtest: hop %d of %d", n, len(c.hops)))
	}
	return c.post(c.hops[n])
}

// AfricasTalking builds Africa's Talking requests: a form whose text is every input so
// far joined by '*'.
type AfricasTalking struct {
	common
	inputs []string
}

var formType = []string{"application/x-www-form-urlencoded"}

// form is the request's body, as url.Values.Encode writes it (keys sorted).
func (s *AfricasTalking) form(text string) string {
	s.contentType = formType
	var b strings.Builder
	b.Grow(96 + len(s.id) + len(text))
	for i, kv := range [...][2]string{{"networkCode", "63907"}, {"phoneNumber", s.phone},
		{"serviceCode", s.service}, {"sessionId", s.id}, {"text", text}} {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[1]))
	}
	return b.String()
}

// Dial sends text "" (or the shortcut some operators pass on).
func (s *AfricasTalking) Dial(shortcut string) *http.Request {
	s.inputs = nil
	if shortcut != "" {
		s.inputs = strings.Split(shortcut, "*")
	}
	return s.keep(s.form(shortcut))
}

// Answer appends input to the text.
func (s *AfricasTalking) Answer(input string) *http.Request {
	s.inputs = append(s.inputs, input)
	return s.keep(s.form(strings.Join(s.inputs, "*")))
}

// Close is nil: Africa's Talking reports the end of a session elsewhere, not here.
func (s *AfricasTalking) Close(bool) *http.Request { return nil }

// Reply reads "CON …" or "END …".
func (s *AfricasTalking) Reply(resp *http.Response) (ussd.Reply, error) {
	b, err := readBody(resp)
	if err != nil {
		return ussd.Reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return ussd.Reply{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return ussd.Reply{}, fmt.Errorf("Content-Type %q, want text/plain", ct)
	}
	text := b
	switch {
	case strings.HasPrefix(text, "CON "):
		return ussd.Reply{Text: text[4:]}, nil
	case strings.HasPrefix(text, "END "):
		return ussd.Reply{Text: text[4:], End: true}, nil
	}
	return ussd.Reply{}, fmt.Errorf("answer %q starts with neither CON nor END", text)
}

// JSONOp builds requests of the JSON dialect with an operation field and hop numbers.
type JSONOp struct {
	common
	seq int
}

var jsonType = []string{"application/json"}

func (s *JSONOp) json(op, input string) string {
	s.seq++
	s.contentType = jsonType
	b, _ := json.Marshal(map[string]any{"sessionId": s.id, "msisdn": s.phone, "serviceCode": s.service,
		"network": "lonestar", "operation": op, "input": input, "sequence": s.seq})
	return string(b)
}

// Dial sends operation begin; this dialect passes no shortcut.
func (s *JSONOp) Dial(string) *http.Request {
	s.seq = 0
	return s.keep(s.json("begin", ""))
}

// Answer sends operation continue with the latest input only.
func (s *JSONOp) Answer(input string) *http.Request { return s.keep(s.json("continue", input)) }

// Close sends operation end, or timeout.
func (s *JSONOp) Close(timeout bool) *http.Request {
	op := "end"
	if timeout {
		op = "timeout"
	}
	return s.keep(s.json(op, ""))
}

// Reply reads {"operation": "continue"|"end", "message": …}.
func (s *JSONOp) Reply(resp *http.Response) (ussd.Reply, error) {
	b, err := readBody(resp)
	if err != nil {
		return ussd.Reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return ussd.Reply{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var out struct {
		Operation string `json:"operation"`
		Message   string `json:"message"`
	}
	if err := json.NewDecoder(strings.NewReader(b)).Decode(&out); err != nil {
		return ussd.Reply{}, fmt.Errorf("answer %q: %w", b, err)
	}
	switch out.Operation {
	case "continue":
		return ussd.Reply{Text: out.Message}, nil
	case "end":
		return ussd.Reply{Text: out.Message, End: true}, nil
	}
	return ussd.Reply{}, fmt.Errorf("answer operation %q", out.Operation)
}

// readBody reads an answer's body.
func readBody(resp *http.Response) (string, error) {
	n := resp.ContentLength
	if n < 0 || n >= 1<<20 {
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// Format writes a reply the way transcripts and logs show it: "CON …" or "END …".
func Format(r ussd.Reply) string {
	if r.End {
		return strings.TrimSuffix("END "+r.Text, " ")
	}
	return strings.TrimSuffix("CON "+r.Text, " ")
}

// Do sends req with client and reads the answer with s.
func Do(client *http.Client, s Session, req *http.Request) (ussd.Reply, error) {
	resp, err := client.Do(req)
	if err != nil {
		return ussd.Reply{}, err
	}
	defer resp.Body.Close()
	return s.Reply(resp)
}

// Phone returns a distinct test number for index i (Liberian format, as E.164).
func Phone(i int) string { return "+23188" + fmt.Sprintf("%07d", i%10_000_000) }
