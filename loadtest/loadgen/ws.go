package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// The WebSocket side of the generator is written for a low cost per
// received frame rather than generality: the HTTP upgrade and the
// Engine.IO/Socket.IO handshakes are done with blocking reads on a net.Conn;
// then the socket's descriptor is duplicated, the net.Conn closed (which
// takes it out of Go's poller without closing the socket), and the
// descriptor handed to one of a few epoll loops (evloop.go). A loop reads
// each ready socket once into a shared buffer and parses the frames in
// place: one read(2) per delivery, no goroutine per connection, and no
// per-connection buffer unless a frame arrives split.

// wsAcceptGUID is RFC 6455's key suffix.
const wsAcceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Frame opcodes.
const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

var errFrame = errors.New("websocket: malformed frame")

// parseFrames calls fn for each complete frame at the start of b and
// returns how many bytes they took. Server frames are never masked (RFC
// 6455 5.1); a masked one is an error.
func parseFrames(b []byte, fn func(fin bool, op byte, payload []byte) error) (int, error) {
	off := 0
	for {
		rest := b[off:]
		if len(rest) < 2 {
			return off, nil
		}
		fin := rest[0]&0x80 != 0
		op := rest[0] & 0x0F
		if rest[1]&0x80 != 0 {
			return off, errFrame
		}
		n := uint64(rest[1] & 0x7F)
		h := 2
		switch n {
		case 126:
			if len(rest) < 4 {
				return off, nil
			}
			n = uint64(binary.BigEndian.Uint16(rest[2:4]))
			h = 4
		case 127:
			if len(rest) < 10 {
				return off, nil
			}
			n = binary.BigEndian.Uint64(rest[2:10])
			h = 10
		}
		if n > 1<<30 {
			return off, errFrame
		}
		if uint64(len(rest)-h) < n {
			return off, nil
		}
		if err := fn(fin, op, rest[h:h+int(n)]); err != nil {
			return off, err
		}
		off += h + int(n)
	}
}

// appendFrame appends a masked client frame (RFC 6455 5.3).
func appendFrame(dst []byte, op byte, payload []byte, mask [4]byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[start+i] ^= mask[i&3]
	}
	return dst
}

// upgradeTo performs the WebSocket opening handshake for path on conn and
// returns the bytes that followed the response (the first frames, often).
func (c *client) upgradeTo(conn net.Conn, path string) ([]byte, error) {
	var key [16]byte
	rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", path, c.t.hostport, k)
	if c.r.cfg.XFF {
		fmt.Fprintf(&req, "X-Forwarded-For: %s\r\n", c.xff())
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("websocket upgrade: HTTP %d", resp.StatusCode)
	}
	sum := sha1.Sum([]byte(k + wsAcceptGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return nil, errors.New("websocket upgrade: bad Sec-WebSocket-Accept")
	}
	rest := make([]byte, br.Buffered())
	br.Read(rest)
	return rest, nil
}

// handshakeReader reads whole text frames from a blocking conn during the
// handshakes, keeping whatever follows for the event loop.
type handshakeReader struct {
	conn net.Conn
	buf  []byte
}

func (h *handshakeReader) next() ([]byte, error) {
	for {
		var payload []byte
		got := false
		n, err := parseFrames(h.buf, func(fin bool, op byte, p []byte) error {
			if !fin || op != opText {
				return fmt.Errorf("unexpected frame (op %d, fin %v) during the handshake", op, fin)
			}
			payload, got = bytes.Clone(p), true
			return errStopParse
		})
		if got {
			// n excludes the frame fn stopped at.
			h.buf = h.buf[n+frameLen(h.buf[n:]):]
			return payload, nil
		}
		if err != nil {
			return nil, err
		}
		var tmp [1024]byte
		m, err := h.conn.Read(tmp[:])
		if m > 0 {
			h.buf = append(h.buf, tmp[:m]...)
		}
		if err != nil {
			return nil, err
		}
	}
}

var errStopParse = errors.New("stop")

// frameLen is the length of the complete frame at the start of b.
func frameLen(b []byte) int {
	n := int(b[1] & 0x7F)
	switch n {
	case 126:
		return 4 + int(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		return 10 + int(binary.BigEndian.Uint64(b[2:10]))
	}
	return 2 + n
}

// connectWS dials, upgrades, completes the Engine.IO and Socket.IO
// handshakes, and hands the socket to an event loop.
func (c *client) connectWS(ctx context.Context) error {
	conn, err := c.r.dialContext(ctx, "tcp", c.t.hostport)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	rest, err := c.upgradeTo(conn, c.r.wsPath)
	if err != nil {
		return err
	}
	hr := &handshakeReader{conn: conn, buf: rest}
	open, err := hr.next()
	if err != nil {
		return fmt.Errorf("engine.io open: %w", err)
	}
	if _, err := c.setSilence(open); err != nil {
		return err
	}
	writeConn := func(p string) error {
		_, err := conn.Write(appendFrame(nil, opText, []byte(p), maskKey()))
		return err
	}
	if err := writeConn("40"); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if i == 100 {
			return errors.New("socket.io connect: no CONNECT after 100 packets")
		}
		p, err := hr.next()
		if err != nil {
			return fmt.Errorf("socket.io connect: %w", err)
		}
		if len(p) == 1 && p[0] == '2' {
			if err := writeConn("3"); err != nil {
				return err
			}
			continue
		}
		if bytes.HasPrefix(p, []byte("40")) {
			break
		}
		return fmt.Errorf("unexpected packet during connect: %.60q", p)
	}
	fd, err := detach(conn)
	if err != nil {
		return err
	}
	ok = true
	c.fd = fd
	c.pend = hr.buf
	c.r.loops[c.idx%len(c.r.loops)].add(c)
	return nil
}

// detach takes conn's socket out of Go's poller for an event loop: a
// duplicate of the descriptor survives conn.Close, which removes the
// original from the poller. The duplicate shares the open file, so it is
// non-blocking too. conn is closed on success.
func detach(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a syscall.Conn")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	conn.Close()
	return fd, nil
}

// maskKey returns a fresh masking key.
func maskKey() [4]byte {
	var k [4]byte
	v := fastRand()
	binary.LittleEndian.PutUint32(k[:], uint32(v))
	return k
}

// writeText sends one text frame on an event-loop connection. It is safe
// to call from any goroutine; a full send buffer is retried for up to 10 s.
func (c *client) writeText(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return errClosed
	}
	c.wbuf = appendFrame(c.wbuf[:0], opText, p, maskKey())
	b := c.wbuf
	deadline := time.Time{}
	for len(b) > 0 {
		n, err := rawWrite(c.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil || err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if deadline.IsZero() {
				deadline = time.Now().Add(10 * time.Second)
			} else if time.Now().After(deadline) {
				return errors.New("write: send buffer full for 10 s")
			}
			time.Sleep(time.Millisecond)
		default:
			return fmt.Errorf("write: %w", err)
		}
	}
	if cap(c.wbuf) > 4096 {
		c.wbuf = nil
	}
	return nil
}

var errClosed = errors.New("connection closed")
