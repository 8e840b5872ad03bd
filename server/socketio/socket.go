package socketio

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/chatd/chat/server/socketio/engineio"
)

// Socket is one client's connection to one namespace. Its methods are safe
// for concurrent use.
type Socket struct {
	c    *conn
	id   string
	nsp  string
	auth map[string]any
	exec serial

	// Guarded by c.mu.
	handlers     []handler
	events       Events // shared table consulted after handlers (Handle)
	eventsCtx    any
	onDisconnect func(reason string)
	pending      []outgoing // emitted before the CONNECT acknowledgement went out
	acked        bool       // the CONNECT acknowledgement went out
	gone         bool       // disconnected, for whatever reason
	kicked       bool       // disconnected by Disconnect
}

type handler struct {
	event string
	fn    func(args []any, ack func(args ...any))
}

// Events is a table of event handlers that many sockets share: each gets
// the value its socket was given by Handle. A server with a dozen events
// sets one table, not a closure per event on every socket (with On, 17
// events cost about 1.1 KiB of heap per idle connection; test/memory).
// The table must not change once a socket uses it.
type Events map[string]func(ctx any, args []any, ack func(args ...any))

// outgoing is one packet for a session: encoded for it, or prepared for
// many.
type outgoing struct {
	enc      encoded
	prepared *engineio.Prepared
}

// ID returns the socket's id, as sent to the client in the CONNECT
// acknowledgement. It is not the Engine.IO session id.
func (s *Socket) ID() string { return s.id }

// Namespace returns the namespace the socket joined ("/" for the main one).
func (s *Socket) Namespace() string { return s.nsp }

// Auth returns the CONNECT packet's auth payload; nil when there was none,
// as for the main namespace of a v2 client. For a v2 client's other
// namespaces it is the query of the CONNECT, values as strings.
func (s *Socket) Auth() map[string]any { return s.auth }

// Data returns what engineio.Options.Accept returned for the handshake.
func (s *Socket) Data() any { return s.c.sess.Data() }

// SessionID returns the Engine.IO session id (for logs: the socket id
// changes with every namespace, this one is the connection's).
func (s *Socket) SessionID() string { return s.c.sess.ID() }

// On sets the handler of event, replacing an earlier one. It runs on the
// socket's serial executor; ack is non-nil when the client asked for an
// acknowledgement, and sends it the first time it is called (later calls do
// nothing). Set handlers in Options.OnConnection: the events that arrive
// before it returns wait for it.
func (s *Socket) On(event string, fn func(args []any, ack func(args ...any))) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	for i := range s.handlers {
		if s.handlers[i].event == event {
			s.handlers[i].fn = fn
			return
		}
	}
	s.handlers = append(s.handlers, handler{event, fn})
}

// OnDisconnect sets what runs, on the serial executor after every event
// already received, when the socket is disconnected. reason is Node's:
// "client namespace disconnect", "server namespace disconnect", or the
// Engine.IO session's close reason ("transport close", "ping timeout",
// "transport error", "parse error", "forced close", "server shutting down").
func (s *Socket) OnDisconnect(fn func(reason string)) {
	s.c.mu.Lock()
	s.onDisconnect = fn
	s.c.mu.Unlock()
}

// Connected reports whether the socket is still connected. It is true from
// the moment Options.OnConnection is called.
func (s *Socket) Connected() bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return !s.gone
}

// Emit sends an event, JSON-encoded (binary for []byte arguments, at the
// top level or inside []any and map[string]any). The error is
// encoding/json's; a socket that is gone drops the event without one.
func (s *Socket) Emit(event string, args ...any) error {
	e, err := encodePacket(typeEvent, s.nsp, false, 0, event, args)
	if err != nil {
		return err
	}
	s.send(outgoing{enc: e})
	return nil
}

// EmitPrepared sends a packet from PrepareEvent or PrepareEvents, encoded
// once for every recipient. Those packets are for the main namespace:
// sockets of others ignore it.
func (s *Socket) EmitPrepared(p *engineio.Prepared) {
	if s.nsp != "/" || p == nil {
		return
	}
	s.send(outgoing{prepared: p})
}

// Enqueue runs fn on the socket's serial executor, after the events and
// tasks queued before it. It is dropped once the socket is disconnected.
func (s *Socket) Enqueue(fn func()) {
	s.exec.do(func() {
		defer s.recoverPanic()
		fn()
	}, 0)
}

