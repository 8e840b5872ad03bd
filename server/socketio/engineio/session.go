package engineio

// Session is one Engine.IO connection. It holds no goroutine while idle.
type Session struct {
	srv  *Server
	id   string
	data any
	h    Handler
}

// ID returns the session id (the handshake's sid).
func (s *Session) ID() string { return s.id }

// Protocol returns 3 or 4, the client's EIO version.
func (s *Session) Protocol() int { return 4 } // TODO

// Transport returns "polling" or "websocket"; it changes to "websocket"
// once an upgrade completes.
func (s *Session) Transport() string { return "polling" } // TODO

// Data returns what Options.Accept returned for the session's handshake.
func (s *Session) Data() any { return s.data }

// SetHandler sets the session's handler; call it in Options.OnOpen.
func (s *Session) SetHandler(h Handler) { s.h = h }

// Send queues a text message packet ("4"+text). It never blocks on the
// network.
func (s *Session) Send(text string) {} // TODO

// SendBinary queues a binary message packet. b is copied.
func (s *Session) SendBinary(b []byte) {} // TODO

// SendPrepared queues p's packets, in order with Send: WebSocket sessions
// get p's ready frames as they are, polling sessions p's texts.
func (s *Session) SendPrepared(p *Prepared) {} // TODO

// Close closes the session with reason (given to OnClose).
func (s *Session) Close(reason string) {} // TODO
