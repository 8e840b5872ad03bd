package engineio

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lesismal/nbio"
)

// framePool holds buffers frames are built in: nbio copies what the kernel
// does not take at once, so a buffer is free again when Write returns.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeLocked gives b, whole frames, to the WebSocket. Every byte written
// to a WebSocket goes through here under s.mu, in one Write per call, and
// nbio keeps what the kernel has not taken in order behind it: frames
// cannot interleave. A peer that already has data waiting and would have
// more than MaxQueued is cut off.
func (s *Session) writeLocked(b []byte) {
	c := s.ws
	if c == nil || s.wsClosing {
		return
	}
	w := s.srv.wheel
	p := s.pending.Load()
	if p > 0 && p+int64(len(b)) > int64(s.srv.opts.MaxQueued) {
		s.cutOffLocked()
		return
	}
	if p <= 0 {
		s.progress.Store(w.now.Load())
	}
	s.pending.Add(int64(len(b)))
	if _, err := c.Write(b); err != nil {
		// nbio closes the conn on a write error; its OnClose ends the
		// session.
		return
	}
	if s.pending.Load() > 0 {
		w.scheduleIfIdle(&s.wt, s.srv.opts.WriteTimeout)
	}
}

// writePacketLocked writes one packet as one frame.
func (s *Session) writePacketLocked(pk *packet) {
	bp := framePool.Get().(*[]byte)
	b := appendPacketFrame((*bp)[:0], int(s.proto), pk)
	s.writeLocked(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		framePool.Put(bp)
	}
}

func appendPacketFrame(dst []byte, proto int, pk *packet) []byte {
	if pk.binary {
		if proto == 3 {
			dst = appendFrameHeader(dst, opBinary, 1+len(pk.bin))
			dst = append(dst, 4)
		} else {
			dst = appendFrameHeader(dst, opBinary, len(pk.bin))
		}
		return append(dst, pk.bin...)
	}
	dst = appendFrameHeader(dst, opText, 1+len(pk.text))
	dst = append(dst, pk.typ)
	return append(dst, pk.text...)
}

// writeControlLocked writes a control frame (pong, close) through the same
// queue as data.
func (s *Session) writeControlLocked(op byte, payload []byte) {
	var buf [2 + 125]byte
	b := appendFrameHeader(buf[:0], op, len(payload))
	s.writeLocked(append(b, payload...))
}

// cutOffLocked drops a slow peer: its queue is discarded, its conn closed.
func (s *Session) cutOffLocked() {
	if s.upgrade == upDone {
		s.slow = true
		s.closeLocked("transport error", 0)
	} else {
		s.abortProbeLocked("slow peer")
	}
	if s.ws != nil {
		s.ws.Close()
	}
}

// checkWriteLocked is the write timer: pending data that has not moved for
// WriteTimeout cuts the peer off; a closing WebSocket is closed once its
// data has gone.
func (s *Session) checkWriteLocked() {
	c := s.ws
	if c == nil {
		return
	}
	w := s.srv.wheel
	if s.pending.Load() <= 0 {
		if s.wsClosing {
			c.Close()
		}
		return
	}
	stalled := time.Duration(w.now.Load()-s.progress.Load()) * w.tick
	switch {
	case stalled >= s.srv.opts.WriteTimeout:
		s.cutOffLocked()
	case s.wsClosing:
		w.schedule(&s.wt, w.tick)
	default:
		w.schedule(&s.wt, s.srv.opts.WriteTimeout-stalled)
	}
}

// closeWSLocked ends the WebSocket transport: after its queue with a close
// frame when graceful, at once otherwise.
func (s *Session) closeWSLocked(graceful bool) {
	c := s.ws
	if c == nil || s.wsClosing {
		return
	}
	if graceful {
		s.writeControlLocked(opClose, []byte{0x03, 0xE8}) // 1000, normal closure
		s.wsClosing = true
		if s.pending.Load() > 0 {
			s.srv.wheel.schedule(&s.wt, s.srv.wheel.tick)
			return
		}
	}
	s.wsClosing = true
	c.Close()
}

// closeProbeLocked closes a WebSocket that has not become the transport.
func (s *Session) closeProbeLocked() {
	if s.ws != nil && s.upgrade != upDone {
		s.ws.Close()
		s.ws = nil
		s.upgrade = upNone
	}
}

