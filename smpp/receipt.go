package smpp

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ReceiptState is the outcome a delivery receipt reports.
type ReceiptState string

// The states of SMPP 3.4 §5.2.28 (message_state) and appendix B (stat).
const (
	StateEnroute       ReceiptState = "enroute"       // ENROUTE, message_state 1
	StateDelivered     ReceiptState = "delivered"     // DELIVRD, 2
	StateExpired       ReceiptState = "expired"       // EXPIRED, 3
	StateDeleted       ReceiptState = "deleted"       // DELETED, 4
	StateUndeliverable ReceiptState = "undeliverable" // UNDELIV, 5
	StateAccepted      ReceiptState = "accepted"      // ACCEPTD, 6
	StateUnknown       ReceiptState = "unknown"       // UNKNOWN, 7; also any stat word we do not know
	StateRejected      ReceiptState = "rejected"      // REJECTD, 8
)

// Final reports whether no later receipt is expected for the message. Delivered,
// undeliverable, expired, rejected and deleted are final. Enroute is intermediate; so are
// accepted and unknown here, although SMPP 3.4 lists them as final: operators send ACCEPTD
// for "accepted by the network" and a DELIVRD later, and UNKNOWN while they do not know yet
// (Kannel treats both as buffered, too). A message left in one of them is settled by its
// validity period, not by this receipt.
func (s ReceiptState) Final() bool {
	switch s {
	case StateDelivered, StateUndeliverable, StateExpired, StateRejected, StateDeleted:
		return true
	}
	return false
}

// Receipt is a parsed delivery receipt (SMPP 3.4 appendix B, and the TLVs of §5.3.2).
type Receipt struct {
	MessageID string       // the SMSC's id as written (compare through NormalizeMessageID)
	State     ReceiptState // what Stat (or the message_state TLV) means
	Stat      string       // the raw stat word, e.g. "DELIVRD"; "" when absent
	Err       string       // the raw err value, e.g. "000"; network specific
	Submitted time.Time    // submit date, read as UTC; zero when absent or invalid
	Done      time.Time    // done date, read as UTC; zero when absent or invalid
	Sub       int          // sub: parts submitted (appendix B: "number of short messages originally submitted")
	Dlvrd     int          // dlvrd: parts delivered
	Text      string       // text: the first characters of the message, everything after "text:" verbatim
}

// ErrNotReceipt is returned by ParseReceiptText for text with neither an id nor a stat.
var ErrNotReceipt = errors.New("smpp: not a delivery receipt")

// statStates maps stat words, upper-cased, to states: the appendix B words, the spelled-out
// forms some SMSCs write, and message_state numbers written as text.
var statStates = map[string]ReceiptState{
	"DELIVRD": StateDelivered, "DELIVERED": StateDelivered, "DELIVR": StateDelivered, "2": StateDelivered,
	"EXPIRED": StateExpired, "3": StateExpired,
	"DELETED": StateDeleted, "4": StateDeleted,
	"UNDELIV": StateUndeliverable, "UNDELIVERABLE": StateUndeliverable, "FAILED": StateUndeliverable, "5": StateUndeliverable,
	"ACCEPTD": StateAccepted, "ACCEPTED": StateAccepted, "6": StateAccepted,
	"UNKNOWN": StateUnknown, "7": StateUnknown,
	"REJECTD": StateRejected, "REJECTED": StateRejected, "8": StateRejected,
	"ENROUTE": StateEnroute, "1": StateEnroute,
}

// stateWords is the appendix B stat word of each state, indexed by message_state.
var stateWords = [...]struct {
	state ReceiptState
	word  string
}{
	1: {StateEnroute, "ENROUTE"}, 2: {StateDelivered, "DELIVRD"}, 3: {StateExpired, "EXPIRED"},
	4: {StateDeleted, "DELETED"}, 5: {StateUndeliverable, "UNDELIV"}, 6: {StateAccepted, "ACCEPTD"},
	7: {StateUnknown, "UNKNOWN"}, 8: {StateRejected, "REJECTD"},
}

// StateFromStat returns the state a stat word means, case-insensitively; StateUnknown
// for a word it does not know.
func StateFromStat(stat string) ReceiptState {
	if s, ok := statStates[strings.ToUpper(stat)]; ok {
		return s
	}
	return StateUnknown
}

