package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// packetType is a Socket.IO packet type, the first character of a packet.
type packetType byte

const (
	typeConnect      packetType = '0'
	typeDisconnect   packetType = '1'
	typeEvent        packetType = '2'
	typeAck          packetType = '3'
	typeConnectError packetType = '4' // ERROR in the v2-client protocol
	typeBinaryEvent  packetType = '5'
	typeBinaryAck    packetType = '6'
)

// Bounds on what a client may announce, checked before anything is
// allocated for it: they match the limits Node's parser and the library we
// replace apply, and no legitimate client comes near them.
const (
	maxAttachments = 10
	maxNamespace   = 256
	maxIDDigits    = 20 // 2^64-1
)

// packet is one decoded Socket.IO packet header with its JSON payload still
// raw: the payload's shape depends on the type and is checked by the
// functions that read it (eventArgs, connectAuth, ackArgs).
type packet struct {
	typ         packetType
	nsp         string // "/" when the packet names none
	attachments int    // binary types only
	hasID       bool
	id          uint64
	data        []byte // raw JSON; nil when the packet carries none
}

// Errors of the decoder. They reach Options.OnProtocolError wrapped with
// what was wrong, so a log line says why a client was cut off.
var (
	errEmpty           = errors.New("empty packet")
	errUnknownType     = errors.New("unknown packet type")
	errAttachments     = errors.New("illegal attachment count")
	errTooManyAttach   = errors.New("too many attachments")
	errNamespace       = errors.New("illegal namespace")
	errID              = errors.New("illegal ack id")
	errPayload         = errors.New("invalid payload")
	errEventName       = errors.New("event name is not a string")
	errReservedEvent   = errors.New("reserved event name")
	errPlaceholder     = errors.New("illegal attachment placeholder")
	errUnexpectedBin   = errors.New("binary message when no attachment is expected")
	errUnexpectedText  = errors.New("text message while attachments are expected")
	errNamespaceState  = errors.New("packet for a namespace not joined")
	errDoubleConnect   = errors.New("CONNECT to a namespace already joined")
	errClientConnError = errors.New("CONNECT_ERROR from a client")
)

// decodePacket parses the header of a text packet:
//
//	<type>[<attachments>-][/<namespace>,][<id>][<JSON>]
//
// The returned packet's data aliases s.
func decodePacket(s []byte) (packet, error) {
	var p packet
	if len(s) == 0 {
		return p, errEmpty
	}
	p.typ = packetType(s[0])
	if p.typ < typeConnect || p.typ > typeBinaryAck {
		return p, errUnknownType
	}
	i := 1
	if p.typ == typeBinaryEvent || p.typ == typeBinaryAck {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			if i-start > 2 {
				return p, errTooManyAttach
			}
		}
		if i == start || i >= len(s) || s[i] != '-' {
			return p, errAttachments
		}
		n, _ := strconv.Atoi(string(s[start:i]))
		if n > maxAttachments {
			return p, errTooManyAttach
		}
		p.attachments = n
		i++ // '-'
	}
	p.nsp = "/"
	if i < len(s) && s[i] == '/' {
		start := i
		for i < len(s) && s[i] != ',' {
			i++
			if i-start > maxNamespace {
				return p, errNamespace
			}
		}
		p.nsp = string(s[start:i])
		if i < len(s) {
			i++ // ','
		}
	}
	if i < len(s) && s[i] >= '0' && s[i] <= '9' {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			if i-start > maxIDDigits {
				return p, errID
			}
		}
		id, err := strconv.ParseUint(string(s[start:i]), 10, 64)
		if err != nil {
			return p, errID
		}
		p.hasID, p.id = true, id
	}
	if i < len(s) {
		p.data = s[i:]
	}
	switch p.typ {
	case typeDisconnect:
		if p.data != nil {
			return p, errPayload
		}
	case typeEvent, typeBinaryEvent:
		if p.data == nil {
			return p, errPayload
		}
	}
	return p, nil
}

