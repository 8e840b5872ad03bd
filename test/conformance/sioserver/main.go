// Command sioserver is the Socket.IO server of github.com/zishang520/socket.io
// (servers/socket/v3) configured as the chat server (server/server.go)
// configures it, plus the handlers the official Socket.IO v5 protocol test
// suite (socketio/socket.io-protocol, folder test-suite) expects:
//
//   - namespaces "/" and "/custom"; on connect each socket is sent
//     `auth` with the handshake's auth payload ({} when there is none);
//   - on "/", `message` is echoed as `message-back` with the same arguments
//     (binary ones too) and `message-with-ack` is acknowledged with its
//     arguments.
//
// The suite's timings replace ours: pingInterval 300 ms, pingTimeout 200 ms,
// maxHttpBufferSize 1000000 (the suite checks maxPayload in the handshake).
// As in the chat server: AllowEIO3, no client bundle served, path
// /socket.io, connect timeout 10 s, the engine built separately and bound to
// Socket.IO, a connect gate registered on the engine before Socket.IO binds
// (-gate; see gate.go) and pollfix.Wrap in front of the engine handler
// (-pollfix), and the chat server's own WebSocket transport
// (-wstransport). Each can be switched off to see whether the suite
// depends on it. The origin check (guard.checkOrigin) is left out: the suite sends
// no Origin header, which the chat server lets through anyway.
//
// It is a test fixture only; see ../run.sh and ../README.md.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatd/chat/server/pollfix"
	"github.com/chatd/chat/server/wstransport"
	"github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen address")
	usePollfix := flag.Bool("pollfix", true, "wrap the engine handler with github.com/chatd/chat/server/pollfix, as the chat server does")
	useWS := flag.Bool("wstransport", true, "serve WebSocket with the chat server's own transport (server/wstransport) instead of the library's")
	useGate := flag.Bool("gate", true, "register a connect gate equivalent to the chat server's (server/connectgate.go)")
	eio3 := flag.Bool("eio3", true, "AllowEIO3, as the chat server sets it")
	maxBuf := flag.Int64("max-buffer", 1_000_000, "maxHttpBufferSize in bytes (the suite expects maxPayload 1000000; the chat server's default is 131072)")
	connectTimeout := flag.Duration("connect-timeout", 10*time.Second, "Socket.IO connect timeout (the chat server's is 10s)")
	authDelay := flag.Duration("auth-delay", 0, "diagnostic: send `auth` this long after the connection handler runs instead of at once (see README, \"the auth race\")")
	verbose := flag.Bool("v", false, "log what pollfix does")
	flag.Parse()

	opts := socket.DefaultServerOptions()
	opts.SetServeClient(false)
	opts.SetAllowEIO3(*eio3)
	opts.SetPingInterval(300 * time.Millisecond)
	opts.SetPingTimeout(200 * time.Millisecond)
	opts.SetMaxHttpBufferSize(*maxBuf)
	opts.SetConnectTimeout(*connectTimeout)
	opts.SetPath("/socket.io")
	if *useWS {
		opts.SetTransports(types.NewSet[transports.TransportCtor](&transports.PollingBuilder{}, &wstransport.Builder{}))
	}

	io := socket.NewServer(nil, opts)
	var gate *connectGate
	eng := engine.NewServer(opts)
	if *useGate {
		gate = newConnectGate(*connectTimeout)
		eng.On("connection", gate.attach) // before Bind, like the chat server
	}
	io.Bind(eng)

	setup := func(nsp socket.Namespace, echo bool) {
		nsp.On("connection", func(args ...any) {
			s := args[0].(*socket.Socket)
			auth := s.Handshake().Auth
			if auth == nil {
				auth = map[string]any{} // Node's default
			}
			if *authDelay > 0 {
				time.AfterFunc(*authDelay, func() { s.Emit("auth", auth) })
			} else {
				s.Emit("auth", auth)
			}
			if echo {
				s.On("message", func(args ...any) {
					s.Emit("message-back", args...)
				})
				s.On("message-with-ack", func(args ...any) {
					n := len(args)
					if n == 0 {
						return
					}
					if ack, ok := args[n-1].(socket.Ack); ok {
						ack(args[:n-1], nil)
					}
				})
			}
			if gate != nil && nsp.Name() == "/" {
				// The chat server opens the gate at the end of its "/"
				// connection handler (server/handlers.go).
				gate.connected(string(s.Conn().Id()))
			}
		})
	}
	setup(io.Sockets(), true)
	setup(io.Of("/custom", nil), false)

	var h http.Handler = eng
	if *usePollfix {
		var logger *slog.Logger
		if *verbose {
			logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
		h = pollfix.Wrap(h, *maxBuf, logger)
	}
	mux := http.NewServeMux()
	mux.Handle("/socket.io/", h)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	log.Printf("sioserver: listening on %s (pollfix=%v gate=%v eio3=%v max-buffer=%d auth-delay=%v)", ln.Addr(), *usePollfix, *useGate, *eio3, *maxBuf, *authDelay)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		done := make(chan struct{})
		io.Close(func(error) { close(done) })
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
