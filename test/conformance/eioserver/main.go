// Command eioserver is the bare Engine.IO server of
// github.com/chatd/chat/server/socketio/engineio, configured the way the
// official Engine.IO v4 protocol test suite
// (socketio/engine.io-protocol, folder test-suite) expects: path /engine.io
// (mounted on the mux; the engine itself ignores the path),
// pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000, and every
// message echoed back to its sender.
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

	"github.com/chatd/chat/server/socketio/engineio"
)

const maxPayload = 1_000_000

// echo sends every message back to its sender, text as text, binary as
// binary.
type echo struct{ trace bool }

func (e echo) OnMessage(s *engineio.Session, data []byte, binary bool) {
	if binary {
		s.SendBinary(data)
		return
	}
	s.Send(string(data))
}

func (e echo) OnClose(s *engineio.Session, reason string) {
	if e.trace {
		log.Printf("trace close %s %s", s.ID(), reason)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen address")
	trace := flag.Bool("trace", false, "log each request, open, refused upgrade and close")
	flag.Parse()

	h := echo{trace: *trace}
	opts := engineio.Options{
		PingInterval: 300 * time.Millisecond,
		PingTimeout:  200 * time.Millisecond,
		MaxPayload:   maxPayload,
		OnOpen: func(s *engineio.Session) {
			if *trace {
				log.Printf("trace open %s", s.ID())
			}
			s.SetHandler(h)
		},
	}
	if *trace {
		opts.OnUpgradeRefused = func(s *engineio.Session, reason string) {
			log.Printf("trace upgrade refused %s: %s", s.ID(), reason)
		}
	}
	eio := engineio.NewServer(opts)

	var handler http.Handler = eio
	if *trace {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.Printf("trace begin %s %s", r.Method, r.URL.RawQuery)
			eio.ServeHTTP(w, r)
			log.Printf("trace end   %s %s", r.Method, r.URL.RawQuery)
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", handler)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	log.Printf("eioserver: listening on %s", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		eio.Close() // ends pending long polls
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