// reservedEvents are names a client may not emit: Node's socket.io gives
// them meaning of its own and refuses them too.
var reservedEvents = [...]string{"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}

// eventArgs decodes an EVENT payload into its name and arguments.
func eventArgs(data []byte) (string, []any, error) {
	var v []any
	if err := json.Unmarshal(data, &v); err != nil || v == nil {
		return "", nil, errPayload
	}
	if len(v) == 0 {
		return "", nil, errEventName
	}
	name, ok := v[0].(string)
	if !ok {
		return "", nil, errEventName
	}
	for _, r := range reservedEvents {
		if name == r {
			return "", nil, errReservedEvent
		}
	}
	return name, v[1:], nil
}

// ackArgs decodes an ACK payload: an array, or nothing.
func ackArgs(data []byte) ([]any, error) {
	if data == nil {
		return nil, nil
	}
	var v []any
	if err := json.Unmarshal(data, &v); err != nil || v == nil {
		return nil, errPayload
	}
	return v, nil
}

// connectAuth decodes a CONNECT payload: an object, or nothing.
func connectAuth(data []byte) (map[string]any, error) {
	if data == nil {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return nil, errPayload
	}
	return m, nil
}

// appendHeader writes a packet's header: type, attachment count, namespace
// (when not "/") and ack id.
func appendHeader(b []byte, t packetType, nsp string, attachments int, hasID bool, id uint64) []byte {
	b = append(b, byte(t))
	if t == typeBinaryEvent || t == typeBinaryAck {
		b = strconv.AppendInt(b, int64(attachments), 10)
		b = append(b, '-')
	}
	if nsp != "/" && nsp != "" {
		b = append(b, nsp...)
		b = append(b, ',')
	}
	if hasID {
		b = strconv.AppendUint(b, id, 10)
	}
	return b
}

// jsonEncoder marshals without escaping <, > and &, as JSON.stringify does:
// chat text is full of them, and Node's clients see the same bytes.
type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &jsonEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// appendJSON appends v's JSON encoding to b.
func appendJSON(b []byte, v any) ([]byte, error) {
	e := encoders.Get().(*jsonEncoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return b, err
	}
	out := e.buf.Bytes()
	if n := len(out); n > 0 && out[n-1] == '\n' {
		out = out[:n-1]
	}
	b = append(b, out...)
	if e.buf.Cap() > 64<<10 {
		// Do not keep a huge buffer alive in the pool for one big packet.
		e.buf = bytes.Buffer{}
	}
	return b, nil
}

// appendArray appends the JSON array [head..., args...] to b. head holds
// the event name when there is one.
func appendArray(b []byte, head []any, args []any) ([]byte, error) {
	b = append(b, '[')
	n := 0
	var err error
	for _, group := range [2][]any{head, args} {
		for _, a := range group {
			if n > 0 {
				b = append(b, ',')
			}
			if b, err = appendJSON(b, a); err != nil {
				return b, err
			}
			n++
		}
	}
	return append(b, ']'), nil
}

// encoded is a packet ready for an Engine.IO session: its text message and
// the binary messages that follow it.
type encoded struct {
	text        string
	attachments [][]byte
}

// encodePacket encodes an EVENT (event != "") or ACK packet with args,
// turning []byte arguments into attachments.
func encodePacket(t packetType, nsp string, hasID bool, id uint64, event string, args []any) (encoded, error) {
	var head []any
	if t == typeEvent {
		head = []any{event}
	}
	var atts [][]byte
	if hasBinary(args) {
		args, atts = deconstruct(args)
		if t == typeEvent {
			t = typeBinaryEvent
		} else {
			t = typeBinaryAck
		}
	}
	b := make([]byte, 0, 64)
	b = appendHeader(b, t, nsp, len(atts), hasID, id)
	b, err := appendArray(b, head, args)
	if err != nil {
		return encoded{}, fmt.Errorf("socketio: encoding %q: %w", event, err)
	}
	return encoded{text: string(b), attachments: atts}, nil
}
