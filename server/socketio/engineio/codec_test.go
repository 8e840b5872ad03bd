package engineio

import (
	"bytes"
	"math/rand"
	"reflect"
	"testing"
)

func TestUTF16Len(t *testing.T) {
	for s, want := range map[string]int{"": 0, "abc": 3, "é": 1, "€": 1, "😀": 2, "a😀b": 4, "\xff": 1} {
		if got := utf16Len(s); got != want {
			t.Errorf("utf16Len(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestPayloadV3Encode(t *testing.T) {
	pkts := []packet{
		{typ: pktMessage, text: "héllo"},
		{typ: pktMessage, text: "😀"},
		{typ: pktMessage, binary: true, bin: []byte{1, 2, 3, 4}},
		{typ: pktPong, text: "probe"},
	}
	got := string(appendPayload(nil, 3, pkts))
	// "4héllo" is 6 UTF-16 units; "4😀" 3; "b4AQIDBA==" 10.
	want := "6:4héllo3:4😀10:b4AQIDBA==6:3probe"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	back, err := decodePayloadV3([]byte(got))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(texts(back), pkts) {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestPayloadV4(t *testing.T) {
	pkts := []packet{
		{typ: pktMessage, text: "hello"},
		{typ: pktMessage, binary: true, bin: []byte{1, 2, 3, 4}},
		{typ: pktPing},
	}
	got := string(appendPayload(nil, 4, pkts))
	if want := "4hello\x1ebAQIDBA==\x1e2"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	back, err := decodePayloadV4([]byte(got))
	if err != nil || !reflect.DeepEqual(texts(back), pkts) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

func TestBinaryPayloadV3(t *testing.T) {
	// "4hi" as a string packet, then binary {4, 0xff, 0} (type byte 4).
	body := []byte{0, 3, 255, '4', 'h', 'i', 1, 3, 255, 4, 0xff, 0}
	pkts, err := decodeBinaryPayloadV3(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []packet{{typ: pktMessage, text: "hi"}, {typ: pktMessage, binary: true, bin: []byte{0xff, 0}}}
	if !reflect.DeepEqual(texts(pkts), want) {
		t.Fatalf("got %+v", pkts)
	}
}

func TestMalformedPayloads(t *testing.T) {
	v4 := []string{"", "abc", "4a\x1e", "\x1e4a", "b!!", "7x", "4a\x1e\x1e4b"}
	for _, s := range v4 {
		if _, err := decodePayloadV4([]byte(s)); err == nil {
			t.Errorf("v4 %q: no error", s)
		}
	}
	v3 := []string{"", "4hello", "6:4hé", "0:", "2:4", ":4a", "99999999999:4", "3:4😀x", "3:b4!!", "2:b3"}
	for _, s := range v3 {
		if _, err := decodePayloadV3([]byte(s)); err == nil {
			t.Errorf("v3 %q: no error", s)
		}
	}
	bin := [][]byte{{}, {2, 1, 255, '4'}, {0, 5, 255, '4'}, {1, 1, 255, 3}, {0, 255}, {0, 1}}
	for _, b := range bin {
		if _, err := decodeBinaryPayloadV3(b); err == nil {
			t.Errorf("binary v3 %v: no error", b)
		}
	}
}

// TestDecodersNeverPanic feeds random and mutated payloads to every
// decoder: hostile input may be refused, never crash.
func TestDecodersNeverPanic(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	seeds := [][]byte{[]byte("6:4héllo10:b4AQIDBA=="), []byte("4hello\x1ebAQIDBA=="), {0, 3, 255, '4', 'h', 'i', 1, 3, 255, 4, 1, 2}}
	for i := 0; i < 20000; i++ {
		b := bytes.Clone(seeds[i%len(seeds)])
		for j := rng.Intn(4); j >= 0; j-- {
			switch rng.Intn(3) {
			case 0:
				b[rng.Intn(len(b))] = byte(rng.Intn(256))
			case 1:
				b = b[:rng.Intn(len(b)+1)]
			default:
				b = append(b, byte(rng.Intn(256)))
			}
			if len(b) == 0 {
				b = []byte{0}
			}
		}
		decodePayloadV4(b)
		decodePayloadV3(b)
		decodeBinaryPayloadV3(b)
		parseFrame(bytes.Clone(b), 1<<20)
	}
}

func TestParseFrame(t *testing.T) {
	// A masked text frame "4hi", given byte by byte: incomplete until the
	// last byte.
	mask := []byte{9, 8, 7, 6}
	msg := []byte("4hi")
	b := []byte{0x81, 0x80 | 3}
	b = append(b, mask...)
	for i, x := range msg {
		b = append(b, x^mask[i&3])
	}
	for i := 0; i < len(b); i++ {
		if _, n, err := parseFrame(bytes.Clone(b[:i]), 100); n != 0 || err != nil {
			t.Fatalf("prefix %d: n=%d err=%v", i, n, err)
		}
	}
	f, n, err := parseFrame(bytes.Clone(b), 100)
	if err != nil || n != len(b) || string(f.payload) != "4hi" || !f.fin || f.op != opText {
		t.Fatalf("got %+v n=%d err=%v", f, n, err)
	}
	if _, _, err := parseFrame([]byte{0x81, 3, 'a', 'b', 'c'}, 100); err == nil {
		t.Error("unmasked client frame accepted")
	}
	if _, _, err := parseFrame([]byte{0x82, 0x80 | 126, 0x10, 0}, 100); err != errTooLarge {
		t.Errorf("oversized frame: %v", err)
	}
	if _, _, err := parseFrame([]byte{0x09, 0x80}, 100); err == nil {
		t.Error("fragmented ping accepted")
	}
}

func TestPrepareFrames(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), 70000))
	p := Prepare("a", long)
	want := append([]byte{0x81, 2, '4', 'a', 0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x71, '4'}, long...)
	if !bytes.Equal(p.frames, want) {
		t.Fatalf("frames differ (len %d vs %d)", len(p.frames), len(want))
	}
}

// texts turns decoded packets' raw data into text, as they were encoded.
func texts(pkts []packet) []packet {
	for i := range pkts {
		if !pkts[i].binary {
			pkts[i].text = string(pkts[i].raw)
		}
		pkts[i].raw = nil
	}
	return pkts
}
