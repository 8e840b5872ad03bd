// Package timeouts bounds how long one client can make the server wait on
// it over plain HTTP: a request body that never finishes arriving, and a
// WebSocket peer (on a route that upgrades) that stops reading what it is
// sent. The Socket.IO endpoint keeps its own deadlines (package
// server/socketio/engineio) and is not wrapped.
//
// http.Server has no setting for either that leaves WebSockets alone:
// ReadTimeout and WriteTimeout cover the whole connection, so they would
// cut every WebSocket after that long, and ReadHeaderTimeout stops at the
// headers. Without this package a client that sends headers announcing
// a 1,000-byte body and then 5 bytes holds a goroutine and a connection
// forever (net/http even waits on such a body after the handler returned,
// to reuse the connection).
package timeouts

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Wrap returns next with two deadlines:
//
//   - An HTTP request that has a body (a long-polling POST, or anything
//     else with a Content-Length or chunked body) must arrive whole within
//     body, counted from when its handler starts. After that its reads
//     fail, the handler sees an error, and the connection is closed.
//     Requests without a body (long-polling GETs, which the engine holds
//     open up to a ping interval) get no read deadline.
//   - A WebSocket upgrade's connection, once hijacked, gets a deadline of
//     write on every write: a peer that has not taken a single byte for
//     that long is cut off, and the engine closes its socket and drops
//     what was queued for it. A peer that reads slowly but keeps reading
//     is never cut off.
//
// A zero duration disables that deadline. Either way, a hijacked
// connection's ResponseWriter is released (see hijackWriter.Hijack).
func Wrap(next http.Handler, body, write time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			w = &hijackWriter{ResponseWriter: w, write: write}
		} else if body > 0 && r.ContentLength != 0 {
			// An error here means the connection cannot take deadlines
			// (HTTP/2 streams do their own flow control); serve anyway.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(body))
		}
		next.ServeHTTP(w, r)
	})
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// hijackWriter hands out a deadlineConn (when there is a write deadline)
// when the WebSocket library hijacks the connection, and lets go of
// net/http's response (gorilla/websocket finds Hijack through
// http.NewResponseController, which looks at this type first).
type hijackWriter struct {
	http.ResponseWriter
	write time.Duration
}

func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if h.write > 0 {
		dc := &deadlineConn{Conn: c, write: h.write}
		// The buffered writer must write through the deadline too.
		brw.Writer.Reset(dc)
		c = dc
	}
	// The Engine.IO library keeps the handshake's ResponseWriter for the
	// life of the connection; through it net/http's connection state
	// and its 4 KiB read and write buffers stayed reachable, about 8 KiB
	// per idle WebSocket. After a hijack it is dead anyway.
	h.ResponseWriter = hijacked{}
	return c, brw, nil
}

func (h *hijackWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// hijacked stands in for a ResponseWriter whose connection was hijacked:
// every use fails as net/http's own would.
type hijacked struct{}

func (hijacked) Header() http.Header                          { return http.Header{} }
func (hijacked) Write([]byte) (int, error)                    { return 0, http.ErrHijacked }
func (hijacked) WriteHeader(int)                              {}
func (hijacked) Hijack() (net.Conn, *bufio.ReadWriter, error) { return nil, nil, http.ErrHijacked }

// deadlineConn sets a write deadline for the span of each write. Each write
// to a socket whose peer reads is quick, so the deadline only fires on a
// peer that has stopped reading and filled the kernel's buffers.
//
// gorilla/websocket sets its own write deadline before each frame (zero,
// meaning none, unless the application set one); that call comes first
// and this one overrides it, so the library needs no changes.
type deadlineConn struct {
	net.Conn
	write time.Duration
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.write)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	// The deadline belongs to this write only: left in place, it would
	// fail the non-blocking writes made through SyscallConn once it
	// passed, however healthy the peer.
	c.Conn.SetWriteDeadline(time.Time{})
	return n, err
}

// SyscallConn exposes the socket for non-blocking write attempts (package
// wstransport tries one before queueing); they never wait, so they need no
// deadline.
func (c *deadlineConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
