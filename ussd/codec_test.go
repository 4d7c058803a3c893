package ussd

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/mhero-health/mhero"
)

// richState has a value in every field the codec writes.
func richState() *state {
	return &state{
		Gateway: "ATUid_6c1d", Hops: []string{"1", "", "25*12*2026"},
		Replies: []savedReply{{Seq: 2, Text: "Quantity?\n00. Back"}, {Seq: 3, Text: "Thank you.", End: true}},
		Worker: mhero.Worker{ID: 101, Name: "Musu Kollie", MSISDN: "231886000001", Cadre: "chw", FacilityID: 1,
			Language: "en", Active: true},
		Facility: mhero.Facility{ID: 1, Code: "BMC", Name: "Bong Mines Clinic", LocationID: 7},
		Lang:     "fr",
		Stack: []frame{{Screen: "main"}, {Screen: "stock.commodity", Page: 1, Pages: 2,
			Undo: []undo{{Key: "commodity", Old: value{}}, {Key: "language", Had: true, Old: value{V: "en", L: "English"}}}}},
		Vars:    map[string]value{"commodity": {V: "ors", L: "Sachets de SRO"}, "worker.name": {V: "Musu Kollie"}},
		Choices: []Choice{{Value: "m1", Label: "02 Nov", Extra: map[string]string{"text": "Stock reports due", "date": "02 Nov"}}, {Value: "x"}},
		Resume:  true, Ended: true, Hint: "Choose one of the numbers shown.",
	}
}

func TestStateCodecRoundTrips(t *testing.T) {
	for name, st := range map[string]*state{
		"every field":          richState(),
		"fresh":                {Gateway: "g", Stack: []frame{{Screen: "main"}}},
		"choices loaded, none": {Gateway: "g", Stack: []frame{{Screen: "inbox.list"}}, Choices: []Choice{}},
	} {
		got, err := decodeState(st.encode())
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !reflect.DeepEqual(got, st) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", name, got, st)
		}
	}
}

func TestDecodeStateRefusesWhatItCannotRead(t *testing.T) {
	good := richState().encode()
	for name, b := range map[string][]byte{
		"empty":         {},
		"old version":   append([]byte{1}, good[1:]...),
		"json (v1)":     []byte(`{"ver":1,"gs":"x"}`),
		"truncated":     good[:len(good)-3],
		"trailing junk": append(append([]byte(nil), good...), 0),
		"huge length":   {stateVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if st, err := decodeState(b); err == nil {
			t.Errorf("%s: decoded %+v", name, st)
		}
	}
}

// FuzzDecodeState: stored bytes are not trusted (another version, a corrupted value):
// decoding never panics, and whatever decodes re-encodes to a canonical form.
func FuzzDecodeState(f *testing.F) {
	f.Add(richState().encode())
	f.Add((&state{Gateway: "g", Stack: []frame{{Screen: "main"}}}).encode())
	f.Add([]byte{stateVersion})
	f.Add([]byte(`{"ver":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		b2 := st.encode()
		st2, err := decodeState(b2)
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if !reflect.DeepEqual(st, st2) || !bytes.Equal(st2.encode(), b2) {
			t.Fatalf("not canonical:\n%+v\n%+v", st, st2)
		}
	})
}

func BenchmarkStateCodec(b *testing.B) {
	st := richState()
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = st.encode()
		}
	})
	enc := st.encode()
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := decodeState(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
