package socketio

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chat/server/socketio/engineio"
)

// session is what a conn needs of an Engine.IO session: *engineio.Session,
// or a fake in tests.
type session interface {
	ID() string
	Protocol() int
	Data() any
	Send(text string)
	SendBinary(b []byte)
	SendPrepared(p *engineio.Prepared)
	Close(reason string)
}

// conn is the Socket.IO side of one Engine.IO session: its sockets (one
// per namespace joined) and the packet being reassembled.
type conn struct {
	srv  *Server
	sess session
	v2   bool // an EIO3 client, speaking the v2-client protocol

	// partial is a binary packet waiting for its attachments. Only
	// OnMessage touches it, and the engine calls that one at a time.
	partial *partialPacket

	mu      sync.Mutex
	sockets []*Socket   // joined namespaces, usually one
	timer   *time.Timer // connect timeout; nil once a namespace is joined
	closed  bool
}

// partialPacket is a BINARY_EVENT or BINARY_ACK whose JSON has arrived and
// whose attachments are arriving.
type partialPacket struct {
	p     packet // data is not kept
	sock  *Socket
	event string // "" for an ACK
	args  []any
	atts  [][]byte
}

func newConn(srv *Server, sess session) *conn {
	c := &conn{srv: srv, sess: sess, v2: sess.Protocol() == 3}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v2 {
		// socket.io v2 joined every client to "/" at once and said so
		// with a CONNECT; its clients wait for that packet.
		c.joinLocked("/", nil)
	} else {
		c.timer = time.AfterFunc(srv.opts.ConnectTimeout, c.connectTimeout)
	}
	return c
}

// OnMessage decodes one Engine.IO message and hands it on; see
// engineio.Handler. It never blocks: handlers run on the sockets'
// executors.
func (c *conn) OnMessage(_ *engineio.Session, data []byte, binary bool) {
	c.onMessage(data, binary)
}

// OnClose disconnects every socket with the engine's reason.
func (c *conn) OnClose(_ *engineio.Session, reason string) {
	c.closeSockets(reason)
}

func (c *conn) onMessage(data []byte, binary bool) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	if binary {
		c.onAttachment(data)
		return
	}
	if c.partial != nil {
		c.fail(errUnexpectedText, data)
		return
	}
	p, err := decodePacket(data)
	if err != nil {
		c.fail(err, data)
		return
	}
	switch p.typ {
	case typeConnect:
		err = c.onConnect(p)
	case typeDisconnect:
		err = c.onDisconnect(p)
	case typeEvent, typeBinaryEvent, typeAck, typeBinaryAck:
		err = c.onEventOrAck(p)
	default: // typeConnectError: the server's to send
		err = errClientConnError
	}
	if err != nil {
		c.fail(err, data)
	}
}

