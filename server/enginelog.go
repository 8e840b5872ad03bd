package server

import (
	"github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
)

// watchEngine logs how an Engine.IO session ends when its client did not
// simply leave, and an upgrade probe that closed before the upgrade was
// done. Both used to pass in silence, and for the person behind the
// client they are a page that stops answering until it reconnects. Lines
// are sampled like refusals; chat_engine_closes_total counts every one.
func (s *Server) watchEngine(conn engine.Socket) {
	sid := conn.Id()
	_ = conn.On("upgrading", func(args ...any) {
		probe, ok := args[0].(transports.Transport)
		if !ok {
			return
		}
		_ = probe.Once("close", func(...any) {
			if conn.Upgraded() {
				return
			}
			s.met.engineCloses.WithLabelValues("upgrade probe closed").Inc()
			s.refusals.Warn(s.log, "upgrade probe closed before the upgrade", "sid", sid,
				"session", conn.ReadyState(), "transport", conn.Transport().Name())
		})
	})
	_ = conn.Once("close", func(args ...any) {
		reason, _ := args[0].(string)
		var err error
		if len(args) > 1 {
			err, _ = args[1].(error)
		}
		switch reason {
		case "transport close", "forced close", "server close", "":
			// The client left, or we closed it and said why elsewhere.
			return
		}
		s.met.engineCloses.WithLabelValues(reason).Inc()
		s.refusals.Info(s.log, "connection lost", "sid", sid, "reason", reason,
			"transport", conn.Transport().Name(), "upgrading", conn.Upgrading(), "err", err)
	})
}
