// Command eioserver is the bare Engine.IO server of
// github.com/zishang520/socket.io (servers/engine/v3), configured the way the
// official Engine.IO v4 protocol test suite
// (socketio/engine.io-protocol, folder test-suite) expects: path /engine.io
// (mounted on the mux; the engine handler itself ignores the path),
// pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000, and every
// message echoed back to its sender.
//
// With -pollfix the engine handler is wrapped by
// github.com/chatd/chat/server/pollfix, as the chat server wraps it.
//
// It is a test fixture only; see ../run.sh and ../README.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chatd/chat/server/pollfix"
	"github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/engine/v3/config"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

const maxPayload = 1_000_000

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen address")
	usePollfix := flag.Bool("pollfix", false, "wrap the engine handler with github.com/chatd/chat/server/pollfix")
	verbose := flag.Bool("v", false, "log what pollfix does")
	trace := flag.Bool("trace", false, "log every request's arrival and completion (for diagnosing races)")
	flag.Parse()

	opts := config.DefaultServerOptions()
	opts.SetPingInterval(300 * time.Millisecond)
	opts.SetPingTimeout(200 * time.Millisecond)
	opts.SetMaxHttpBufferSize(maxPayload)

	eio := engine.NewServer(opts)
	start := time.Now()
	eio.On("connection", func(args ...any) {
		sock, ok := args[0].(engine.Socket)
		if !ok {
			return
		}
		if *trace {
			id := sock.Id()
			log.Printf("trace %9dµs open  %s", time.Since(start).Microseconds(), id)
			for _, ev := range []types.EventName{"upgrading", "upgrade"} {
				sock.On(ev, func(...any) {
					log.Printf("trace %9dµs %-5s %s", time.Since(start).Microseconds(), ev, id)
				})
			}
			sock.Once("close", func(args ...any) {
				log.Printf("trace %9dµs close %s %v", time.Since(start).Microseconds(), id, args)
			})
		}
		sock.On("message", func(args ...any) {
			if len(args) == 0 {
				return
			}
			// The data keeps its kind: a string buffer is sent back as a
			// text packet, a byte buffer as a binary one.
			if r, ok := args[0].(io.Reader); ok {
				sock.Send(r, nil, nil)
			}
		})
	})

	var h http.Handler = eio
	if *usePollfix {
		var logger *slog.Logger
		if *verbose {
			logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
		h = pollfix.Wrap(h, maxPayload, logger)
	}
	if *trace {
		h = traced(h, start)
	}
	mux := http.NewServeMux()
	mux.Handle("/engine.io/", h)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	log.Printf("eioserver: listening on %s (pollfix=%v)", ln.Addr(), *usePollfix)

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

// traced logs each request when it arrives and when its handler returns,
// with the status, in microseconds since the start of the process.
func traced(next http.Handler, start time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		log.Printf("trace %9dµs begin %s %s", time.Since(start).Microseconds(), r.Method, r.URL.RawQuery)
		next.ServeHTTP(sw, r)
		log.Printf("trace %9dµs end   %s %s -> %d", time.Since(start).Microseconds(), r.Method, r.URL.RawQuery, sw.status)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection to the WebSocket upgrader, which asks for
// http.Hijacker directly.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.status = http.StatusSwitchingProtocols
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Flush passes on the engine's flushes of long-polling responses.
func (w *statusWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }
