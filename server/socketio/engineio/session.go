package engineio

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/lesismal/nbio"
)

// Session is one Engine.IO connection. It holds no goroutine while idle:
// its deadlines are nodes of the server's timer wheel, its WebSocket is
// read by nbio's poller when data arrives, and its writes are non-blocking.
type Session struct {
	srv  *Server
	id   string
	data any
	h    Handler

	mu        sync.Mutex
	proto     uint8      // 3 or 4
	state     uint8      // stateOpen, stateClosing, stateClosed
	upgrade   uint8      // upNone, upAttached, upProbed, upDone
	awaitPong bool       // EIO4: a ping is out, due is its pong's deadline
	posting   bool       // a POST is being read or processed
	urgent    bool       // out holds a packet that is not a message (a ping): no batching
	wsClosing bool       // a close frame is queued; close the conn once flushed
	slow      bool       // cut off as a slow peer (for OnSlowPeer)
	final     byte       // while closing: the packet the last poll gets after the queue
	notify    string     // close reason for the callbacks run by unlock
	refused   string     // failed upgrade's reason for OnUpgradeRefused, run by unlock
	due       int64      // wheel nanos; see onTimer
	poll      *pollWait  // the pending GET, if any
	out       []packet   // polling packets not yet answered
	outBytes  int        // their size, bounded by MaxQueued
	answered  int64      // wheel nanos of the last poll answered with packets (see PollBatch)
	ws        *nbio.Conn // the WebSocket: probing (upAttached/upProbed) or the transport (upDone)

	// Read side of the WebSocket, touched only by nbio's poller goroutine
	// for this connection (reads of one conn are serialized).
	rbuf   []byte // a partial frame carried to the next read
	frag   []byte // a fragmented message being assembled
	fragOp byte

	// pending is the bytes given to the WebSocket and not yet taken by the
	// kernel; progress is the wheel tick at which it last shrank (or grew
	// from zero). Both are updated under nbio's conn lock, hence atomics.
	pending  atomic.Int64
	progress atomic.Int64

	hb, wt wheelNode
}

const (
	stateOpen = iota
	stateClosing
	stateClosed
)

const (
	upNone     = iota
	upAttached // a WebSocket with the session's sid is open, no probe yet
	upProbed   // "2probe" answered; waiting for "5"
	upDone     // the WebSocket is the transport
)

// pollWait is a GET waiting for something to answer; whoever answers
// fills status and body and closes ch.
type pollWait struct {
	ch     chan struct{}
	status int
	body   []byte
	noop   *time.Timer // the delayed NOOP during an upgrade
	batch  *time.Timer // the answer held for PollBatch; see answerPollSoonLocked
}

// ID returns the session id (the handshake's sid).
func (s *Session) ID() string { return s.id }

// Protocol returns 3 or 4, the client's EIO version.
func (s *Session) Protocol() int { return int(s.proto) }

// Transport returns "polling" or "websocket"; it changes to "websocket"
// once an upgrade completes.
func (s *Session) Transport() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upgrade == upDone {
		return "websocket"
	}
	return "polling"
}

// Data returns what Options.Accept returned for the session's handshake.
func (s *Session) Data() any { return s.data }

// SetHandler sets the session's handler; call it in Options.OnOpen.
func (s *Session) SetHandler(h Handler) {
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
}

func (s *Session) handler() Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h
}

// Send queues a text message packet ("4"+text). It never blocks on the
// network.
func (s *Session) Send(text string) {
	s.mu.Lock()
	s.enqueueLocked(packet{typ: pktMessage, text: text})
	s.unlock()
}

// SendBinary queues a binary message packet. b is copied.
func (s *Session) SendBinary(b []byte) {
	s.mu.Lock()
	s.enqueueLocked(packet{typ: pktMessage, binary: true, bin: append([]byte(nil), b...)})
	s.unlock()
}

// SendPrepared queues p's packets, in order with Send: a WebSocket session
// is written p's ready frames as they are (one write, nothing encoded or
// allocated for it), a polling session gets p's texts queued.
func (s *Session) SendPrepared(p *Prepared) {
	s.mu.Lock()
	if s.state == stateOpen && s.upgrade == upDone {
		s.writeLocked(p.frames)
	} else {
		for _, t := range p.texts {
			s.enqueueLocked(packet{typ: pktMessage, text: t})
		}
	}
	s.unlock()
}

