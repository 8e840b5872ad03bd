package main

import (
	"strings"
	"sync"
	"time"

	"github.com/zishang520/socket.io/servers/engine/v3"
)

// connectGate is an equivalent of the chat server's connectGate
// (server/connectgate.go, unexported, hence repeated here), which works
// around a race in zishang520/socket.io v3.0.6: the CONNECT acknowledgement
// is written before the client object records the socket, so an event
// decoded in that window finds no socket and the connection is closed
// ("invalid state"). The gate listens to each Engine.IO connection's "data"
// before Socket.IO does and, once a CONNECT to "/" has been received, holds
// the reader on later packets until the "/" connection handler has run
// (connected), at most timeout.
type connectGate struct {
	timeout time.Duration

	mu    sync.Mutex
	conns map[string]*gateState // engine connection id → its gate
}

type gateState struct {
	requested bool          // a CONNECT to "/" was received; guarded by connectGate.mu
	ready     chan struct{} // closed once the socket is recorded
}

func newConnectGate(timeout time.Duration) *connectGate {
	return &connectGate{timeout: timeout, conns: map[string]*gateState{}}
}

// attach is the engine's "connection" listener; register it before the
// Socket.IO server binds to the engine.
func (g *connectGate) attach(args ...any) {
	conn, ok := args[0].(engine.Socket)
	if !ok {
		return
	}
	id := string(conn.Id())
	st := &gateState{ready: make(chan struct{})}
	st.requested = conn.Protocol() == 3 // EIO3 clients join "/" without a CONNECT
	g.mu.Lock()
	g.conns[id] = st
	g.mu.Unlock()
	conn.On("data", func(args ...any) { g.onData(st, args) })
	conn.Once("close", func(...any) {
		g.mu.Lock()
		delete(g.conns, id)
		g.mu.Unlock()
	})
}

func (g *connectGate) onData(st *gateState, args []any) {
	var s string
	if len(args) > 0 {
		switch d := args[0].(type) {
		case string:
			s = d
		case interface{ String() string }:
			s = d.String()
		}
	}
	if strings.HasPrefix(s, "0") && (len(s) == 1 || s[1] != '/') {
		g.mu.Lock()
		st.requested = true
		g.mu.Unlock()
		return
	}
	g.mu.Lock()
	wait := st.requested
	g.mu.Unlock()
	if !wait {
		return
	}
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case <-st.ready:
	case <-t.C:
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
