package socketio

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodePacket(t *testing.T) {
	cases := []struct {
		in   string
		want packet
	}{
		{"0", packet{typ: typeConnect, nsp: "/"}},
		{`0{"token":"123"}`, packet{typ: typeConnect, nsp: "/", data: []byte(`{"token":"123"}`)}},
		{"0/custom,", packet{typ: typeConnect, nsp: "/custom"}},
		{"0/custom", packet{typ: typeConnect, nsp: "/custom"}},
		{`0/custom,{"a":1}`, packet{typ: typeConnect, nsp: "/custom", data: []byte(`{"a":1}`)}},
		{"1", packet{typ: typeDisconnect, nsp: "/"}},
		{"1/custom,", packet{typ: typeDisconnect, nsp: "/custom"}},
		{`2["a"]`, packet{typ: typeEvent, nsp: "/", data: []byte(`["a"]`)}},
		{`2456["a",1]`, packet{typ: typeEvent, nsp: "/", hasID: true, id: 456, data: []byte(`["a",1]`)}},
		{`2/x,7["a"]`, packet{typ: typeEvent, nsp: "/x", hasID: true, id: 7, data: []byte(`["a"]`)}},
		{`3456[1]`, packet{typ: typeAck, nsp: "/", hasID: true, id: 456, data: []byte(`[1]`)}},
		{`52-["a",{"_placeholder":true,"num":0}]`, packet{typ: typeBinaryEvent, nsp: "/", attachments: 2, data: []byte(`["a",{"_placeholder":true,"num":0}]`)}},
		{`51-/x,9["a"]`, packet{typ: typeBinaryEvent, nsp: "/x", attachments: 1, hasID: true, id: 9, data: []byte(`["a"]`)}},
		{`610-789[]`, packet{typ: typeBinaryAck, nsp: "/", attachments: 10, hasID: true, id: 789, data: []byte(`[]`)}},
		{`218446744073709551615["a"]`, packet{typ: typeEvent, nsp: "/", hasID: true, id: 1<<64 - 1, data: []byte(`["a"]`)}},
	}
	for _, c := range cases {
		got, err := decodePacket([]byte(c.in))
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestDecodePacketRejects(t *testing.T) {
	cases := map[string]error{
		"":                            errEmpty,
		"7":                           errUnknownType,
		"a":                           errUnknownType,
		"/":                           errUnknownType,
		"5":                           errAttachments,
		"5-[]":                        errAttachments,
		"51":                          errAttachments,
		"511-[]":                      errTooManyAttach,
		"5100-[]":                     errTooManyAttach,
		"599999999999999999999999-[]": errTooManyAttach,
		"2" + "/" + strings.Repeat("n", 300) + ",[\"a\"]": errNamespace,
		`218446744073709551616["a"]`:                      errID,
		"2" + strings.Repeat("9", 21) + `["a"]`:           errID,
		"1{}":                                             errPayload,
		"1/x,[]":                                          errPayload,
		"2":                                               errPayload,
		"2/x,":                                            errPayload,
		"27":                                              errPayload,
	}
	for in, want := range cases {
		_, err := decodePacket([]byte(in))
		if !errors.Is(err, want) {
			t.Errorf("%.40q: got %v, want %v", in, err, want)
		}
	}
}

func TestPayloadRejects(t *testing.T) {
	events := map[string]error{
		`{}`:                errPayload,
		`null`:              errPayload,
		`[`:                 errPayload,
		`["x"`:              errPayload,
		`["logout"]xyz`:     errPayload,
		`[]`:                errEventName,
		`[null]`:            errEventName,
		`[{},"x"]`:          errEventName,
		`[42,"x"]`:          errEventName,
		`["disconnect"]`:    errReservedEvent,
		`["connect_error"]`: errReservedEvent,
	}
	for in, want := range events {
		if _, _, err := eventArgs([]byte(in)); !errors.Is(err, want) {
			t.Errorf("event %q: got %v, want %v", in, err, want)
		}
	}
	for _, in := range []string{`[1,2]`, `"x"`, `null`, `{"a":`, `{} {}`} {
		if _, err := connectAuth([]byte(in)); !errors.Is(err, errPayload) {
			t.Errorf("connect %q: got %v", in, err)
		}
	}
	for _, in := range []string{`{"a":1}`, `null`, `"x"`} {
		if _, err := ackArgs([]byte(in)); !errors.Is(err, errPayload) {
			t.Errorf("ack %q: got %v", in, err)
		}
	}
	name, args, err := eventArgs([]byte(`["message",1,"2",{"3":[true]}]`))
	if err != nil || name != "message" || !reflect.DeepEqual(args, []any{1.0, "2", map[string]any{"3": []any{true}}}) {
		t.Errorf("eventArgs: %q %v %v", name, args, err)
	}
}

func TestEncodePacket(t *testing.T) {
	cases := []struct {
		t     packetType
		nsp   string
		hasID bool
		id    uint64
		event string
		args  []any
		text  string
		atts  [][]byte
	}{
		{typeEvent, "/", false, 0, "auth", []any{map[string]any{}}, `2["auth",{}]`, nil},
		{typeEvent, "/custom", false, 0, "auth", []any{map[string]any{"token": "abc"}}, `2/custom,["auth",{"token":"abc"}]`, nil},
		{typeEvent, "/", false, 0, "new message", []any{map[string]any{"msg": "<3 & >"}}, `2["new message",{"msg":"<3 & >"}]`, nil},
		{typeEvent, "/", false, 0, "none", nil, `2["none"]`, nil},
		{typeAck, "/", true, 456, "", []any{1, "2", map[string]any{"3": []any{false}}}, `3456[1,"2",{"3":[false]}]`, nil},
		{typeAck, "/", true, 1, "", nil, `31[]`, nil},
		{typeEvent, "/", false, 0, "message-back", []any{[]byte{1, 2, 3}, []byte{4, 5, 6}},
			`52-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, [][]byte{{1, 2, 3}, {4, 5, 6}}},
		{typeAck, "/x", true, 789, "", []any{map[string]any{"a": []any{[]byte("z")}}},
			`61-/x,789[{"a":[{"_placeholder":true,"num":0}]}]`, [][]byte{[]byte("z")}},
	}
	for _, c := range cases {
		e, err := encodePacket(c.t, c.nsp, c.hasID, c.id, c.event, c.args)
		if err != nil {
			t.Errorf("%s: %v", c.text, err)
			continue
		}
		if e.text != c.text || !reflect.DeepEqual(e.attachments, c.atts) {
			t.Errorf("got %q %q, want %q %q", e.text, e.attachments, c.text, c.atts)
		}
	}
	// The caller's values are left alone.
	arg := map[string]any{"b": []byte("x")}
	if _, err := encodePacket(typeEvent, "/", false, 0, "e", []any{arg}); err != nil {
		t.Fatal(err)
	}
	if _, ok := arg["b"].([]byte); !ok {
		t.Errorf("encodePacket changed its argument: %v", arg)
	}
	if _, err := encodePacket(typeEvent, "/", false, 0, "e", []any{make(chan int)}); err == nil {
		t.Error("a channel encoded without error")
	}
}

// TestRoundTrip encodes packets and decodes them back, attachments included.
func TestRoundTrip(t *testing.T) {
	args := []any{"text", 1.5, true, nil, []any{"a", []byte{0, 1}}, map[string]any{"k": []byte("v"), "n": 2.0}}
	for _, nsp := range []string{"/", "/custom"} {
		for _, id := range []uint64{0, 1, 1<<64 - 1} {
			e, err := encodePacket(typeEvent, nsp, id != 0, id, "ev", args)
			if err != nil {
				t.Fatal(err)
			}
			p, err := decodePacket([]byte(e.text))
			if err != nil {
				t.Fatalf("%q: %v", e.text, err)
			}
			if p.typ != typeBinaryEvent || p.nsp != nsp || p.hasID != (id != 0) || p.id != id || p.attachments != len(e.attachments) {
				t.Fatalf("%q decoded as %+v", e.text, p)
			}
			name, got, err := eventArgs(p.data)
			if err != nil || name != "ev" {
				t.Fatalf("%q: %q %v", e.text, name, err)
			}
			if err := reconstruct(got, e.attachments); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, args) {
				t.Fatalf("round trip: got %#v, want %#v", got, args)
			}
		}
	}
}

func TestReconstructRejects(t *testing.T) {
	atts := [][]byte{[]byte("x")}
	for _, ph := range []string{
		`{"_placeholder":true,"num":1}`,
		`{"_placeholder":true,"num":-1}`,
		`{"_placeholder":true,"num":0.5}`,
		`{"_placeholder":true,"num":1e300}`,
		`{"_placeholder":true,"num":"0"}`,
		`{"_placeholder":true}`,
	} {
		_, args, err := eventArgs([]byte(`["e",{"deep":[` + ph + `]}]`))
		if err != nil {
			t.Fatal(err)
		}
		if err := reconstruct(args, atts); !errors.Is(err, errPlaceholder) {
			t.Errorf("%s: got %v", ph, err)
		}
	}
	// A placeholder that is not one stays an object.
	_, args, _ := eventArgs([]byte(`["e",{"_placeholder":false,"num":0}]`))
	if err := reconstruct(args, atts); err != nil {
		t.Error(err)
	}
}

// FuzzDecode feeds arbitrary packets to the decoder: it must never panic,
// and what it accepts as an event must survive re-encoding.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"0", `0{"token":"1"}`, "0/custom,", "1", `2["a",1,{"b":[true]}]`, `2/x,12["a"]`,
		`3456[1]`, `52-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, `61-9[{"_placeholder":true,"num":0}]`,
		"4abc", "42{}", `2abc["a"]`, "5-", "599-", "2/" + strings.Repeat("a", 300)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := decodePacket(in)
		if err != nil {
			return
		}
		switch p.typ {
		case typeConnect:
			connectAuth(p.data)
		case typeAck, typeBinaryAck:
			if args, err := ackArgs(p.data); err == nil {
				reconstruct(args, nil)
			}
		case typeEvent, typeBinaryEvent:
			name, args, err := eventArgs(p.data)
			if err != nil {
				return
			}
			atts := make([][]byte, p.attachments)
			if reconstruct(args, atts) != nil {
				return
			}
			e, err := encodePacket(typeEvent, p.nsp, p.hasID, p.id, name, args)
			if err != nil {
				t.Fatalf("%q decoded but does not encode: %v", in, err)
			}
			q, err := decodePacket([]byte(e.text))
			if err != nil {
				t.Fatalf("%q re-encoded as %q, which does not decode: %v", in, e.text, err)
			}
			name2, args2, err := eventArgs(q.data)
			if err != nil || name2 != name || q.nsp != p.nsp || q.id != p.id || q.hasID != p.hasID {
				t.Fatalf("%q → %q → %+v %q %v", in, e.text, q, name2, err)
			}
			if reconstruct(args2, e.attachments) != nil || !equalJSON(args, args2) {
				t.Fatalf("%q → %q: args %#v, want %#v", in, e.text, args2, args)
			}
		}
	})
}

// equalJSON compares decoded values, treating nil and empty attachments
// alike (a zero-length attachment decodes as []byte{}).
func equalJSON(a, b any) bool {
	switch x := a.(type) {
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !equalJSON(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
