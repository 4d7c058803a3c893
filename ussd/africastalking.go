package ussd

import (
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
	if err := r.ParseForm(); err != nil {
		return Request{}, mhero.Errorf(mhero.EINVALID, "Want a form body.")
	}
	req := Request{
		SessionID:   r.PostForm.Get("sessionId"),
		ServiceCode: r.PostForm.Get("serviceCode"),
		Network:     r.PostForm.Get("networkCode"),
		Input:       CumulativeText(r.PostForm.Get("text")),
	}
	if req.SessionID == "" {
		return Request{}, mhero.Errorf(mhero.EINVALID, "sessionId is required.")
	}
	var err error
	if req.MSISDN, err = parseMSISDN(r.PostForm.Get("phoneNumber"), "phoneNumber"); err != nil {
		return Request{}, err
	}
	return req, nil
}

func (africasTalking) Encode(w http.ResponseWriter, rep Reply) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	prefix := "CON "
	if rep.End {
		prefix = "END "
	}
	_, err := w.Write([]byte(prefix + rep.Text))
	return err
}
