package engineio

import "net/http"

// Server is an Engine.IO server. Mount it at the Engine.IO path
// (/socket.io/ or /engine.io/); it ignores the path itself.
type Server struct {
	opts Options
}

// NewServer returns a server with o's settings (zero fields take their
// defaults).
func NewServer(o Options) *Server {
	o.setDefaults()
	return &Server{opts: o}
}

// ServeHTTP answers handshakes, polls, posts and WebSocket upgrades.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// TODO
	http.Error(w, "not implemented", http.StatusNotImplemented)
}

// Close closes every session ("server shutting down"), answers pending
// polls and stops the timer wheel and the WebSocket poller.
func (srv *Server) Close() {
	// TODO
}

// Count returns the number of open sessions.
func (srv *Server) Count() int {
	return 0 // TODO
}
