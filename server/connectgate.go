package server

import (
	"strings"
	"sync"
	"time"

	"github.com/zishang520/socket.io/servers/engine/v3"
)

// connectGate works around a race in zishang520/socket.io v3.0.6 (no
// upstream issue found as of 2026-11-25; to be filed): the server writes the
// Socket.IO CONNECT acknowledgement to the wire on the socket's task queue
// (namespace.Add → _doConnect → socket._onconnect) *before* the client object
// records the socket (the fn callback that stores client.nsps). A client
// that emits the moment it is connected — socket.io-client flushes its
// buffered emits exactly then — can have its first event decoded in that
// window; Client.ondecoded then finds no socket, logs "invalid state" and
// force-closes the whole connection, losing the event. Node's single thread
// has no such window.
//
// The gate listens to each Engine.IO connection's "data" event before the
// Socket.IO client does (its listener is registered first) and, while the
// default namespace's connect is in flight, holds the reader goroutine on
// any non-CONNECT packet until the server's "connection" handler has run,
// which happens right after the socket is recorded. The wait is bounded by
// the connect timeout. TestConnectRace fails without it.
type connectGate struct {
	timeout time.Duration

	mu sync.Mutex
	// conns is guarded by mu: engine connection id → its gate.
	conns map[string]*gateState
}

type gateState struct {
	requested bool          // a CONNECT to "/" was received
	ready     chan struct{} // closed once the socket is recorded
}

func newConnectGate(timeout time.Duration) *connectGate {
	return &connectGate{timeout: timeout, conns: map[string]*gateState{}}
}

// attach is the engine's "connection" listener; it must be registered before
// the Socket.IO server binds to the engine.
func (g *connectGate) attach(args ...any) {
	conn, ok := args[0].(engine.Socket)
	if !ok {
		return
	}
	id := string(conn.Id())
	st := &gateState{ready: make(chan struct{})}
	// EIO3 clients are connected to "/" by the server without a CONNECT.
	st.requested = conn.Protocol() == 3
	g.mu.Lock()
	g.conns[id] = st
	g.mu.Unlock()
	conn.On("data", func(args ...any) { g.onData(id, st, args) })
	conn.Once("close", func(...any) {
		g.mu.Lock()
		delete(g.conns, id)
		g.mu.Unlock()
	})
}

func (g *connectGate) onData(id string, st *gateState, args []any) {
	var s string
	if len(args) > 0 {
		switch d := args[0].(type) {
		case string:
			s = d
		case interface{ String() string }:
			s = d.String()
		}
	}
	connect := strings.HasPrefix(s, "0") && (len(s) == 1 || s[1] != '/')
	g.mu.Lock()
	wait := st.requested
	st.requested = st.requested || connect
	g.mu.Unlock()
	// The first CONNECT passes; anything after it, a second CONNECT included,
	// waits for the socket to be recorded. A second CONNECT let through early
	// finds no socket and starts another connect instead of closing the
	// connection, as Node does (the hostile suite's "second CONNECT to /").
	if !wait {
		return
	}
	select {
	case <-st.ready:
	case <-time.After(g.timeout):
	}
}

// connected opens the gate of the engine connection id.
func (g *connectGate) connected(id string) {
	g.mu.Lock()
	st := g.conns[id]
	g.mu.Unlock()
	if st == nil {
		return
	}
	select {
	case <-st.ready:
	default:
		close(st.ready)
	}
}
