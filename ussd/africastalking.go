package ussd

import (
	"io"
	"net/http"

	"github.com/mhero-health/mhero"
)

// africasTalking is Africa's Talking's USSD callback: a form POST with sessionId,
// serviceCode, phoneNumber, networkCode and text, where text is every input of the
// session joined by '*' ("" on the dial). It answers text/plain "CON …" to continue or
// "END …" to close. It never says when a session begins or times out.
type africasTalking struct{}

func (africasTalking) Name() string { return "africastalking" }

func (africasTalking) Decode(r *http.Request) (Request, error) {
	f, err := readForm(r, "sessionId", "serviceCode", "networkCode", "text", "phoneNumber")
	if err != nil {
		return Request{}, mhero.Errorf(mhero.EINVALID, "Want a form body.")
	}
	req := Request{SessionID: f[0], ServiceCode: f[1], Network: f[2], Input: CumulativeText(f[3])}
	if req.SessionID == "" {
		return Request{}, mhero.Errorf(mhero.EINVALID, "sessionId is required.")
	}
	if req.MSISDN, err = parseMSISDN(f[4], "phoneNumber"); err != nil {
		return Request{}, err
	}
	return req, nil
}

func (africasTalking) Encode(w http.ResponseWriter, rep Reply) error {
	w.Header()["Content-Type"] = textPlain
	prefix := "CON "
	if rep.End {
		prefix = "END "
	}
	if _, err := io.WriteString(w, prefix); err != nil {
		return err
	}
	_, err := io.WriteString(w, rep.Text)
	return err
}

// textPlain is the Content-Type of every answer, set without allocating a slice per
// answer (net/http only reads it).
var textPlain = []string{"text/plain; charset=utf-8"}