// Disconnect disconnects the socket from the server's side: the client gets
// a DISCONNECT packet, OnDisconnect runs with "server namespace disconnect",
// and the connection is closed when it was its last socket (unless
// Options.KeepEmptyConnections). Called in OnConnection, the client sees
// the CONNECT acknowledged and then the DISCONNECT.
func (s *Socket) Disconnect() {
	c := s.c
	c.mu.Lock()
	if s.gone {
		c.mu.Unlock()
		return
	}
	c.removeLocked(s)
	s.gone, s.kicked = true, true
	o := outgoing{enc: encoded{text: string(appendHeader(nil, typeDisconnect, s.nsp, 0, false, 0))}}
	if s.acked {
		c.sendLocked(o)
	} else {
		s.pending = append(s.pending, o) // sent after the acknowledgement
	}
	closeConn := s.acked && c.emptyLocked()
	c.mu.Unlock()
	s.finish("server namespace disconnect")
	if closeConn {
		c.close("forced close", nil)
	}
}

// send sends o now, or after the CONNECT acknowledgement if that has not
// gone out yet.
func (s *Socket) send(o outgoing) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case s.gone:
	case !s.acked:
		s.pending = append(s.pending, o)
	default:
		c.sendLocked(o)
	}
}

// connect is the socket's first task: OnConnection, then the CONNECT
// acknowledgement and whatever OnConnection emitted. Events that arrived
// meanwhile are queued behind it, so no handler misses one.
func (s *Socket) connect() {
	defer s.recoverPanic()
	c := s.c
	if fn := c.srv.opts.OnConnection; fn != nil {
		fn(s)
	}
	c.mu.Lock()
	if s.gone && !s.kicked {
		c.mu.Unlock()
		return
	}
	c.sendLocked(outgoing{enc: encoded{text: c.connectAck(s)}})
	for _, o := range s.pending {
		c.sendLocked(o)
	}
	s.pending = nil
	s.acked = true
	closeConn := s.kicked && c.emptyLocked()
	c.mu.Unlock()
	if closeConn {
		c.close("forced close", nil)
	}
}

// dispatch queues an event for its handler.
func (s *Socket) dispatch(event string, args []any, hasID bool, id uint64) bool {
	return s.exec.do(func() {
		defer s.recoverPanic()
		s.c.mu.Lock()
		var fn func([]any, func(...any))
		for i := range s.handlers {
			if s.handlers[i].event == event {
				fn = s.handlers[i].fn
				break
			}
		}
		shared, ctx := s.events[event], s.eventsCtx
		s.c.mu.Unlock()
		if fn == nil && shared == nil {
			return
		}
		var ack func(...any)
		if hasID {
			ack = s.ackFunc(id)
		}
		if fn != nil {
			fn(args, ack)
		} else {
			shared(ctx, args, ack)
		}
	}, s.c.srv.opts.MaxQueuedEvents)
}

// ackFunc returns the acknowledgement of the event with id: sent once.
func (s *Socket) ackFunc(id uint64) func(args ...any) {
	var sent atomic.Bool
	return func(args ...any) {
		if sent.Swap(true) {
			return
		}
		e, err := encodePacket(typeAck, s.nsp, true, id, "", args)
		if err != nil {
			s.c.srv.report(s.c.sess.ID(), err)
			return
		}
		s.send(outgoing{enc: e})
	}
}

// Handle makes the socket answer the events in ev, each handler called
// with ctx, on the serial executor as On's are. A handler set with On for
// the same event wins. Set it in Options.OnConnection, as On.
func (s *Socket) Handle(ev Events, ctx any) {
	s.c.mu.Lock()
	s.events, s.eventsCtx = ev, ctx
	s.c.mu.Unlock()
}

// finish queues OnDisconnect as the socket's last task. Call it once, after
// marking the socket gone.
func (s *Socket) finish(reason string) {
	s.exec.close(func() {
		defer s.c.srv.wg.Done()
		defer s.recoverPanic()
		s.c.mu.Lock()
		fn := s.onDisconnect
		s.handlers, s.onDisconnect = nil, nil
		s.events, s.eventsCtx = nil, nil
		s.c.mu.Unlock()
		if fn != nil {
			fn(reason)
		}
	})
}

// recoverPanic, deferred in every task of the socket, turns a panic of
// OnConnection, a handler or OnDisconnect into the end of that socket's
// connection, reported to OnError with the stack, as net/http does for a
// handler: one bad call must not take every user down with the process.
func (s *Socket) recoverPanic() {
	if r := recover(); r != nil {
		s.c.close("forced close", fmt.Errorf("socketio: panic in a handler of socket %s (namespace %s): %v\n%s", s.id, s.nsp, r, debug.Stack()))
	}
}
