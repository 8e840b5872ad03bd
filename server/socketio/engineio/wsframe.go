package engineio

import (
	"encoding/binary"
	"errors"
)

// WebSocket opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

var (
	errFrame    = errors.New("engineio: malformed WebSocket frame")
	errTooLarge = errors.New("engineio: WebSocket message larger than MaxPayload")
)

// appendFrameHeader appends the header of an unmasked, final
// server-to-client frame of n payload bytes.
func appendFrameHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// frame is one parsed client frame; payload is unmasked in place.
type frame struct {
	fin     bool
	op      byte
	payload []byte
}

// parseFrame parses the frame at the start of b. n is 0 when b holds only
// part of it. A client frame must be masked; a frame longer than max, a
// fragmented or long control frame and reserved bits are errors.
func parseFrame(b []byte, max int64) (f frame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	if b[0]&0x70 != 0 {
		return f, 0, errFrame
	}
	f.fin = b[0]&0x80 != 0
	f.op = b[0] & 0x0F
	if b[1]&0x80 == 0 {
		return f, 0, errFrame
	}
	length := uint64(b[1] & 0x7F)
	h := 2
	switch length {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(b[2:]))
		h = 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		length = binary.BigEndian.Uint64(b[2:])
		h = 10
	}
	if f.op >= opClose {
		if !f.fin || length > 125 || f.op > opPong {
			return f, 0, errFrame
		}
	} else if f.op > opBinary {
		return f, 0, errFrame
	}
	if length > uint64(max) {
		return f, 0, errTooLarge
	}
	total := h + 4 + int(length)
	if len(b) < total {
		return f, 0, nil
	}
	mask := b[h : h+4]
	f.payload = b[h+4 : total]
	for i := range f.payload {
		f.payload[i] ^= mask[i&3]
	}
	return f, total, nil
}
