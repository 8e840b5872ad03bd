package engineio

// Handler receives a session's messages and its end.
type Handler interface {
	// OnMessage gets one message packet's payload (without the leading
	// '4'), in the order the client sent them, one call at a time per
	// session. It must not block: it runs on the goroutine that read the
	// packet (an HTTP handler or nbio's poller). data is only valid during
	// the call.
	OnMessage(s *Session, data []byte, binary bool)
	// OnClose is called once, with an Engine.IO reason: "transport close",
	// "transport error", "ping timeout", "forced close",
	// "server shutting down", "parse error".
	OnClose(s *Session, reason string)
}
