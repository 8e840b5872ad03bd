// Package socketio is a Socket.IO server: protocol v5 over Engine.IO v4
// (socket.io-client 3 and 4), and the v2-client protocol over Engine.IO v3
// (socket.io-client 2.x), on top of package engineio. It replaces
// github.com/zishang520/socket.io/servers/socket, whose per-socket objects
// and goroutines set the floor of an idle connection's cost, and whose
// connect race (the CONNECT acknowledged before the socket was recorded, so
// an event sent right after connecting was lost) needed a gate around it.
// Here a socket is recorded, and its handlers set, before its CONNECT is
// acknowledged: that race cannot happen.
//
// # API
//
//	func NewServer(o Options) *Server
//	func (*Server) ServeHTTP(w http.ResponseWriter, r *http.Request) // mount at /socket.io/
//	func (*Server) Emit(event string, args ...any) error // every socket of "/", encoded once
//	func (*Server) Close()                               // returns once every OnDisconnect has run
//	func (*Server) Engine() *engineio.Server
//
//	type Options struct {
//		Engine               engineio.Options // its OnOpen is called first, then socketio's
//		ConnectTimeout       time.Duration    // no namespace joined by then: closed (10 s)
//		OnConnection         func(s *Socket)  // before the CONNECT acknowledgement
//		Namespaces           []string         // accepted besides "/"
//		KeepEmptyConnections bool             // keep a connection whose last socket left
//		MaxQueuedEvents      int              // per socket, then the connection is cut (1000)
//		OnError              func(sessionID string, err error) // why bad input closed a connection
//	}
//	var ErrProtocol error // wrapped by every OnError for bad input
//
//	func (*Socket) ID() string        // the Socket.IO id sent in the CONNECT acknowledgement
//	func (*Socket) SessionID() string // the Engine.IO session's id
//	func (*Socket) Namespace() string
//	func (*Socket) Auth() map[string]any // CONNECT payload; nil when none (v2 clients on "/")
//	func (*Socket) Data() any            // what engineio.Options.Accept returned
//	func (*Socket) On(event string, fn func(args []any, ack func(args ...any)))
//	func (*Socket) OnDisconnect(fn func(reason string))
//	func (*Socket) Emit(event string, args ...any) error
//	func (*Socket) EmitPrepared(p *engineio.Prepared) // from PrepareEvent(s); "/" only
//	func (*Socket) Enqueue(fn func())
//	func (*Socket) Disconnect()
//	func (*Socket) Connected() bool
//
//	func PrepareEvent(event string, args ...any) (*engineio.Prepared, error)
//	func PrepareEvents(events ...[]any) (*engineio.Prepared, error) // each: name, args...
//
// # Order and goroutines
//
// Every socket has a serial executor: OnConnection, then its events'
// handlers in arrival order, Enqueue'd functions, and last OnDisconnect,
// one at a time, on a goroutine that exists only while the socket has work.
// An idle socket costs no goroutine; a slow handler (a database call)
// delays only its own socket. Handlers may block (but must not call
// Server.Close, which waits for them). Emit, EmitPrepared, acks and
// Disconnect may be called from any goroutine; what one goroutine sends to
// a socket arrives in that order. A handler that panics ends its
// connection ("forced close"), reported to OnError with the stack, as
// net/http does; the process goes on.
//
// Connecting: on a CONNECT (v5; a v2 client is joined to "/" when its
// session opens, as socket.io v2 did) the socket is recorded, OnConnection
// runs, then the acknowledgement goes out, followed by whatever was emitted
// to the socket meanwhile. An event that arrives right behind the CONNECT
// waits for OnConnection and finds its handler. Unknown namespaces get
// CONNECT_ERROR "Invalid namespace" and the connection stays.
//
// Acknowledgements: an event with an id gets a non-nil ack; the first call
// sends it, later ones do nothing. Acks from clients are read and ignored:
// this server never asks for one.
//
// Encoding: arguments go through encoding/json (without HTML escaping, as
// JSON.stringify); decoded arguments are what encoding/json gives for
// []any (numbers float64). []byte arguments, at the top level or inside
// []any and map[string]any, travel as binary attachments both ways
// (placeholders, packet types 5 and 6); at most 10 per packet.
//
// Leaving: OnDisconnect gets Node's reasons: "client namespace disconnect"
// (the client's DISCONNECT), "server namespace disconnect" (Disconnect),
// or the Engine.IO session's close reason ("transport close", "ping
// timeout", "transport error", "forced close", "server shutting down"),
// and "parse error" when the client broke the protocol. When a
// connection's last socket leaves by a DISCONNECT or Disconnect, the
// connection is closed unless KeepEmptyConnections.
//
// Bad input (a packet that does not decode, an unknown type, bad JSON, an
// event name that is not a string or is reserved, too many attachments, a
// packet for a namespace not joined, a second CONNECT, more than
// MaxQueuedEvents waiting) closes the connection with "parse error" and
// tells OnError why, without the packet's content. Nothing a client sends
// makes the server panic; FuzzDecode checks the decoder.
package socketio