func (c *conn) onConnect(p packet) error {
	nsp, auth := p.nsp, map[string]any(nil)
	if c.v2 {
		// A v2 client puts its query on the namespace: "/admin?token=x".
		if n, q, ok := strings.Cut(nsp, "?"); ok {
			nsp = n
			if vals, err := url.ParseQuery(q); err == nil && len(vals) > 0 {
				auth = make(map[string]any, len(vals))
				for k, v := range vals {
					auth[k] = v[0]
				}
			}
		}
	} else {
		var err error
		if auth, err = connectAuth(p.data); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	if c.findLocked(nsp) != nil {
		return errDoubleConnect
	}
	if !c.srv.knows(nsp) {
		c.sendLocked(outgoing{enc: encoded{text: c.connectError(nsp)}})
		return nil
	}
	c.joinLocked(nsp, auth)
	return nil
}

// joinLocked records a socket for nsp and queues its connect task. The
// socket exists, in the conn and the server, before the client can know it
// is connected: an event sent the moment it is finds it.
func (c *conn) joinLocked(nsp string, auth map[string]any) {
	s := &Socket{c: c, id: newID(), nsp: nsp, auth: auth}
	c.sockets = append(c.sockets, s)
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.srv.wg.Add(1)
	c.srv.register(s)
	s.exec.do(s.connect, 0)
}

func (c *conn) onDisconnect(p packet) error {
	c.mu.Lock()
	s := c.findLocked(p.nsp)
	if s == nil {
		c.mu.Unlock()
		return errNamespaceState
	}
	c.removeLocked(s)
	s.gone = true
	closeConn := c.emptyLocked()
	c.mu.Unlock()
	s.finish("client namespace disconnect")
	if closeConn {
		c.close("forced close", nil)
	}
	return nil
}

func (c *conn) onEventOrAck(p packet) error {
	c.mu.Lock()
	s := c.findLocked(p.nsp)
	c.mu.Unlock()
	if s == nil {
		return errNamespaceState
	}
	var (
		event string
		args  []any
		err   error
	)
	isEvent := p.typ == typeEvent || p.typ == typeBinaryEvent
	if isEvent {
		event, args, err = eventArgs(p.data)
	} else {
		args, err = ackArgs(p.data)
	}
	if err != nil {
		return err
	}
	if p.typ == typeBinaryEvent || p.typ == typeBinaryAck {
		if p.attachments > 0 {
			p.data = nil
			c.partial = &partialPacket{p: p, sock: s, event: event, args: args,
				atts: make([][]byte, 0, p.attachments)}
			return nil
		}
		if err := reconstruct(args, nil); err != nil {
			return err
		}
	}
	if !isEvent {
		return nil // this server asks for no acknowledgement: nothing to match
	}
	return c.dispatch(s, event, args, p)
}

func (c *conn) onAttachment(data []byte) {
	pp := c.partial
	if pp == nil {
		c.close("parse error", fmt.Errorf("%w: %w (%d bytes)", ErrProtocol, errUnexpectedBin, len(data)))
		return
	}
	pp.atts = append(pp.atts, append([]byte(nil), data...))
	if len(pp.atts) < pp.p.attachments {
		return
	}
	c.partial = nil
	if err := reconstruct(pp.args, pp.atts); err != nil {
		c.fail(err, nil)
		return
	}
	if pp.p.typ == typeBinaryEvent {
		if err := c.dispatch(pp.sock, pp.event, pp.args, pp.p); err != nil {
			c.fail(err, nil)
		}
	}
}

func (c *conn) dispatch(s *Socket, event string, args []any, p packet) error {
	if !s.dispatch(event, args, p.hasID, p.id) {
		c.mu.Lock()
		gone := s.gone
		c.mu.Unlock()
		if !gone {
			return errTooManyQueued
		}
	}
	return nil
}

// fail closes the connection for bad input, telling Options.OnError why.
func (c *conn) fail(err error, data []byte) {
	c.close("parse error", describe(err, data))
}

// describe wraps err with ErrProtocol and the packet's type and size (never
// its content: it may hold a password).
func describe(err error, data []byte) error {
	if data == nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	t := "none"
	if len(data) > 0 {
		t = fmt.Sprintf("%q", data[:1])
	}
	return fmt.Errorf("%w: %w (packet type %s, %d bytes)", ErrProtocol, err, t, len(data))
}

// close disconnects every socket with reason and closes the session;
// report, when not nil, goes to Options.OnError first.
func (c *conn) close(reason string, report error) {
	if report != nil {
		c.srv.report(c.sess.ID(), report)
	}
	if c.closeSockets(reason) {
		c.sess.Close(reason)
	}
}

// closeSockets marks the conn closed and disconnects its sockets with
// reason; it reports whether this call closed it.
func (c *conn) closeSockets(reason string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	socks := c.sockets
	c.sockets = nil
	for _, s := range socks {
		s.gone = true
		c.srv.unregister(s)
	}
	c.mu.Unlock()
	for _, s := range socks {
		s.finish(reason)
	}
	return true
}

// connectTimeout closes a session that joined no namespace in time.
func (c *conn) connectTimeout() {
	c.mu.Lock()
	expired := c.timer != nil && !c.closed
	c.mu.Unlock()
	if expired {
		c.close("forced close", nil)
	}
}

func (c *conn) findLocked(nsp string) *Socket {
	for _, s := range c.sockets {
		if s.nsp == nsp {
			return s
		}
	}
	return nil
}

// removeLocked forgets s, which is leaving.
func (c *conn) removeLocked(s *Socket) {
	for i, x := range c.sockets {
		if x == s {
			c.sockets = append(c.sockets[:i], c.sockets[i+1:]...)
			break
		}
	}
	c.srv.unregister(s)
}

// emptyLocked reports whether the connection is to be closed because its
// last socket left.
func (c *conn) emptyLocked() bool {
	return len(c.sockets) == 0 && !c.closed && !c.srv.opts.KeepEmptyConnections
}

// sendLocked writes o to the session; c.mu keeps a packet's attachments
// next to it.
func (c *conn) sendLocked(o outgoing) {
	if c.closed {
		return
	}
	if o.prepared != nil {
		c.sess.SendPrepared(o.prepared)
		return
	}
	c.sess.Send(o.enc.text)
	for _, b := range o.enc.attachments {
		c.sess.SendBinary(b)
	}
}

// connectAck is the CONNECT acknowledgement of s: with its id for v5
// clients, bare for v2 ones.
func (c *conn) connectAck(s *Socket) string {
	b := appendHeader(make([]byte, 0, 40+len(s.nsp)), typeConnect, s.nsp, 0, false, 0)
	if !c.v2 {
		b = append(b, `{"sid":"`...)
		b = append(b, s.id...)
		b = append(b, `"}`...)
	}
	return string(b)
}

// connectError refuses a namespace: Node's error object for v5 clients, the
// string socket.io v2 sent for v2 ones.
func (c *conn) connectError(nsp string) string {
	b := appendHeader(nil, typeConnectError, nsp, 0, false, 0)
	if c.v2 {
		b = append(b, `"Invalid namespace"`...)
	} else {
		b = append(b, `{"message":"Invalid namespace"}`...)
	}
	return string(b)
}

// newID returns a random socket id: 20 URL-safe characters, as Node's.
func newID() string {
	var b [15]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
