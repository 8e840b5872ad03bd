package engineio

import (
	"encoding/base64"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Engine.IO packet types, as their ASCII digit.
const (
	pktOpen    = '0'
	pktClose   = '1'
	pktPing    = '2'
	pktPong    = '3'
	pktMessage = '4'
	pktUpgrade = '5'
	pktNoop    = '6'
)

// recordSeparator separates the packets of an EIO4 polling payload.
const recordSeparator = '\x1e'

var errParse = errors.New("engineio: malformed payload")

// packet is one packet waiting for a polling response, or read from one.
// For a binary message bin holds the data (text is empty). A decoded text
// packet's data is raw, a slice of the body it came from (valid while the
// body is), so that reading a POST copies nothing.
type packet struct {
	typ    byte
	binary bool
	text   string
	bin    []byte
	raw    []byte
}

func (p *packet) size() int { return 1 + len(p.text) + len(p.bin) }

// appendPayload appends packets as one polling response body.
func appendPayload(dst []byte, proto int, pkts []packet) []byte {
	for i := range pkts {
		if proto == 3 {
			dst = appendPacketV3(dst, &pkts[i])
			continue
		}
		if i > 0 {
			dst = append(dst, recordSeparator)
		}
		dst = appendPacketV4(dst, &pkts[i])
	}
	return dst
}

func appendPacketV4(dst []byte, p *packet) []byte {
	if p.binary {
		dst = append(dst, 'b')
		return base64.StdEncoding.AppendEncode(dst, p.bin)
	}
	dst = append(dst, p.typ)
	return append(dst, p.text...)
}

// appendPacketV3 appends "<length>:<packet>", the length counted in UTF-16
// code units as the JavaScript client counts String.length; binary goes as
// "b4"+base64 (the text payload encoding every EIO3 client decodes).
func appendPacketV3(dst []byte, p *packet) []byte {
	if p.binary {
		n := 2 + base64.StdEncoding.EncodedLen(len(p.bin))
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, ':', 'b', '4')
		return base64.StdEncoding.AppendEncode(dst, p.bin)
	}
	dst = strconv.AppendInt(dst, int64(1+utf16Len(p.text)), 10)
	dst = append(dst, ':', p.typ)
	return append(dst, p.text...)
}

// utf16Len is the length of s in UTF-16 code units (invalid bytes count
// one each, as U+FFFD does).
func utf16Len[T string | []byte](s T) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			n++
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+4, len(s))]))
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
		i += size
	}
	return n
}

// decodePacket decodes one text packet of a polling payload (EIO4: "b"
// prefix for base64 binary; EIO3: "b4").
func decodePacket(proto int, b []byte) (packet, error) {
	if len(b) == 0 {
		return packet{}, errParse
	}
	if b[0] == 'b' {
		data := b[1:]
		if proto == 3 {
			if len(data) == 0 || data[0] != pktMessage {
				return packet{}, errParse
			}
			data = data[1:]
		}
		bin, err := base64.StdEncoding.AppendDecode(nil, data)
		if err != nil {
			return packet{}, errParse
		}
		return packet{typ: pktMessage, binary: true, bin: bin}, nil
	}
	if b[0] < pktOpen || b[0] > pktNoop {
		return packet{}, errParse
	}
	return packet{typ: b[0], raw: b[1:]}, nil
}

// decodePayloadV4 splits an EIO4 polling body at record separators.
func decodePayloadV4(body []byte) ([]packet, error) {
	var pkts []packet
	for len(body) > 0 || pkts == nil {
		i := 0
		for i < len(body) && body[i] != recordSeparator {
			i++
		}
		p, err := decodePacket(4, body[:i])
		if err != nil {
			return nil, err
		}
		pkts = append(pkts, p)
		if i == len(body) {
			break
		}
		body = body[i+1:]
		if len(body) == 0 {
			return nil, errParse // trailing separator
		}
	}
	return pkts, nil
}

// decodePayloadV3 decodes an EIO3 text payload: "<length>:<packet>"...,
// lengths in UTF-16 code units.
func decodePayloadV3(body []byte) ([]packet, error) {
	if len(body) == 0 {
		return nil, errParse
	}
	var pkts []packet
	for len(body) > 0 {
		i := 0
		n := 0
		for i < len(body) && body[i] != ':' {
			c := body[i]
			if c < '0' || c > '9' || i >= 9 {
				return nil, errParse
			}
			n = n*10 + int(c-'0')
			i++
		}
		if i == 0 || i == len(body) || n == 0 {
			return nil, errParse
		}
		body = body[i+1:]
		// Walk n UTF-16 code units.
		j, units := 0, 0
		for units < n && j < len(body) {
			r, size := utf8.DecodeRune(body[j:])
			if r >= 0x10000 {
				units += 2
			} else {
				units++
			}
			j += size
		}
		if units != n {
			return nil, errParse
		}
		p, err := decodePacket(3, body[:j])
		if err != nil {
			return nil, err
		}
		pkts = append(pkts, p)
		body = body[j:]
	}
	return pkts, nil
}

// decodeBinaryPayloadV3 decodes an EIO3 binary payload (what a 2.x client
// posts as application/octet-stream when a packet is binary): per packet a
// 0 (string) or 1 (binary) byte, the length as one byte per decimal digit,
// 255, then the packet; string packets are UTF-8 and their length counts
// bytes.
func decodeBinaryPayloadV3(body []byte) ([]packet, error) {
	if len(body) == 0 {
		return nil, errParse
	}
	var pkts []packet
	for len(body) > 0 {
		kind := body[0]
		if kind > 1 {
			return nil, errParse
		}
		i, n := 1, 0
		for ; i < len(body) && body[i] != 255; i++ {
			if body[i] > 9 || i > 10 {
				return nil, errParse
			}
			n = n*10 + int(body[i])
		}
		if i == 1 || i == len(body) || n == 0 || n > len(body)-i-1 {
			return nil, errParse
		}
		data := body[i+1 : i+1+n]
		body = body[i+1+n:]
		if kind == 0 {
			p, err := decodePacket(3, data)
			if err != nil {
				return nil, err
			}
			pkts = append(pkts, p)
			continue
		}
		if data[0] != 4 {
			return nil, errParse
		}
		pkts = append(pkts, packet{typ: pktMessage, binary: true, bin: append([]byte(nil), data[1:]...)})
	}
	return pkts, nil
}