// Close closes the session with reason (given to OnClose). Packets
// already queued are still delivered: a polling client gets them and the
// close packet with its next poll (answered at once), a WebSocket client
// gets them before the close frame.
func (s *Session) Close(reason string) {
	s.mu.Lock()
	if s.state == stateOpen && s.upgrade != upDone && s.poll == nil {
		// Keep the session until the client's next poll takes the queue
		// and the close packet, or PingTimeout passes.
		s.closingLocked(reason, pktClose)
	} else {
		s.closeLocked(reason, pktClose)
	}
	s.unlock()
}

// closingLocked ends a polling session that has no poll pending: the
// handler hears of it now, but the session stays until the client's next
// poll, answered at once with the queue and final, or PingTimeout.
func (s *Session) closingLocked(reason string, final byte) {
	s.state = stateClosing
	s.notify = reason
	s.final = final
	s.due = s.srv.wheel.nanos() + int64(s.srv.opts.PingTimeout)
	s.closeProbeLocked()
	s.srv.wheel.schedule(&s.hb, s.srv.opts.PingTimeout)
}

// unlock releases s.mu, then runs the callbacks a close decided on.
func (s *Session) unlock() {
	reason, slow, refused, h := s.notify, s.slow, s.refused, s.h
	s.notify, s.slow, s.refused = "", false, ""
	s.mu.Unlock()
	o := &s.srv.opts
	if refused != "" && o.OnUpgradeRefused != nil {
		o.OnUpgradeRefused(s, refused)
	}
	if reason == "" {
		return
	}
	if slow && o.OnSlowPeer != nil {
		o.OnSlowPeer(s)
	}
	if h != nil {
		h.OnClose(s, reason)
	}
	if o.OnClose != nil {
		o.OnClose(s, reason)
	}
}

// enqueueLocked sends pk on the session's transport.
func (s *Session) enqueueLocked(pk packet) {
	if s.state != stateOpen {
		return
	}
	if s.upgrade == upDone {
		s.writePacketLocked(&pk)
		return
	}
	if len(s.out) > 0 && s.outBytes+pk.size() > s.srv.opts.MaxQueued {
		s.slow = true
		s.closeLocked("transport error", pktClose)
		return
	}
	s.out = append(s.out, pk)
	s.outBytes += pk.size()
	if pk.typ != pktMessage {
		s.urgent = true
	}
	if s.poll != nil && s.upgrade < upProbed {
		s.answerPollSoonLocked()
	}
}

// answerPollSoonLocked answers the pending poll with the queue: at once,
// or, when the last answer went out less than PollBatch ago, once PollBatch
// has passed since it (Options.PollBatch says why). The held answer takes
// whatever is queued when it goes. A ping is never held: the client has
// only PingTimeout to answer it.
func (s *Session) answerPollSoonLocked() {
	w := s.poll
	wait := time.Duration(s.answered + int64(s.srv.opts.PollBatch) - s.srv.wheel.nanos())
	if s.answered == 0 || wait <= 0 || s.urgent {
		s.answerPollLocked(200, 0)
		return
	}
	if w.batch != nil {
		return // already held; it will take this packet too
	}
	w.batch = time.AfterFunc(wait, func() {
		s.mu.Lock()
		if s.poll == w && len(s.out) > 0 && s.upgrade < upProbed && s.state == stateOpen {
			s.answerPollLocked(200, 0)
		}
		s.unlock()
	})
}

// answerPollLocked answers the pending GET: with 200, the queued packets
// and then final (pktClose or pktNoop) if it is not 0.
func (s *Session) answerPollLocked(status int, final byte) {
	w := s.poll
	s.poll = nil
	if w.noop != nil {
		w.noop.Stop()
	}
	if w.batch != nil {
		w.batch.Stop()
	}
	w.status = status
	if status == 200 {
		if len(s.out) > 0 {
			s.answered = s.srv.wheel.nanos()
		}
		if final != 0 {
			s.out = append(s.out, packet{typ: final})
		}
		w.body = appendPayload(make([]byte, 0, s.outBytes+8*len(s.out)), int(s.proto), s.out)
		clear(s.out)
		s.out = s.out[:0]
		s.urgent = false
		if cap(s.out) > 16 {
			s.out = nil
		}
		s.outBytes = 0
	}
	close(w.ch)
}