// ParseReceiptText parses the short_message of a delivery receipt:
//
//	id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...
//
// It is lenient, as receipts in the field are: keys in any case and order ("submit_date"
// and "submit  date" too), fields missing or added, runs of spaces, a space after the
// colon, dates with or without seconds, ids in hex or decimal. Everything after the first
// "text:" is the text, colons and all. Each other value runs to the next space. An
// unreadable number is 0 and an unreadable date the zero time; only text with neither an
// id nor a stat is an error (ErrNotReceipt).
func ParseReceiptText(s string) (Receipt, error) {
	s = strings.TrimRight(s, "\x00")
	head := s
	var r Receipt
	if i := indexKey(s, "text:"); i >= 0 {
		head, r.Text = s[:i], s[i+len("text:"):]
	}
	seen := 0
	for head != "" {
		key, value, rest, ok := nextField(head)
		if !ok {
			break
		}
		head = rest
		bit := r.set(key, value, seen)
		seen |= bit
	}
	if r.MessageID == "" && r.Stat == "" {
		return Receipt{}, ErrNotReceipt
	}
	r.State = StateUnknown
	if r.Stat != "" {
		r.State = StateFromStat(r.Stat)
	}
	return r, nil
}

// set stores one field unless an earlier one with the same key was seen (the first wins),
// and returns the bit recording that it has been seen.
func (r *Receipt) set(key, value string, seen int) int {
	var bit int
	switch key {
	case "id":
		bit = 1 << 0
	case "sub":
		bit = 1 << 1
	case "dlvrd":
		bit = 1 << 2
	case "submitdate":
		bit = 1 << 3
	case "donedate":
		bit = 1 << 4
	case "stat":
		bit = 1 << 5
	case "err":
		bit = 1 << 6
	default:
		return 0
	}
	if seen&bit != 0 {
		return 0
	}
	switch key {
	case "id":
		r.MessageID = value
	case "sub":
		r.Sub = parseCount(value)
	case "dlvrd":
		r.Dlvrd = parseCount(value)
	case "submitdate":
		r.Submitted = parseReceiptDate(value)
	case "donedate":
		r.Done = parseReceiptDate(value)
	case "stat":
		r.Stat = value
	case "err":
		r.Err = value
	}
	return bit
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// indexKey finds key (lower case, ending in ':') case-insensitively at the start of s or
// after a space.
func indexKey(s, key string) int {
	for i := 0; i+len(key) <= len(s); i++ {
		if s[i]|0x20 == key[0] && (i == 0 || isSpace(s[i-1])) && strings.EqualFold(s[i:i+len(key)], key) {
			return i
		}
	}
	return -1
}

// nextField reads "key:value" from the start of s, skipping spaces first, and returns
// the normalised key (lower case, without spaces, '_' or '-'), the value and the rest.
// Words before the key that are not part of it ("junk id:1") are skipped; only
// "submit date" and "done date" keep two words.
func nextField(s string) (key, value, rest string, ok bool) {
	s = strings.TrimLeft(s, " \t\r\n")
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return "", "", "", false
	}
	key, s = normKey(s[:colon]), s[colon+1:]
	// A value normally starts right after the colon. After "key: " it starts at the next
	// word, unless that word is itself a key ("err: stat:DELIVRD" has an empty err).
	if s != "" && isSpace(s[0]) {
		t := strings.TrimLeft(s, " \t\r\n")
		end := wordEnd(t)
		if strings.IndexByte(t[:end], ':') >= 0 {
			return key, "", t, true
		}
		s = t
	}
	end := wordEnd(s)
	return key, s[:end], s[end:], true
}

func wordEnd(s string) int {
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			return i
		}
	}
	return len(s)
}

func normKey(k string) string {
	k = strings.TrimRight(k, " \t\r\n")
	start := strings.LastIndexAny(k, " \t\r\n") + 1
	last := k[start:]
	if strings.EqualFold(last, "date") && start > 0 {
		prev := strings.TrimRight(k[:start], " \t\r\n")
		last = k[strings.LastIndexAny(prev, " \t\r\n")+1 : len(prev)]
		return keyName(last, true)
	}
	return keyName(last, false)
}

