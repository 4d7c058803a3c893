package smpp

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func date(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

func TestParseReceiptText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Receipt
	}{
		{
			name: "appendix B",
			in:   "id:1234567890 sub:001 dlvrd:001 submit date:2611251230 done date:2611251231 stat:DELIVRD err:000 text:Hello world",
			want: Receipt{MessageID: "1234567890", State: StateDelivered, Stat: "DELIVRD", Err: "000",
				Submitted: date(2026, 11, 25, 12, 30, 0), Done: date(2026, 11, 25, 12, 31, 0), Sub: 1, Dlvrd: 1, Text: "Hello world"},
		},
		{
			name: "seconds, upper-case keys, hex id",
			in:   "ID:0A1B2C3D SUB:001 DLVRD:000 SUBMIT DATE:261125123059 DONE DATE:261126000001 STAT:UNDELIV ERR:034 TEXT:",
			want: Receipt{MessageID: "0A1B2C3D", State: StateUndeliverable, Stat: "UNDELIV", Err: "034",
				Submitted: date(2026, 11, 25, 12, 30, 59), Done: date(2026, 11, 26, 0, 0, 1), Sub: 1},
		},
		{
			name: "text with colons and a key inside",
			in:   "id:77 stat:DELIVRD text:STOCK: ORS 20 stat:nothing",
			want: Receipt{MessageID: "77", State: StateDelivered, Stat: "DELIVRD", Text: "STOCK: ORS 20 stat:nothing"},
		},
		{
			name: "multiple spaces, underscores, space after colon",
			in:   "id: 42   sub:1  dlvrd:1   submit_date:2611251230  done  date:2611251230   stat:  EXPIRED  err:",
			want: Receipt{MessageID: "42", State: StateExpired, Stat: "EXPIRED", Sub: 1, Dlvrd: 1,
				Submitted: date(2026, 11, 25, 12, 30, 0), Done: date(2026, 11, 25, 12, 30, 0)},
		},
		{
			name: "missing fields and extras",
			in:   "id:abc-123 foo:bar stat:REJECTD nack:7 text:",
			want: Receipt{MessageID: "abc-123", State: StateRejected, Stat: "REJECTD"},
		},
		{
			name: "no stat",
			in:   "id:99 sub:001",
			want: Receipt{MessageID: "99", State: StateUnknown, Sub: 1},
		},
		{
			name: "empty err before stat",
			in:   "id:5 err: stat:ACCEPTD",
			want: Receipt{MessageID: "5", State: StateAccepted, Stat: "ACCEPTD"},
		},
		{
			name: "unknown stat word, bad dates, trailing NUL",
			in:   "id:6 submit date:2613451230 done date:26 stat:WEIRD\x00",
			want: Receipt{MessageID: "6", State: StateUnknown, Stat: "WEIRD"},
		},
		{
			name: "lower-case stat and text cut short",
			in:   "id:8 stat:delivrd err:0 text:Your reminder fo",
			want: Receipt{MessageID: "8", State: StateDelivered, Stat: "delivrd", Err: "0", Text: "Your reminder fo"},
		},
		{
			name: "first duplicate wins",
			in:   "id:1 id:2 stat:DELIVRD stat:UNDELIV",
			want: Receipt{MessageID: "1", State: StateDelivered, Stat: "DELIVRD"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReceiptText(tt.in)
			if err != nil {
				t.Fatalf("ParseReceiptText(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseReceiptText(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseReceiptTextNotReceipt(t *testing.T) {
	for _, in := range []string{"", "hello there", "sub:001 dlvrd:001", "text:id:1 stat:DELIVRD"} {
		t.Run(in, func(t *testing.T) {
			if _, err := ParseReceiptText(in); !errors.Is(err, ErrNotReceipt) {
				t.Errorf("ParseReceiptText(%q) error = %v, want ErrNotReceipt", in, err)
			}
		})
	}
}

func TestReceiptStateFinal(t *testing.T) {
	final := map[ReceiptState]bool{
		StateDelivered: true, StateUndeliverable: true, StateExpired: true, StateRejected: true, StateDeleted: true,
		StateEnroute: false, StateAccepted: false, StateUnknown: false,
	}
	for s, want := range final {
		if got := s.Final(); got != want {
			t.Errorf("%s.Final() = %v, want %v", s, got, want)
		}
	}
}

func TestReceiptFromTLVs(t *testing.T) {
	text := Receipt{MessageID: "2684354561", State: StateUnknown, Stat: "UNKNOWN"}
	tests := []struct {
		name      string
		r         Receipt
		id, state []byte
		want      Receipt
	}{
		{"TLVs win", text, []byte("A0000001\x00"), []byte{2},
			Receipt{MessageID: "A0000001", State: StateDelivered, Stat: "UNKNOWN"}},
		{"no text", Receipt{}, []byte("17\x00"), []byte{5},
			Receipt{MessageID: "17", State: StateUndeliverable, Stat: "UNDELIV"}},
		{"absent TLVs keep text", text, nil, nil, text},
		{"invalid state ignored", text, []byte("\x00"), []byte{9}, text},
		{"long state ignored", Receipt{}, nil, []byte{2, 0}, Receipt{State: StateUnknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ReceiptFromTLVs(tt.r, tt.id, tt.state); got != tt.want {
				t.Errorf("ReceiptFromTLVs = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNormalizeMessageID(t *testing.T) {
	tests := []struct {
		id, format, want string
	}{
		{"A0000001", "hex", "a0000001"},
		{"2684354561", "decimal", "a0000001"},
		{"0x00A0000001", "hex", "a0000001"},
		{"000123", "decimal", "7b"},
		{"000123", "hex", "123"},
		{"123", "", "7b"},
		{"1f", "", "1f"},
		{" 42\x00", "decimal", "2a"},
		{"0", "decimal", "0"},
		{"1a2b", "decimal", "1a2b"}, // misconfigured: still matches itself
		{"5F3C9A2E-1B4D-4C1E-9A3B-0E2D1F4A5B6C", "hex", "5f3c9a2e-1b4d-4c1e-9a3b-0e2d1f4a5b6c"},
		{"123456789012345678901234", "decimal", "123456789012345678901234"},
		{"", "hex", ""},
	}
	for _, tt := range tests {
		t.Run(tt.id+"/"+tt.format, func(t *testing.T) {
			got := NormalizeMessageID(tt.id, tt.format)
			if got != tt.want {
				t.Errorf("NormalizeMessageID(%q, %q) = %q, want %q", tt.id, tt.format, got, tt.want)
			}
			if again := NormalizeMessageID(got, "hex"); again != got {
				t.Errorf("NormalizeMessageID(%q, hex) = %q, not a fixed point", got, again)
			}
		})
	}
}

func FuzzParseReceiptText(f *testing.F) {
	// SMPP 3.4 appendix B, verbatim shape.
	f.Add("id:1234567890 sub:001 dlvrd:001 submit date:2611251230 done date:2611251231 stat:DELIVRD err:000 text:Hello")
	// Upper-case keys, seconds in the dates, hex id (Huawei/ZTE style SMSCs).
	f.Add("ID:0A1B2C3D SUB:001 DLVRD:001 SUBMIT DATE:261125123059 DONE DATE:261125123101 STAT:DELIVRD ERR:000 TEXT:")
	// Kannel's fake SMSC / many aggregators: underscores in date keys, no text.
	f.Add("id:77 sub:1 dlvrd:1 submit_date:2611251230 done_date:2611251230 stat:UNDELIV err:001")
	// Text with colons and an embedded key, cut short at 20 characters.
	f.Add("id:5 stat:DELIVRD err:0 text:STOCK: ORS 20 stat:x")
	// Double spaces and a space after the colon, as some SMSCs pad fields.
	f.Add("id: 42  sub:001  dlvrd:000  submit date:2611251230  done date:2611251230  stat: EXPIRED  err:")
	// Only id and stat, trailing NUL from a C-string short_message.
	f.Add("id:99 stat:ACCEPTD\x00")
	// Not a receipt at all: an MO text.
	f.Add("STOCK ORS 20")
	// Junk and invalid UTF-8.
	f.Add("::: id:\xff\xfe stat:: text")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReceiptText(s)
		if err != nil {
			return
		}
		if r.MessageID == "" && r.Stat == "" {
			t.Fatalf("ParseReceiptText(%q) = %+v with neither id nor stat", s, r)
		}
		switch r.State {
		case StateDelivered, StateExpired, StateDeleted, StateUndeliverable, StateAccepted, StateRejected, StateEnroute, StateUnknown:
		default:
			t.Fatalf("ParseReceiptText(%q) state %q", s, r.State)
		}
		if strings.ContainsAny(r.MessageID, " \t\r\n") || strings.ContainsAny(r.Stat, " \t\r\n") {
			t.Fatalf("ParseReceiptText(%q) kept spaces in %q / %q", s, r.MessageID, r.Stat)
		}
		// Format∘Parse round-trips.
		f := FormatReceiptText(r)
		r2, err := ParseReceiptText(f)
		if err != nil || r2 != r {
			t.Fatalf("ParseReceiptText(%q)\n  = %+v\nformatted %q\n  parses to %+v, %v", s, r, f, r2, err)
		}
		// Normalising twice equals normalising once.
		for _, format := range []string{"hex", "decimal", ""} {
			n := NormalizeMessageID(r.MessageID, format)
			if NormalizeMessageID(n, "hex") != n {
				t.Fatalf("NormalizeMessageID(%q, %q) = %q is not a fixed point", r.MessageID, format, n)
			}
		}
	})
}

func BenchmarkParseReceiptText(b *testing.B) {
	benches := []struct{ name, in string }{
		{"appendix-b", "id:1234567890 sub:001 dlvrd:001 submit date:2611251230 done date:2611251231 stat:DELIVRD err:000 text:Hello world"},
		{"variant", "ID:0A1B2C3D  SUB:001 DLVRD:001 SUBMIT_DATE:261125123059 DONE DATE:261125123101 STAT:UNDELIV ERR:034 TEXT:x:y"},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseReceiptText(bb.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
