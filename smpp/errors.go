package smpp

import (
	"errors"
	"fmt"

	"github.com/mhero-health/mhero"
)

// SMPP command_status values the pool treats specially. The full per-MNO policy is
// the Config.Statuses table; these are its defaults.
const (
	StatusOK            uint32 = 0x00000000
	StatusInvMsgLen     uint32 = 0x00000001 // ESME_RINVMSGLEN
	StatusSysErr        uint32 = 0x00000008 // ESME_RSYSERR
	StatusInvSrcAdr     uint32 = 0x0000000A // ESME_RINVSRCADR
	StatusInvDstAdr     uint32 = 0x0000000B // ESME_RINVDSTADR
	StatusBindFail      uint32 = 0x0000000D // ESME_RBINDFAIL
	StatusInvPaswd      uint32 = 0x0000000E // ESME_RINVPASWD
	StatusInvSysID      uint32 = 0x0000000F // ESME_RINVSYSID
	StatusMsgQFul       uint32 = 0x00000014 // ESME_RMSGQFUL
	StatusInvCmdID      uint32 = 0x00000003 // ESME_RINVCMDID
	StatusSubmitFail    uint32 = 0x00000045 // ESME_RSUBMITFAIL
	StatusThrottled     uint32 = 0x00000058 // ESME_RTHROTTLED
	StatusInvExpiry     uint32 = 0x00000062 // ESME_RINVEXPIRY
	StatusRxTempAppErr  uint32 = 0x00000064 // ESME_RX_T_APPN: we answer deliver_sm with it when a handler fails
	StatusRxPermAppErr  uint32 = 0x00000065 // ESME_RX_P_APPN
	StatusRxRejectedMsg uint32 = 0x00000066 // ESME_RX_R_APPN
	StatusUnknownErr    uint32 = 0x000000FF // ESME_RUNKNOWNERR
)

var (
	// ErrUnroutable is returned (wrapped) by Route and Send when no configured MNO
	// serves the number. It is an *mhero.Error with code EVALIDATION, so the edges map it
	// without knowing this package.
	ErrUnroutable = &mhero.Error{Code: mhero.EVALIDATION, Message: "No mobile network is configured for this phone number."}

	// ErrOutcomeUnknown is wrapped by the *SubmitError returned when a submit_sm was
	// handed to the connection but its submit_sm_resp never came (response timeout, bind
	// lost, caller's context done). The SMSC may or may not have accepted the message; the
	// pool never resends it on its own (see the package documentation).
	ErrOutcomeUnknown = errors.New("smpp: submit outcome unknown")

	// ErrStopped is returned by Send once Stop has begun.
	ErrStopped = errors.New("smpp: pool stopped")

	// ErrNoBind is wrapped when no bind of the MNO could take the message before the
	// caller's context ended (all binds down or their circuit breakers open).
	ErrNoBind = errors.New("smpp: no bind available")

	// errNotSent says a PDU never reached the connection; it is always safe to retry.
	errNotSent = errors.New("smpp: not sent")
	// errBindLost says the connection went away; pending requests get it.
	errBindLost = errors.New("smpp: bind lost")
	// errRespTimeout says no response came within Config.ResponseTimeout.
	errRespTimeout = errors.New("smpp: response timeout")
)

// SubmitError is the error of a submit_sm that did not succeed. Status is the SMSC's
// command_status when it answered (0 when it did not), Temporary says whether sending the
// same message again later may succeed, and Err, when set, is the cause (for instance
// ErrOutcomeUnknown or a context error).
type SubmitError struct {
	Status    uint32
	Temporary bool
	Reason    string
	Err       error
}

func (e *SubmitError) Error() string {
	var s string
	if e.Status != 0 {
		s = fmt.Sprintf("smpp: submit_sm status 0x%08X (%s)", e.Status, e.Reason)
	} else {
		s = "smpp: submit_sm: " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *SubmitError) Unwrap() error { return e.Err }

// IsTemporary reports whether err says the same message may be sent again later: a
// throttling or queue-full answer that outlasted its retries, no bind available, the pool
// stopping. A submit whose outcome is unknown is not temporary: resending it may
// deliver the message twice (errors.Is(err, ErrOutcomeUnknown) tells that case apart).
func IsTemporary(err error) bool {
	var se *SubmitError
	if errors.As(err, &se) {
		return se.Temporary
	}
	return errors.Is(err, ErrNoBind) || errors.Is(err, ErrStopped)
}

// statusName is the ESME_ name of well-known statuses, for error messages and logs.
func statusName(s uint32) string {
	switch s {
	case StatusOK:
		return "ESME_ROK"
	case StatusInvMsgLen:
		return "ESME_RINVMSGLEN"
	case StatusInvCmdID:
		return "ESME_RINVCMDID"
	case StatusSysErr:
		return "ESME_RSYSERR"
	case StatusInvSrcAdr:
		return "ESME_RINVSRCADR"
	case StatusInvDstAdr:
		return "ESME_RINVDSTADR"
	case StatusBindFail:
		return "ESME_RBINDFAIL"
	case StatusInvPaswd:
		return "ESME_RINVPASWD"
	case StatusInvSysID:
		return "ESME_RINVSYSID"
	case StatusMsgQFul:
		return "ESME_RMSGQFUL"
	case StatusSubmitFail:
		return "ESME_RSUBMITFAIL"
	case StatusThrottled:
		return "ESME_RTHROTTLED"
	case StatusInvExpiry:
		return "ESME_RINVEXPIRY"
	case StatusRxTempAppErr:
		return "ESME_RX_T_APPN"
	case StatusRxPermAppErr:
		return "ESME_RX_P_APPN"
	case StatusRxRejectedMsg:
		return "ESME_RX_R_APPN"
	case StatusUnknownErr:
		return "ESME_RUNKNOWNERR"
	}
	return "status " + statusLabel(s)
}

// statusLabel is the metrics label of a status: "0x58". Labels for the common statuses
// come from a table, so the hot path does not format.
func statusLabel(s uint32) string {
	if s < uint32(len(statusLabels)) {
		return statusLabels[s]
	}
	return fmt.Sprintf("0x%X", s)
}

var statusLabels = func() []string {
	l := make([]string, 0x100)
	for i := range l {
		l[i] = fmt.Sprintf("0x%02X", i)
	}
	return l
}()