// abortProbeLocked ends a failed upgrade; the session goes on polling.
func (s *Session) abortProbeLocked(reason string) {
	if s.upgrade == upNone || s.upgrade == upDone {
		return
	}
	s.closeProbeLocked()
	if s.poll != nil && len(s.out) > 0 {
		s.answerPollLocked(200, 0)
	}
	s.refused = reason
}

// onWSData is nbio's OnData: parse whole frames, keep a partial one.
func (s *Session) onWSData(c *nbio.Conn, data []byte) {
	buf := data
	if len(s.rbuf) > 0 {
		s.rbuf = append(s.rbuf, data...)
		buf = s.rbuf
	}
	for len(buf) > 0 {
		f, n, err := parseFrame(buf, s.srv.opts.MaxPayload)
		if err != nil {
			s.wsFailed(c, "transport error")
			return
		}
		if n == 0 {
			break
		}
		buf = buf[n:]
		if !s.onFrame(c, f) {
			return
		}
	}
	if len(buf) == 0 {
		s.rbuf = nil
	} else if len(s.rbuf) > 0 {
		s.rbuf = s.rbuf[:copy(s.rbuf, buf)]
	} else {
		s.rbuf = append([]byte(nil), buf...)
	}
}

// onFrame handles one client frame; false stops reading.
func (s *Session) onFrame(c *nbio.Conn, f frame) bool {
	switch f.op {
	case opPing:
		s.mu.Lock()
		if s.ws == c {
			s.writeControlLocked(opPong, f.payload)
		}
		s.unlock()
		return true
	case opPong:
		return true
	case opClose:
		s.wsFailed(c, "transport close")
		return false
	case opContinuation:
		if s.frag == nil {
			s.wsFailed(c, "transport error")
			return false
		}
		if int64(len(s.frag)+len(f.payload)) > s.srv.opts.MaxPayload {
			s.wsFailed(c, "transport error")
			return false
		}
		s.frag = append(s.frag, f.payload...)
		if !f.fin {
			return true
		}
		msg, op := s.frag, s.fragOp
		s.frag = nil
		return s.onWSMessage(c, msg, op == opBinary)
	default:
		if s.frag != nil {
			s.wsFailed(c, "transport error")
			return false
		}
		if !f.fin {
			s.frag = append(make([]byte, 0, len(f.payload)*2), f.payload...)
			s.fragOp = f.op
			return true
		}
		return s.onWSMessage(c, f.payload, f.op == opBinary)
	}
}

// onWSMessage handles one Engine.IO packet read from WebSocket c.
func (s *Session) onWSMessage(c *nbio.Conn, msg []byte, bin bool) bool {
	if bin && s.proto == 3 {
		if len(msg) == 0 || msg[0] != 4 {
			s.wsFailed(c, "parse error")
			return false
		}
		msg = msg[1:]
	}
	s.mu.Lock()
	if s.ws != c || s.state == stateClosed {
		s.unlock()
		return false
	}
	if s.upgrade != upDone {
		ok := s.onProbePacketLocked(msg, bin)
		s.unlock()
		return ok
	}
	if bin {
		s.unlock()
		s.deliver(msg, true)
		return true
	}
	if len(msg) == 0 || msg[0] < pktOpen || msg[0] > pktNoop {
		s.closeLocked("parse error", 0)
		s.unlock()
		return false
	}
	if msg[0] == pktMessage {
		s.unlock()
		s.deliver(msg[1:], false)
		return true
	}
	s.onPacketLocked(msg[0], string(msg[1:]))
	s.unlock()
	return true
}

