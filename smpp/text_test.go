package smpp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSplitTextSizes(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		force    Coding
		coding   Coding
		payloads []int // payload octets per segment
	}{
		{"empty", "", 0, CodingGSM7, []int{0}},
		{"short gsm", "Stock ORS 20", 0, CodingGSM7, []int{12}},
		{"gsm 160", strings.Repeat("a", 160), 0, CodingGSM7, []int{160}},
		{"gsm 161", strings.Repeat("a", 161), 0, CodingGSM7, []int{153, 8}},
		{"gsm 306", strings.Repeat("a", 306), 0, CodingGSM7, []int{153, 153}},
		{"gsm 307", strings.Repeat("a", 307), 0, CodingGSM7, []int{153, 153, 1}},
		{"gsm escapes fit 160", strings.Repeat("€", 80), 0, CodingGSM7, []int{160}},
		{"gsm escapes 81", strings.Repeat("€", 81), 0, CodingGSM7, []int{152, 10}},
		{"escape pair not split", strings.Repeat("a", 152) + "{" + strings.Repeat("b", 10), 0, CodingGSM7, []int{152, 12}},
		{"escape pair at edge fits", strings.Repeat("a", 151) + "{" + strings.Repeat("b", 10), 0, CodingGSM7, []int{153, 10}},
		{"gsm specials", "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà", 0, CodingGSM7, []int{41}},
		{"curly quote goes ucs2", "It’s time", 0, CodingUCS2, []int{18}},
		{"ucs2 70", strings.Repeat("é’", 35), 0, CodingUCS2, []int{140}},
		{"ucs2 71", strings.Repeat("ж", 71), 0, CodingUCS2, []int{134, 8}},
		{"emoji counts two units", strings.Repeat("😀", 35), 0, CodingUCS2, []int{140}},
		{"surrogate pair not split", strings.Repeat("ж", 66) + "😀" + strings.Repeat("ж", 5), 0, CodingUCS2, []int{132, 14}},
		{"forced ucs2", "hello", CodingUCS2, CodingUCS2, []int{10}},
		{"forced latin1", "café", CodingLatin1, CodingLatin1, []int{4}},
		{"latin1 141", strings.Repeat("é", 141), CodingLatin1, CodingLatin1, []int{134, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			segs, err := SplitText(tt.text, 7, tt.force)
			if err != nil {
				t.Fatalf("SplitText(%q) error: %v", tt.text, err)
			}
			var got []int
			for _, s := range segs {
				got = append(got, len(s.Payload))
				if s.Coding != tt.coding {
					t.Errorf("segment coding = %#x, want %#x", s.Coding, tt.coding)
				}
			}
			if !equalInts(got, tt.payloads) {
				t.Fatalf("payload sizes = %v, want %v", got, tt.payloads)
			}
			n, c := CountSegments(tt.text)
			if tt.force == 0 && (n != len(segs) || c != tt.coding) {
				t.Errorf("CountSegments = %d, %#x; want %d, %#x", n, c, len(segs), tt.coding)
			}
			assertRoundTrip(t, tt.text, 7, segs)
		})
	}
}

func TestSplitTextUDH(t *testing.T) {
	segs, err := SplitText(strings.Repeat("x", 400), 0xAB, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		want := []byte{0x05, 0x00, 0x03, 0xAB, 3, byte(i + 1)}
		if !bytes.Equal(s.UDH, want) {
			t.Errorf("segment %d UDH = % x, want % x", i, s.UDH, want)
		}
	}
	single, _ := SplitText("hi", 1, 0)
	if single[0].UDH != nil {
		t.Errorf("single segment UDH = % x, want nil", single[0].UDH)
	}
}

func TestSplitTextGSM7Encoding(t *testing.T) {
	segs, err := SplitText("A@€{\n", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x41, 0x00, 0x1B, 0x65, 0x1B, 0x28, 0x0A}
	if !bytes.Equal(segs[0].Payload, want) {
		t.Errorf("payload = % x, want % x", segs[0].Payload, want)
	}
	segs, _ = SplitText("a😀", 0, 0)
	want = []byte{0x00, 0x61, 0xD8, 0x3D, 0xDE, 0x00}
	if !bytes.Equal(segs[0].Payload, want) {
		t.Errorf("UCS-2 payload = % x, want % x", segs[0].Payload, want)
	}
}

