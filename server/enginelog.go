package server

import "github.com/chatd/chat/server/socketio/engineio"

// engineClosed logs how an Engine.IO session ended when its client did not
// simply leave. For the person behind the client such an end is a page
// that stops answering until it reconnects, so it must not pass in
// silence. Lines are sampled like refusals; chat_engine_closes_total counts
// every one.
func (s *Server) engineClosed(es *engineio.Session, reason string) {
	switch reason {
	case "transport close", "forced close", "server shutting down", "":
		// The client left, or we closed it and said why elsewhere.
		return
	}
	s.met.engineCloses.WithLabelValues(reason).Inc()
	s.refusals.Info(s.log, "connection lost", "sid", es.ID(), "reason", reason, "transport", es.Transport())
}

// upgradeRefused logs a WebSocket upgrade that failed: the client stays on
// long-polling, which works but costs it and the server more.
func (s *Server) upgradeRefused(es *engineio.Session, reason string) {
	s.met.engineCloses.WithLabelValues("upgrade refused").Inc()
	s.refusals.Warn(s.log, "upgrade refused", "sid", es.ID(), "reason", reason, "transport", es.Transport())
}