// onProbePacketLocked runs the upgrade on the probing WebSocket: "2probe"
// is answered "3probe", and the pending poll, if any, a NOOP so the client
// can pause polling; "5" makes the WebSocket the transport, after what was
// queued for polling. Anything else fails the upgrade.
func (s *Session) onProbePacketLocked(msg []byte, bin bool) bool {
	switch {
	case !bin && s.upgrade == upAttached && string(msg) == "2probe":
		s.upgrade = upProbed
		s.writePacketLocked(&packet{typ: pktPong, text: "probe"})
		s.noopLaterLocked()
		return true
	case !bin && s.upgrade == upProbed && string(msg) == "5":
		s.upgrade = upDone
		if s.poll != nil {
			// A poll still pending now belongs to the discarded
			// transport: the client paused polling before sending "5".
			s.answerPollLocked(400, 0)
		}
		out := s.out
		s.out, s.outBytes = nil, 0
		for i := range out {
			s.writePacketLocked(&out[i])
		}
		return true
	case !bin && string(msg) == "6":
		return true
	}
	s.abortProbeLocked("invalid upgrade packet")
	return false
}

// noopDelay is how long a poll pending during an upgrade waits for the
// client's "5" before it is answered NOOP. The client sends "2probe" and
// may send "5" right behind it (the official suite does, then polls): a
// NOOP sent on the probe would answer that poll 200 after the upgrade.
// Node's engine.io checks every 100 ms.
const noopDelay = 30 * time.Millisecond

// noopLaterLocked arranges the NOOP for the pending poll. The runtime timer
// exists only during an upgrade with a poll pending.
func (s *Session) noopLaterLocked() {
	w := s.poll
	if w == nil || w.noop != nil {
		return
	}
	w.noop = time.AfterFunc(noopDelay, func() {
		s.mu.Lock()
		if s.poll == w && s.state == stateOpen && s.upgrade == upProbed {
			s.answerPollLocked(200, pktNoop)
		}
		s.unlock()
	})
}

// wsFailed ends WebSocket c: the session if c is its transport, the
// upgrade if c is a probe.
func (s *Session) wsFailed(c *nbio.Conn, reason string) {
	s.mu.Lock()
	if s.ws == c {
		if s.upgrade == upDone {
			s.closeLocked(reason, 0)
		} else {
			s.abortProbeLocked("probe " + reason)
		}
	}
	s.unlock()
	c.Close()
}

// onWSClose is nbio's OnClose.
func (s *Session) onWSClose(c *nbio.Conn) {
	s.mu.Lock()
	if s.ws == c {
		if s.upgrade == upDone {
			s.closeLocked("transport close", 0)
		} else {
			s.abortProbeLocked("probe transport close")
		}
		s.ws = nil
	}
	s.unlock()
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptWebSocket checks r is a WebSocket handshake, hijacks its conn,
// writes the 101 and returns the conn as nbio's, not yet polled, with the
// bytes read beyond the request, if any. why says what failed; hijacked,
// whether an HTTP answer is no longer possible. With refuse, the WebSocket
// is closed right after the 101 (what Node's engine.io does with a second
// WebSocket of a session: the client sees a close, not an HTTP error).
func (srv *Server) acceptWebSocket(w http.ResponseWriter, r *http.Request, refuse string) (c *nbio.Conn, extra []byte, why string, hijacked bool) {
	if r.Method != http.MethodGet ||
		!headerHas(r.Header, "Connection", "upgrade") ||
		!headerHas(r.Header, "Upgrade", "websocket") {
		return nil, nil, "not a WebSocket handshake", false
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return nil, nil, "unsupported WebSocket version", false
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		return nil, nil, "missing Sec-WebSocket-Key", false
	}
	if _, err := srv.poller(); err != nil {
		return nil, nil, "WebSocket poller: " + err.Error(), false
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, "hijack: " + err.Error(), false
	}
	if n := rw.Reader.Buffered(); n > 0 {
		extra, _ = rw.Reader.Peek(n)
		extra = bytes.Clone(extra)
	}
	h := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"
	if refuse != "" {
		resp += "\x88\x02\x03\xe8" // close frame, 1000
	}
	_ = conn.SetDeadline(time.Now().Add(srv.opts.PollTimeout))
	if _, err := conn.Write([]byte(resp)); err != nil || refuse != "" {
		conn.Close()
		if refuse != "" {
			return nil, nil, refuse, true
		}
		return nil, nil, "write 101: " + err.Error(), true
	}
	_ = conn.SetDeadline(time.Time{})
	c, err = nbio.NBConn(conn)
	if err != nil {
		conn.Close()
		return nil, nil, "WebSocket conn: " + err.Error(), true
	}
	return c, extra, "", true
}

// headerHas reports whether a comma-separated header holds token.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