func TestSplitTextErrors(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		force Coding
		want  error
	}{
		{"invalid utf8", "ab\xffcd", 0, ErrInvalidUTF8},
		{"latin1 cannot carry", "ж", CodingLatin1, ErrNotEncodable},
		{"unknown coding", "x", 0x04, ErrUnknownCoding},
		{"too long", strings.Repeat("a", 153*255+1), 0, ErrTextTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := SplitText(tt.text, 0, tt.force); !errors.Is(err, tt.want) {
				t.Errorf("SplitText error = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := SplitText(strings.Repeat("a", 153*255), 0, 0); err != nil {
		t.Errorf("255 parts: %v", err)
	}
}

func TestCountSegmentsNoAllocs(t *testing.T) {
	text := strings.Repeat("Habari ya asubuhi {€} ", 20)
	if n := testing.AllocsPerRun(100, func() { CountSegments(text) }); n != 0 {
		t.Errorf("CountSegments allocs = %v, want 0", n)
	}
}

func TestDecodeText(t *testing.T) {
	tests := []struct {
		name    string
		coding  Coding
		in      []byte
		want    string
		wantErr error
	}{
		{"gsm basic", CodingGSM7, []byte{0x48, 0x69, 0x00, 0x02}, "Hi@$", nil},
		{"gsm ext", CodingGSM7, []byte{0x1B, 0x65, 0x1B, 0x3C}, "€[", nil},
		{"gsm unknown ext falls back", CodingGSM7, []byte{0x1B, 0x41}, "A", nil},
		{"gsm trailing escape", CodingGSM7, []byte{0x41, 0x1B}, "A", nil},
		{"gsm high bit", CodingGSM7, []byte{0x41, 0x80}, "", ErrInvalidGSM7},
		{"ascii", CodingASCII, []byte("STOCK 5"), "STOCK 5", nil},
		{"latin1", CodingLatin1, []byte{0x63, 0x61, 0x66, 0xE9}, "café", nil},
		{"ucs2", CodingUCS2, []byte{0x04, 0x36, 0xD8, 0x3D, 0xDE, 0x00}, "ж😀", nil},
		{"ucs2 odd", CodingUCS2, []byte{0x00}, "", ErrInvalidUCS2},
		{"ucs2 lone surrogate", CodingUCS2, []byte{0xD8, 0x3D}, "\uFFFD", nil},
		{"binary", 0x04, []byte{1}, "", ErrUnknownCoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeText(tt.coding, tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("DecodeText(%#x, % x) = %q, %v; want %q, %v", tt.coding, tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseUDH(t *testing.T) {
	tests := []struct {
		name    string
		sm      []byte
		udh     int // header octets, length octet included
		concat  *ConcatInfo
		wantErr bool
	}{
		{"8-bit ref", []byte{5, 0, 3, 0x2A, 3, 2, 'h', 'i'}, 6, &ConcatInfo{Ref: 0x2A, Total: 3, Seq: 2}, false},
		{"16-bit ref", []byte{6, 8, 4, 0x12, 0x34, 2, 1, 'x'}, 7, &ConcatInfo{Ref: 0x1234, Total: 2, Seq: 1}, false},
		{"port addressing then concat", []byte{11, 5, 4, 0x0B, 0x84, 0x23, 0xF0, 0, 3, 9, 2, 2}, 12, &ConcatInfo{Ref: 9, Total: 2, Seq: 2}, false},
		{"no concat", []byte{4, 5, 2, 1, 2, 'x'}, 5, nil, false},
		{"seq zero ignored", []byte{5, 0, 3, 1, 2, 0}, 6, nil, false},
		{"seq over total ignored", []byte{5, 0, 3, 1, 2, 3}, 6, nil, false},
		{"empty header", []byte{0, 'a'}, 1, nil, false},
		{"empty", nil, 0, nil, true},
		{"header overruns", []byte{9, 0, 3}, 0, nil, true},
		{"element overruns", []byte{3, 0, 3, 1}, 0, nil, true},
		{"element missing length", []byte{1, 0}, 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			udh, body, concat, err := ParseUDH(tt.sm)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseUDH(% x) error = %v, wantErr %v", tt.sm, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(udh) != tt.udh || !bytes.Equal(body, tt.sm[tt.udh:]) {
				t.Errorf("ParseUDH(% x) = udh % x, body % x", tt.sm, udh, body)
			}
			if (concat == nil) != (tt.concat == nil) || (concat != nil && *concat != *tt.concat) {
				t.Errorf("ParseUDH(% x) concat = %+v, want %+v", tt.sm, concat, tt.concat)
			}
		})
	}
}

func FuzzDecodeText(f *testing.F) {
	f.Add(byte(0x00), []byte("Hello"))                    // plain GSM7 septets
	f.Add(byte(0x00), []byte{0x1B, 0x65, 0x1B})           // euro then a dangling escape
	f.Add(byte(0x08), []byte{0xD8, 0x3D, 0xDE, 0x00})     // UCS-2 surrogate pair (emoji)
	f.Add(byte(0x08), []byte{0xDE, 0x00, 0x00})           // odd length, lone low surrogate
	f.Add(byte(0x03), []byte{0xE9, 0xFF})                 // Latin-1 high octets
	f.Add(byte(0xF0), []byte{0x41})                       // class-0 DCS we do not support
	f.Add(byte(0x00), []byte("Mambo! {ORS} ~20 [ok] €5")) // extension table characters
	f.Fuzz(func(t *testing.T, coding byte, b []byte) {
		s, err := DecodeText(Coding(coding), b)
		if err != nil {
			return
		}
		if !utf8.ValidString(s) {
			t.Fatalf("DecodeText(%#x, % x) = invalid UTF-8 %q", coding, b, s)
		}
		// What decoded must encode again and decode to the same text.
		segs, err := SplitText(s, 1, 0)
		if err != nil {
			if errors.Is(err, ErrTextTooLong) {
				return
			}
			t.Fatalf("SplitText(%q) error: %v", s, err)
		}
		assertRoundTrip(t, s, 1, segs)
	})
}

func FuzzParseUDH(f *testing.F) {
	f.Add([]byte{5, 0, 3, 1, 2, 1, 'h', 'i'}, "")             // 8-bit concat header
	f.Add([]byte{6, 8, 4, 1, 2, 2, 2}, "")                    // 16-bit concat header, empty body
	f.Add([]byte{255}, "")                                    // length far beyond the message
	f.Add([]byte{2, 0, 9}, "")                                // element length overrun
	f.Add([]byte(nil), strings.Repeat("Ripoti ya dawa ", 20)) // long GSM text to split
	f.Add([]byte(nil), strings.Repeat("Отчёт 😀 ", 12))        // long UCS-2 with emoji
	f.Fuzz(func(t *testing.T, sm []byte, text string) {
		udh, body, concat, err := ParseUDH(sm)
		if err == nil {
			if len(udh)+len(body) != len(sm) || len(udh) == 0 {
				t.Fatalf("ParseUDH(% x) = % x + % x", sm, udh, body)
			}
			if concat != nil && (concat.Seq == 0 || concat.Seq > concat.Total) {
				t.Fatalf("ParseUDH(% x) kept invalid concat %+v", sm, concat)
			}
		}
		segs, err := SplitText(text, 9, 0)
		if err != nil {
			return
		}
		assertRoundTrip(t, text, 9, segs)
	})
}

// assertRoundTrip checks segs against text: each part parses back through ParseUDH, the
// parts decode to text, and no part is over its limit.
func assertRoundTrip(t *testing.T, text string, ref uint8, segs []Segment) {
	t.Helper()
	var sb strings.Builder
	for i, s := range segs {
		body := s.Payload
		if len(segs) > 1 {
			_, b, concat, err := ParseUDH(s.ShortMessage())
			want := ConcatInfo{Ref: uint16(ref), Total: uint8(len(segs)), Seq: uint8(i + 1)}
			if err != nil || concat == nil || *concat != want {
				t.Fatalf("segment %d: ParseUDH = %+v, %v; want %+v", i, concat, err, want)
			}
			body = b
		}
		if len(s.UDH)+len(s.Payload) > 160 || (s.Coding != CodingGSM7 && len(s.UDH)+len(s.Payload) > 140) {
			t.Fatalf("segment %d is %d+%d octets", i, len(s.UDH), len(s.Payload))
		}
		part, err := DecodeText(s.Coding, body)
		if err != nil {
			t.Fatalf("segment %d: DecodeText: %v", i, err)
		}
		sb.WriteString(part)
	}
	if sb.String() != text {
		t.Fatalf("round trip = %q, want %q", sb.String(), text)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func BenchmarkSplitText(b *testing.B) {
	benches := []struct {
		name string
		text string
	}{
		{"short-gsm", "Reminder: submit your ORS stock report today. Reply STOCK ORS <qty>."},
		{"long-gsm", strings.Repeat("Measles outbreak alert for Bong county: report suspected cases {now}. ", 8)},
		{"ucs2", strings.Repeat("Rappel : déclarez le stock d’ORS aujourd’hui 😀 ", 4)},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bb.text)))
			for b.Loop() {
				if _, err := SplitText(bb.text, 1, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
