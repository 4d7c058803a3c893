package smpp

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// Coding is an SMPP data_coding value.
type Coding uint8

// The data_coding values mhero sends and understands.
const (
	CodingGSM7   Coding = 0x00 // SMSC default alphabet: GSM 03.38, unpacked, one septet per octet
	CodingASCII  Coding = 0x01 // IA5 / ASCII; decoded only
	CodingLatin1 Coding = 0x03 // ISO-8859-1
	CodingUCS2   Coding = 0x08 // UCS-2, sent as UTF-16BE (astral characters as surrogate pairs)
)

// Segment is one short_message of a text, ready for a submit_sm.
type Segment struct {
	UDH     []byte // user data header, length octet included (05 00 03 ref total seq); nil for a single part
	Payload []byte // encoded body without the UDH: GSM7 as unpacked septets, Latin-1 octets or UTF-16BE
	Coding  Coding // data_coding for this segment; every segment of a text has the same one
}

// ShortMessage returns the short_message octets: UDH then payload. It allocates.
func (s Segment) ShortMessage() []byte {
	b := make([]byte, 0, len(s.UDH)+len(s.Payload))
	return append(append(b, s.UDH...), s.Payload...)
}

// ConcatInfo is what a concatenation information element says about one part.
type ConcatInfo struct {
	Ref   uint16 // reference shared by all parts (8- or 16-bit in the UDH)
	Total uint8  // number of parts
	Seq   uint8  // this part, from 1
}

// Errors of the text functions.
var (
	ErrTextTooLong   = errors.New("smpp: text needs more than 255 segments")
	ErrInvalidUTF8   = errors.New("smpp: text is not valid UTF-8")
	ErrNotEncodable  = errors.New("smpp: text has characters the coding cannot carry")
	ErrUnknownCoding = errors.New("smpp: unsupported data_coding")
	ErrInvalidGSM7   = errors.New("smpp: invalid GSM 7-bit septet")
	ErrInvalidUCS2   = errors.New("smpp: UCS-2 text has an odd number of octets")
	ErrInvalidUDH    = errors.New("smpp: malformed user data header")
)

// Per-segment limits. A concatenated part carries a 6-octet UDH (05 00 03 ref total seq),
// which costs 7 septets of the 160 on the air interface and 6 of the 140 octets otherwise.
const (
	gsm7Single   = 160 // septets
	gsm7Multi    = 153
	octetsSingle = 140 // Latin-1 octets
	octetsMulti  = 134
	ucs2Single   = 70 // UTF-16 code units
	ucs2Multi    = 67
	udhConcatLen = 6
	maxSegments  = 255
	gsm7Escape   = 0x1B
)

// gsm7Basic is the GSM 03.38 default alphabet, indexed by septet. 0x1B is the escape to
// the extension table and has no character of its own.
var gsm7Basic = [128]rune{
	'@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
	'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 0x1B, 'Æ', 'æ', 'ß', 'É',
	' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	'¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
	'¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
}

// gsm7Ext is the extension table: septet after 0x1B → character. Form feed is included
// because 03.38 defines it (it costs two septets like the others).
var gsm7Ext = map[byte]rune{
	0x0A: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2F: '\\',
	0x3C: '[', 0x3D: '~', 0x3E: ']', 0x40: '|', 0x65: '€',
}

// gsm7Code maps a character to its septet; gsm7Ext bit set means it needs the escape.
const gsm7ExtFlag = 0x100

var (
	gsm7ASCII [128]uint16 // 0 = not encodable; else code+1 (| gsm7ExtFlag)
	gsm7Other = map[rune]uint16{}
)

func init() {
	for code, r := range gsm7Basic {
		if code == gsm7Escape {
			continue
		}
		gsm7Set(r, uint16(code))
	}
	for code, r := range gsm7Ext {
		gsm7Set(r, uint16(code)|gsm7ExtFlag)
	}
}

func gsm7Set(r rune, v uint16) {
	if r < utf8.RuneSelf {
		gsm7ASCII[r] = v + 1
		return
	}
	gsm7Other[r] = v + 1
}

// gsm7Lookup returns the septet for r, whether it needs the escape, and whether r is in
// the GSM 03.38 default alphabet or its extension table at all.
func gsm7Lookup(r rune) (code byte, ext, ok bool) {
	var v uint16
	if r >= 0 && r < utf8.RuneSelf {
		v = gsm7ASCII[r]
	} else {
		v = gsm7Other[r]
	}
	if v == 0 {
		return 0, false, false
	}
	v--
	return byte(v), v&gsm7ExtFlag != 0, true
}