// closeLocked ends the session: the pending GET gets the queue and final
// (pktClose for a close by the server, pktNoop for one by the client, 0
// for none), a WebSocket its close frame.
func (s *Session) closeLocked(reason string, final byte) {
	if s.state == stateClosed {
		return
	}
	if s.state == stateOpen {
		s.notify = reason
	}
	s.state = stateClosed
	s.srv.wheel.cancel(&s.hb)
	if s.poll != nil {
		if final != 0 {
			s.answerPollLocked(200, final)
		} else {
			s.answerPollLocked(400, 0)
		}
	}
	s.out = nil
	if s.upgrade == upDone {
		s.closeWSLocked(!s.slow && reason != "transport error" && reason != "transport close")
	} else {
		s.closeProbeLocked()
	}
	s.srv.remove(s)
}

// onTimer is the wheel's callback. The heartbeat node stands for s.due:
// EIO4 the next ping (awaitPong false) or the pong's deadline (true); EIO3
// the deadline of the client's next ping; while closing, when to give up on
// the client's last poll. Deadlines move without touching the wheel; the
// node fires at the old time and reschedules.
func (s *Session) onTimer(kind uint8) {
	s.mu.Lock()
	if kind == timerWrite {
		s.checkWriteLocked()
		s.unlock()
		return
	}
	w := s.srv.wheel
	now := w.nanos()
	switch {
	case s.state == stateClosed:
	case now < s.due:
		w.schedule(&s.hb, time.Duration(s.due-now))
	case s.state == stateClosing:
		s.closeLocked("", 0)
	case s.proto == 4 && !s.awaitPong:
		// The pong is due PingTimeout after the ping was due, not after
		// the wheel got to it (the suite polls at exactly interval +
		// timeout), unless the server was so late that the client would
		// have less than half of PingTimeout to answer.
		s.awaitPong = true
		pt := int64(s.srv.opts.PingTimeout)
		s.due = max(s.due+pt, now+pt/2)
		s.enqueueLocked(packet{typ: pktPing})
		w.schedule(&s.hb, time.Duration(s.due-now))
	default:
		s.closeLocked("ping timeout", pktClose)
	}
	s.unlock()
}

// expiredLocked closes a session whose heartbeat deadline has passed even
// if the wheel has not got to it yet, so that no request is answered a
// tick after the session should have ended.
func (s *Session) expiredLocked() bool {
	deadline := s.due
	if s.proto == 4 && !s.awaitPong {
		deadline += int64(s.srv.opts.PingTimeout) // the ping is not out yet
	}
	if s.state == stateOpen && s.srv.wheel.nanos() >= deadline {
		s.closeLocked("ping timeout", pktClose)
	}
	return s.state != stateOpen
}

// onPacketLocked handles a control packet from either transport; message
// packets are the caller's.
func (s *Session) onPacketLocked(typ byte, text string) {
	o := &s.srv.opts
	switch typ {
	case pktPing:
		if s.proto != 3 {
			// EIO4's server pings, its clients answer: a ping from one
			// is a client that does not speak the protocol (Node:
			// "invalid heartbeat direction").
			s.closeLocked("parse error", pktNoop)
			return
		}
		s.due = s.srv.wheel.nanos() + int64(o.PingInterval+o.PingTimeout)
		s.enqueueLocked(packet{typ: pktPong, text: text})
	case pktPong:
		if s.proto == 3 {
			s.closeLocked("parse error", pktNoop) // EIO3's clients ping, never pong
			return
		}
		if s.awaitPong {
			s.awaitPong = false
			s.due = s.srv.wheel.nanos() + int64(o.PingInterval)
			// The node waits for the pong's deadline, which may be later
			// than the next ping (PingTimeout > PingInterval).
			s.srv.wheel.schedule(&s.hb, o.PingInterval)
		}
	case pktClose:
		// The client's poll, if it is not yet here, may be on its way
		// (the client sends both at once): it gets a NOOP.
		if s.poll == nil && s.upgrade != upDone {
			s.closingLocked("transport close", pktNoop)
		} else {
			s.closeLocked("transport close", pktNoop)
		}
	}
}

// deliver hands one message to the handler, outside s.mu.
func (s *Session) deliver(data []byte, binary bool) {
	if h := s.handler(); h != nil {
		h.OnMessage(s, data, binary)
	}
}
