package socketio

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/chatd/chat/server/socketio/clientjs"
	"github.com/chatd/chat/server/socketio/engineio"
)

// Options configure a Server. Zero fields take the defaults in their
// comments.
type Options struct {
	// Engine configures the Engine.IO server underneath. Its OnOpen is
	// called first, then the session gets its Socket.IO handler.
	Engine engineio.Options
	// ConnectTimeout closes a v5 client's connection that has joined no
	// namespace this long after its handshake. Default 10 s.
	ConnectTimeout time.Duration
	// OnConnection is called for every new socket, on the socket's
	// executor, after the socket is recorded and before its CONNECT is
	// acknowledged: the handlers it sets see every event the client sends
	// once connected, and what it emits follows the acknowledgement.
	OnConnection func(s *Socket)
	// Namespaces lists the namespaces accepted besides "/". A CONNECT to
	// any other is refused with CONNECT_ERROR "Invalid namespace".
	Namespaces []string
	// KeepEmptyConnections keeps a connection whose last socket left (a
	// DISCONNECT from the client, or Socket.Disconnect), as Node does; the
	// protocol suite checks it. By default such a connection is closed:
	// socket.io-client closes it anyway, and a connection with no socket is
	// only a cost that nothing else would end.
	KeepEmptyConnections bool
	// MaxQueuedEvents bounds the events waiting for one socket's handlers;
	// a client that sends more closes its connection (OnError).
	// Default 1000.
	MaxQueuedEvents int
	// ServeClient serves the stock socket.io-client browser bundle at
	// /socket.io/socket.io.js and its siblings, as Node's server does
	// (package clientjs), so that pages written for it load their client.
	ServeClient bool
	// OnError, if set, hears why a connection was closed for bad input (the
	// error wraps ErrProtocol and never contains the packet's content),
	// and about acknowledgement arguments that could not be encoded. For
	// logging.
	OnError func(sessionID string, err error)
}

// ErrProtocol is wrapped by every error that closed a connection for input
// that breaks the protocol.
var ErrProtocol = errors.New("socketio: protocol error")

var errTooManyQueued = errors.New("too many events waiting for their handler")

// Server is a Socket.IO server. Mount it at /socket.io/.
type Server struct {
	opts Options
	eng  *engineio.Server
	http http.Handler    // eng, behind the client bundle when ServeClient
	nsps map[string]bool // besides "/"; read-only

	mu      sync.RWMutex
	sockets map[*Socket]struct{} // for Emit and Close

	// wg counts sockets whose OnDisconnect has not run yet.
	wg sync.WaitGroup
}

// NewServer returns a server with o's settings.
func NewServer(o Options) *Server {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.MaxQueuedEvents <= 0 {
		o.MaxQueuedEvents = 1000
	}
	srv := &Server{opts: o, nsps: map[string]bool{}, sockets: map[*Socket]struct{}{}}
	for _, n := range o.Namespaces {
		srv.nsps[n] = true
	}
	eo := o.Engine
	userOpen := eo.OnOpen
	eo.OnOpen = func(s *engineio.Session) {
		if userOpen != nil {
			userOpen(s)
		}
		s.SetHandler(newConn(srv, s))
	}
	srv.eng = engineio.NewServer(eo)
	srv.http = srv.eng
	if o.ServeClient {
		srv.http = clientjs.Middleware(srv.eng)
	}
	return srv
}

// ServeHTTP serves Engine.IO requests.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	srv.http.ServeHTTP(w, r)
}

// Engine returns the Engine.IO server underneath (for its counts).
func (srv *Server) Engine() *engineio.Server { return srv.eng }

// Close closes every connection ("server shutting down") and returns once
// every socket's OnDisconnect has run.
func (srv *Server) Close() {
	srv.eng.Close()
	// Sockets the engine did not report closed go now.
	for _, s := range srv.snapshot() {
		s.c.close("server shutting down", nil)
	}
	srv.wg.Wait()
}

// Emit sends an event to every socket of "/", encoded once.
// (EmitPrepared ignores sockets of other namespaces.)
func (srv *Server) Emit(event string, args ...any) error {
	p, err := PrepareEvent(event, args...)
	if err != nil {
		return err
	}
	for _, s := range srv.snapshot() {
		s.EmitPrepared(p)
	}
	return nil
}

// snapshot returns the connected sockets.
func (srv *Server) snapshot() []*Socket {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	out := make([]*Socket, 0, len(srv.sockets))
	for s := range srv.sockets {
		out = append(out, s)
	}
	return out
}

func (srv *Server) knows(nsp string) bool { return nsp == "/" || srv.nsps[nsp] }

func (srv *Server) register(s *Socket) {
	srv.mu.Lock()
	srv.sockets[s] = struct{}{}
	srv.mu.Unlock()
}

func (srv *Server) unregister(s *Socket) {
	srv.mu.Lock()
	delete(srv.sockets, s)
	srv.mu.Unlock()
}

func (srv *Server) report(sid string, err error) {
	if srv.opts.OnError != nil {
		srv.opts.OnError(sid, err)
	}
}