// IsGSM7 reports whether text can be sent in the GSM 03.38 default alphabet (with its
// extension table).
func IsGSM7(text string) bool {
	for _, r := range text {
		if _, _, ok := gsm7Lookup(r); !ok {
			return false // invalid UTF-8 reads as U+FFFD, which GSM lacks
		}
	}
	return true
}

// limits returns the size of a single segment and of a concatenated part, in the unit
// the coding counts (septets, octets or UTF-16 units).
func limits(c Coding) (single, multi int) {
	switch c {
	case CodingGSM7:
		return gsm7Single, gsm7Multi
	case CodingUCS2:
		return ucs2Single, ucs2Multi
	default:
		return octetsSingle, octetsMulti
	}
}

// cost is what r costs in coding c, 0 when c cannot carry it.
func cost(c Coding, r rune) int {
	switch c {
	case CodingGSM7:
		_, ext, ok := gsm7Lookup(r)
		switch {
		case !ok:
			return 0
		case ext:
			return 2
		}
		return 1
	case CodingLatin1:
		if r < 0 || r > 0xFF {
			return 0
		}
		return 1
	default: // UCS-2 carries everything as UTF-16
		if r >= 0x10000 {
			return 2
		}
		return 1
	}
}

// plan chooses the coding (auto when force is 0 = CodingGSM7) and counts the segments
// with the same greedy cut SplitText makes: a character never straddles two parts, so an
// escape pair or a surrogate pair that does not fit moves whole to the next part.
func plan(text string, force Coding) (coding Coding, n int, err error) {
	coding = force
	if force == CodingGSM7 && !IsGSM7(text) {
		coding = CodingUCS2
	}
	switch coding {
	case CodingGSM7, CodingLatin1, CodingUCS2:
	default:
		return coding, 0, fmt.Errorf("%w: %#02x", ErrUnknownCoding, uint8(force))
	}
	single, multi := limits(coding)
	total, parts, cur := 0, 1, 0
	for _, r := range text {
		c := cost(coding, r)
		if c == 0 {
			return coding, 0, ErrNotEncodable
		}
		total += c
		if cur+c > multi {
			parts++
			cur = 0
		}
		cur += c
	}
	if total <= single {
		return coding, 1, nil
	}
	return coding, parts, nil
}

// CountSegments returns how many segments text needs and in which coding, as SplitText
// would send it with automatic coding. It does not allocate. Invalid UTF-8 counts as
// U+FFFD in UCS-2 (SplitText refuses it): a billing estimate, not a promise.
func CountSegments(text string) (n int, coding Coding) {
	coding, n, _ = plan(text, CodingGSM7)
	return n, coding
}

// SplitText encodes text and, when it does not fit one short_message, splits it into
// concatenated parts with an 8-bit reference UDH (05 00 03 ref total seq).
//
// force 0 means automatic: GSM 7-bit when every character is in the GSM 03.38 default
// alphabet or its extension table, UCS-2 otherwise. CodingUCS2 or CodingLatin1 force
// that coding (for SMSCs that misread one); Latin-1 fails with ErrNotEncodable on a
// character above U+00FF.
//
// No character is outside every coding: UCS-2 is sent as UTF-16BE, so characters beyond
// the Basic Multilingual Plane (emoji) travel as surrogate pairs, count as two units and
// are never split across parts. Invalid UTF-8 is refused (ErrInvalidUTF8) rather than
// silently replaced. More than 255 parts is ErrTextTooLong.
//
// The segments share two backing arrays (one for payloads, one for UDHs).
func SplitText(text string, ref uint8, force Coding) ([]Segment, error) {
	if !utf8.ValidString(text) {
		return nil, ErrInvalidUTF8
	}
	coding, n, err := plan(text, force)
	if err != nil {
		return nil, err
	}
	if n > maxSegments {
		return nil, ErrTextTooLong
	}
	single, multi := limits(coding)
	unit := 1
	if coding == CodingUCS2 {
		unit = 2
	}
	limit := multi
	if n == 1 {
		limit = single
	}
	segs := make([]Segment, 0, n)
	buf := make([]byte, 0, n*limit*unit)
	var udhs []byte
	if n > 1 {
		udhs = make([]byte, 0, n*udhConcatLen)
	}
	start, cur := 0, 0
	cut := func() {
		s := Segment{Payload: buf[start:len(buf):len(buf)], Coding: coding}
		if n > 1 {
			u := len(udhs)
			udhs = append(udhs, 0x05, 0x00, 0x03, ref, uint8(n), uint8(len(segs)+1))
			s.UDH = udhs[u:len(udhs):len(udhs)]
		}
		segs = append(segs, s)
		start, cur = len(buf), 0
	}
	for _, r := range text {
		c := cost(coding, r)
		if cur+c > limit {
			cut()
		}
		cur += c
		buf = appendRune(buf, coding, r)
	}
	cut()
	return segs, nil
}

