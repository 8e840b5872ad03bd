// Command sioserver is the chat server's Socket.IO layer
// (github.com/chatd/chat/server/socketio, on server/socketio/engineio)
// configured as server/server.go configures it, plus the handlers the
// official Socket.IO v5 protocol test suite (socketio/socket.io-protocol,
// folder test-suite) expects:
//
//   - namespaces "/" and "/custom"; on connect each socket is sent `auth`
//     with the handshake's auth payload ({} when there is none);
//   - on "/", `message` is echoed as `message-back` with the same arguments
//     (binary ones too) and `message-with-ack` is acknowledged with its
//     arguments.
//
// The suite's timings replace ours: pingInterval 300 ms, pingTimeout
// 200 ms, maxPayload 1000000 (the suite checks it in the handshake). As in
// the chat server: AllowEIO3, path /socket.io, connect timeout 10 s. One
// setting differs from the chat server's, because the suite checks Node's
// behaviour: KeepEmptyConnections (a connection whose last socket sent
// DISCONNECT stays open; the chat server closes it, as socket.io-client
// does anyway). The origin check (guard.checkOrigin) is left out: the suite
// sends no Origin header, which the chat server lets through anyway.
//
// It is a test fixture only; see ../run.sh and ../README.md.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatd/chat/server/socketio"
	"github.com/chatd/chat/server/socketio/engineio"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen address")
	eio3 := flag.Bool("eio3", true, "AllowEIO3, as the chat server sets it")
	maxBuf := flag.Int64("max-buffer", 1_000_000, "maxPayload in bytes (the suite expects 1000000; the chat server's default is 131072)")
	connectTimeout := flag.Duration("connect-timeout", 10*time.Second, "Socket.IO connect timeout (the chat server's is 10s)")
	keepEmpty := flag.Bool("keep-empty", true, "keep a connection whose last socket left, as Node does (the chat server does not)")
	authDelay := flag.Duration("auth-delay", 0, "diagnostic: send `auth` this long after the connection handler runs instead of at once")
	verbose := flag.Bool("v", false, "log connections closed for bad input and every session's close reason")
	flag.Parse()

	opts := socketio.Options{
		Engine: engineio.Options{
			PingInterval: 300 * time.Millisecond,
			PingTimeout:  200 * time.Millisecond,
			MaxPayload:   *maxBuf,
			AllowEIO3:    *eio3,
		},
		ConnectTimeout:       *connectTimeout,
		Namespaces:           []string{"/custom"},
		KeepEmptyConnections: *keepEmpty,
		OnConnection:         onConnection(*authDelay),
	}
	if *verbose {
		opts.OnError = func(sid string, err error) { log.Printf("closed %s: %v", sid, err) }
		opts.Engine.OnClose = func(s *engineio.Session, reason string) { log.Printf("session %s closed: %s", s.ID(), reason) }
	}
	io := socketio.NewServer(opts)

	mux := http.NewServeMux()
	mux.Handle("/socket.io/", io)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	log.Printf("sioserver: listening on %s (eio3=%v max-buffer=%d keep-empty=%v auth-delay=%v)", ln.Addr(), *eio3, *maxBuf, *keepEmpty, *authDelay)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		io.Close() // ends pending long polls
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// onConnection sends `auth` and, on "/", sets the echo handlers.
func onConnection(authDelay time.Duration) func(s *socketio.Socket) {
	return func(s *socketio.Socket) {
		auth := s.Auth()
		if auth == nil {
			auth = map[string]any{} // Node's default
		}
		if authDelay > 0 {
			time.AfterFunc(authDelay, func() { s.Emit("auth", auth) })
		} else {
			s.Emit("auth", auth)
		}
		if s.Namespace() != "/" {
			return
		}
		s.On("message", func(args []any, _ func(...any)) {
			s.Emit("message-back", args...)
		})
		s.On("message-with-ack", func(args []any, ack func(...any)) {
			if ack != nil {
				ack(args...)
			}
		})
	}
}
