package server

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/chatd/chat/server/socketio/engineio"
	"golang.org/x/time/rate"
)

// socket is what a conn needs of its Socket.IO socket: *socketio.Socket in
// the server, a recorder in tests.
type socket interface {
	Emit(event string, args ...any) error
	EmitPrepared(p *engineio.Prepared)
	Disconnect()
}

// conn is one connected socket as the chat sees it: who is logged in on
// it, what it has been given, and its own limits. Everything per socket
// lives here, under one mutex. Its event handlers run one at a time (the
// socket's executor), but the hub delivers and disconnect runs beside
// them; a closed conn never logs in again and is given nothing more, so a
// login that finishes after its socket left cannot leave a ghost in the
// online list.
//
// Most sockets sit idle most of the time, so what only some need is made
// when first needed: the logger naming the socket, the page budget.
type conn struct {
	sock   socket
	sid    string
	base   *slog.Logger
	log    atomic.Pointer[slog.Logger] // base with the sid; see logger
	peer   peer
	capped bool // counted against the per-address connection cap
	// pages is the `load older messages` budget, made by the first page
	// request (nil before, and when unlimited). Only onOlder touches it,
	// and the socket's handlers run one at a time.
	pages *rate.Limiter
	// rooms is the server's room index, which bind and close keep told
	// of this socket's user; nil in tests of the hub alone.
	rooms *memberships

	mu sync.Mutex
	// Fields below are guarded by mu.
	user      string // "" when not logged in
	tokenHash string // the session token this socket logged in with, if any
	closed    bool
	live      bool     // history sent; deliver directly
	pending   []queued // held until live
	given     givenIDs // ids given to the socket: history, live, pages
}

// bind logs the conn in as user, replacing any earlier user, and reports
// the online-list version to wait for. It fails once closed.
func (c *conn) bind(o *online, user, tokenHash string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, false
	}
	c.tokenHash = tokenHash
	if c.user == user {
		// Logging in again as oneself changes no count, but the seed
		// broadcast the list on every login and clients expect it.
		o.signal()
		return o.current(), true
	}
	if c.user != "" {
		o.remove(c.user)
		c.detachLocked()
	}
	c.user = user
	if c.rooms != nil {
		c.rooms.attach(c, user)
	}
	return o.add(user), true
}

// detachLocked takes the socket out of its user's rooms.
func (c *conn) detachLocked() {
	if c.rooms != nil && c.user != "" {
		c.rooms.detach(c, c.user)
	}
}

// unbind logs the conn out and returns who was logged in, or "".
func (c *conn) unbind(o *online) (user, tokenHash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unbindLocked(o)
}

func (c *conn) unbindLocked(o *online) (user, tokenHash string) {
	c.detachLocked()
	user, tokenHash = c.user, c.tokenHash
	c.user, c.tokenHash = "", ""
	if user != "" {
		o.remove(user)
	}
	return user, tokenHash
}

// close marks the conn gone: logged out, given nothing more. It returns
// who was logged in, or "". Safe to call more than once.
func (c *conn) close(o *online) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.pending = nil
	c.given = givenIDs{}
	user, _ := c.unbindLocked(o)
	return user
}

func (c *conn) username() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// logger returns the logger naming this socket, made on first use.
func (c *conn) logger() *slog.Logger {
	if l := c.log.Load(); l != nil {
		return l
	}
	l := c.base.With("sid", c.sid)
	c.log.Store(l)
	return l
}

// disconnect ends the socket from the server's side, saying why in the log.
func (c *conn) disconnect(reason string) {
	c.logger().Info("disconnecting socket", "reason", reason)
	c.sock.Disconnect()
}