// appendRune appends r encoded in c; plan has already checked that c carries r.
func appendRune(b []byte, c Coding, r rune) []byte {
	switch c {
	case CodingGSM7:
		code, ext, _ := gsm7Lookup(r)
		if ext {
			return append(b, gsm7Escape, code)
		}
		return append(b, code)
	case CodingLatin1:
		return append(b, byte(r))
	}
	if r >= 0x10000 {
		r1, r2 := utf16.EncodeRune(r)
		return append(b, byte(r1>>8), byte(r1), byte(r2>>8), byte(r2))
	}
	return append(b, byte(r>>8), byte(r))
}

// DecodeText decodes a short_message body (without its UDH) of the given data_coding:
// GSM 7-bit unpacked (one septet per octet), IA5/ASCII, Latin-1 and UCS-2/UTF-16BE.
//
// GSM: an escape followed by a septet the extension table lacks decodes as that
// septet's basic character (3GPP TS 23.038 §6.2.1.1); a trailing lone escape is
// dropped; an octet above 0x7F is ErrInvalidGSM7 (the SMSC likely meant Latin-1: the
// caller may retry with CodingLatin1). UCS-2: an unpaired surrogate decodes as U+FFFD.
// Any other data_coding is ErrUnknownCoding.
func DecodeText(coding Coding, b []byte) (string, error) {
	switch coding {
	case CodingGSM7:
		return decodeGSM7(b)
	case CodingASCII:
		for _, c := range b {
			if c >= utf8.RuneSelf {
				return "", fmt.Errorf("smpp: IA5 octet %#02x above 0x7F", c)
			}
		}
		return string(b), nil
	case CodingLatin1:
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r), nil
	case CodingUCS2:
		if len(b)%2 != 0 {
			return "", ErrInvalidUCS2
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
		}
		return string(utf16.Decode(u)), nil
	}
	return "", fmt.Errorf("%w: %#02x", ErrUnknownCoding, uint8(coding))
}

func decodeGSM7(b []byte) (string, error) {
	out := make([]byte, 0, len(b)+len(b)/2)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 0x80 {
			return "", fmt.Errorf("%w: %#02x at %d", ErrInvalidGSM7, c, i)
		}
		if c != gsm7Escape {
			out = utf8.AppendRune(out, gsm7Basic[c])
			continue
		}
		if i+1 == len(b) {
			break // lone trailing escape
		}
		i++
		e := b[i]
		if e >= 0x80 {
			return "", fmt.Errorf("%w: %#02x at %d", ErrInvalidGSM7, e, i)
		}
		if r, ok := gsm7Ext[e]; ok {
			out = utf8.AppendRune(out, r)
		} else if e != gsm7Escape {
			out = utf8.AppendRune(out, gsm7Basic[e])
		}
	}
	return string(out), nil
}

// ParseUDH splits a short_message sent with UDHI (esm_class 0x40) into its user data
// header (length octet included), the body after it, and the concatenation element when
// there is one: IEI 0x00 (8-bit reference) or 0x08 (16-bit reference). As 23.040
// §9.2.3.24.1 says, a concatenation element whose sequence is 0 or above its total is
// ignored (concat nil); a header whose lengths overrun the message is ErrInvalidUDH.
// udh and body alias sm.
func ParseUDH(sm []byte) (udh, body []byte, concat *ConcatInfo, err error) {
	if len(sm) == 0 {
		return nil, nil, nil, ErrInvalidUDH
	}
	n := int(sm[0]) + 1
	if n > len(sm) {
		return nil, nil, nil, fmt.Errorf("%w: header length %d over %d octets", ErrInvalidUDH, n-1, len(sm))
	}
	udh, body = sm[:n:n], sm[n:]
	for ie := udh[1:]; len(ie) > 0; {
		if len(ie) < 2 || int(ie[1])+2 > len(ie) {
			return nil, nil, nil, fmt.Errorf("%w: information element overruns the header", ErrInvalidUDH)
		}
		iei, data := ie[0], ie[2:2+int(ie[1])]
		ie = ie[2+len(data):]
		var c ConcatInfo
		switch {
		case iei == 0x00 && len(data) == 3:
			c = ConcatInfo{Ref: uint16(data[0]), Total: data[1], Seq: data[2]}
		case iei == 0x08 && len(data) == 4:
			c = ConcatInfo{Ref: uint16(data[0])<<8 | uint16(data[1]), Total: data[2], Seq: data[3]}
		default:
			continue
		}
		if concat == nil && c.Seq != 0 && c.Seq <= c.Total {
			concat = &c
		}
	}
	return udh, body, concat, nil
}
