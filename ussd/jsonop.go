package ussd

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/mhero-health/mhero"
)

// jsonOp is the other family of aggregators: JSON with an operation field (begin,
// continue, end, timeout), only the latest input in each hop, and a hop sequence number
// that makes retries recognisable.
//
//	{"sessionId": "7f3a", "msisdn": "+231886123456", "serviceCode": "*384*12#",
//	 "network": "lonestar", "operation": "continue", "input": "2", "sequence": 3}
//
// sequence counts the session's hops from 1 (the begin); a gateway that omits it gets no
// retry detection. The answer is {"operation": "continue"|"end", "message": "…"}.
type jsonOp struct{}

type jsonOpRequest struct {
	SessionID   string `json:"sessionId"`
	MSISDN      string `json:"msisdn"`
	ServiceCode string `json:"serviceCode"`
	Network     string `json:"network"`
	Operation   string `json:"operation"`
	Input       string `json:"input"`
	Sequence    int    `json:"sequence"`
}

type jsonOpReply struct {
	Operation string `json:"operation"`
	Message   string `json:"message"`
}

func (jsonOp) Name() string { return "jsonop" }

func (jsonOp) Decode(r *http.Request) (Request, error) {
	var in jsonOpRequest
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return Request{}, mhero.Errorf(mhero.EINVALID, "Want a JSON object with sessionId, msisdn, operation and input.")
	}
	req := Request{SessionID: in.SessionID, ServiceCode: in.ServiceCode, Network: in.Network}
	if req.SessionID == "" {
		return Request{}, mhero.Errorf(mhero.EINVALID, "sessionId is required.")
	}
	var err error
	if req.MSISDN, err = parseMSISDN(in.MSISDN, "msisdn"); err != nil {
		return Request{}, err
	}
	switch strings.ToLower(in.Operation) {
	case "begin":
		req.Kind, req.Input = Begin, NoInput()
	case "continue":
		// sequence 1 is the begin, so input n of the session comes with sequence n+1.
		req.Kind, req.Input = Continue, LatestInput(in.Input, max(in.Sequence-1, 0))
	case "end":
		req.Kind, req.Input = End, NoInput()
	case "timeout":
		req.Kind, req.Input = Timeout, NoInput()
	default:
		return Request{}, mhero.Errorf(mhero.EINVALID, "operation must be begin, continue, end or timeout.")
	}
	return req, nil
}

func (jsonOp) Encode(w http.ResponseWriter, rep Reply) error {
	w.Header().Set("Content-Type", "application/json")
	out := jsonOpReply{Operation: "continue", Message: rep.Text}
	if rep.End {
		out.Operation = "end"
	}
	return json.NewEncoder(w).Encode(out)
}
