// Package engineio is an Engine.IO server (protocol v4, and v3 for older
// clients) written so that an idle connection costs a few hundred bytes and
// no goroutine.
//
// It replaces github.com/zishang520/socket.io/servers/engine, whose
// per-session objects, timer goroutines and reader goroutines set a floor of
// about 20 KB per connection that nothing configurable moved, and whose
// transports needed the workarounds in server/wstransport, server/pollfix and
// server/timeouts. Here those properties hold by construction:
//
//   - heartbeats and timeouts of every session are driven by one timer wheel
//     (one goroutine for the whole server);
//   - WebSocket reads are driven by readiness (epoll, through
//     github.com/lesismal/nbio), not by a goroutine parked in Read;
//   - every byte written to a WebSocket goes through the session's single
//     queue as whole frames, so frames never interleave;
//   - a session's HTTP requests are handled in arrival order, one pending
//     GET at a time, and a poll of a closing session is answered at once.
//
// The protocol: https://socket.io/docs/v4/engine-io-protocol/.
package engineio