// keyName matches a receipt key case-insensitively, ignoring '_' and '-', without
// allocating; date tells that the key was followed by the separate word "date".
func keyName(w string, date bool) string {
	var buf [16]byte
	n := 0
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c == '_' || c == '-' {
			continue
		}
		if n == len(buf) {
			return ""
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	if date {
		switch string(buf[:n]) {
		case "submit":
			return "submitdate"
		case "done":
			return "donedate"
		}
		return ""
	}
	switch string(buf[:n]) {
	case "id":
		return "id"
	case "sub":
		return "sub"
	case "dlvrd":
		return "dlvrd"
	case "submitdate":
		return "submitdate"
	case "donedate":
		return "donedate"
	case "stat":
		return "stat"
	case "err":
		return "err"
	}
	return ""
}

// parseCount reads a sub/dlvrd count: leading digits, 0 when there are none or too many.
func parseCount(v string) int {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(v[:end])
	if err != nil || n > 1<<20 {
		return 0
	}
	return n
}

// parseReceiptDate reads YYMMDDhhmm or YYMMDDhhmmss (years 2000-2099) as UTC; anything
// else, or an impossible date, is the zero time.
func parseReceiptDate(v string) time.Time {
	if len(v) != 10 && len(v) != 12 {
		return time.Time{}
	}
	var f [6]int
	for i := 0; i < len(v)/2; i++ {
		a, b := v[2*i], v[2*i+1]
		if a < '0' || a > '9' || b < '0' || b > '9' {
			return time.Time{}
		}
		f[i] = int(a-'0')*10 + int(b-'0')
	}
	if f[1] < 1 || f[1] > 12 || f[2] < 1 || f[3] > 23 || f[4] > 59 || f[5] > 59 {
		return time.Time{}
	}
	t := time.Date(2000+f[0], time.Month(f[1]), f[2], f[3], f[4], f[5], 0, time.UTC)
	if t.Day() != f[2] { // 31 February
		return time.Time{}
	}
	return t
}

// FormatReceiptText writes r in the SMPP 3.4 appendix B format, dates with seconds:
// what ParseReceiptText reads back to the same fields (State aside, which follows Stat).
// Empty id, stat and err and zero dates are left out.
func FormatReceiptText(r Receipt) string {
	var b strings.Builder
	b.Grow(100 + len(r.MessageID) + len(r.Text))
	field := func(k, v string) {
		if v == "" {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString(v)
	}
	date := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("060102150405")
	}
	field("id:", r.MessageID)
	field("sub:", pad3(r.Sub))
	field("dlvrd:", pad3(r.Dlvrd))
	field("submit date:", date(r.Submitted))
	field("done date:", date(r.Done))
	field("stat:", r.Stat)
	field("err:", r.Err)
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString("text:")
	b.WriteString(r.Text)
	return b.String()
}

func pad3(n int) string {
	s := strconv.Itoa(n)
	if len(s) < 3 {
		s = "000"[len(s):] + s
	}
	return s
}

// ReceiptFromTLVs lays the receipted_message_id (0x001E, a C-string) and message_state
// (0x0427, one octet) TLVs of a deliver_sm over r, which is what ParseReceiptText made
// of the same deliver_sm's text (or the zero Receipt). Pass the raw TLV values, nil when
// absent. The TLVs win where present and valid: an empty id or a state outside 1-8 is
// ignored. Stat stays the text's raw word; when the text had none, it becomes the
// appendix B word of the TLV state.
func ReceiptFromTLVs(r Receipt, receiptedMessageID, messageState []byte) Receipt {
	if id := strings.TrimRight(string(receiptedMessageID), "\x00"); strings.TrimSpace(id) != "" {
		r.MessageID = id
	}
	if len(messageState) == 1 && messageState[0] >= 1 && int(messageState[0]) < len(stateWords) {
		w := stateWords[messageState[0]]
		r.State = w.state
		if r.Stat == "" {
			r.Stat = w.word
		}
	}
	if r.State == "" {
		r.State = StateUnknown
	}
	return r
}

// NormalizeMessageID returns the canonical form of an SMSC message id, so that the id of
// a submit_sm_resp and the id of its receipt compare equal with == even when the SMSC
// writes one in hex and the other in decimal. format is how id is written: "hex",
// "decimal", or "" when unknown.
//
// The rule: surrounding spaces and NULs go; an id that reads as an unsigned 64-bit number
// in its format becomes that number in lower-case hex without leading zeros ("0x" is
// allowed before hex). With format "" an id of decimal digits reads as decimal, else as
// hex. An id that does not read in its format but reads as hex is taken as hex (a
// misconfigured format still matches itself); anything else (UUIDs, ids longer than 64
// bits) is kept verbatim, lower-cased, so it compares case-insensitively.
//
// The canonical form is a fixed point in "hex": NormalizeMessageID(NormalizeMessageID(id,
// f), "hex") == NormalizeMessageID(id, f) for every f.
func NormalizeMessageID(id string, format string) string {
	id = strings.Trim(id, " \t\r\n\x00")
	if format == "decimal" || (format == "" && isDecimal(id)) {
		if v, err := strconv.ParseUint(id, 10, 64); err == nil {
			return strconv.FormatUint(v, 16)
		}
	}
	h := id
	if len(h) > 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X') {
		h = h[2:]
	}
	if v, err := strconv.ParseUint(h, 16, 64); err == nil {
		return strconv.FormatUint(v, 16)
	}
	return strings.ToLower(id)
}

func isDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
