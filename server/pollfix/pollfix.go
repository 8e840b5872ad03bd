// Package pollfix is an http.Handler middleware that makes the Engine.IO
// server of github.com/zishang520/socket.io close a long-polling session
// whose client posts a malformed payload, as the Engine.IO protocol
// requires and the Node.js server does.
//
// The bug it works around, in one place: transports/polling.go of
// github.com/zishang520/socket.io/servers/engine/v3 v3.0.6, method
// (*polling).OnData, discards the error of Parser().DecodePayload
// (`packets, _ := ...`). The packets decoded before the error are handled
// and the rest of the body is silently dropped, so the session lives on,
// and the POST is answered 200 "ok". Node's engine.io turns a decoding
// error into an "error" packet, on which the socket closes with reason
// "parse error"; the official Engine.IO test suite checks this ("closes
// the session upon invalid packet format": POST "abc", then the next GET
// must be answered 400).
//
// Wrap decodes each polling POST with the library's own parser, the same
// function the engine calls. A valid body is passed on unchanged. For a
// malformed one, the engine is given a lone CLOSE packet instead, so that
// it closes the session itself, by its own code path; later requests for
// that session get the engine's 400 "Session ID unknown". The client is
// answered 400. Unlike Node, packets before the malformed one are dropped
// with the session rather than handled first; this library's Socket.IO
// layer would drop an event followed by a CLOSE in the same payload anyway.
//
// Remove Wrap when upstream returns the error from OnData:
// TestUnwrappedEngineKeepsSession fails on that day.
//
// BoundPolls closes a second hole of the same transport: a long-polling
// GET that reaches a session the engine has just closed, but not yet
// forgotten, is never answered. (*polling).onPollRequest stores it as the
// pending request and emits "ready"; the socket, already closed, flushes
// nothing, and nothing else ever writes or releases it. The client waits
// forever (socket.io-client has no timeout on a poll: the compat suite's
// Node process hung on it, about one run in ten) and the server holds a
// goroutine and a connection per occurrence. A poll of a live session is
// always answered within the ping interval, so BoundPolls ends any poll
// still open after that plus the ping timeout, as the engine answers a
// poll for a session it does not know.
package pollfix

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zishang520/socket.io/parsers/engine/v3/parser"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// closeTimeout bounds the engine's handling of the substituted CLOSE
// payload, which does not end when the client disconnects.
const closeTimeout = 5 * time.Second

// Wrap returns a handler that serves every request with next, the Engine.IO
// (or Socket.IO) handler, after checking the body of each HTTP
// long-polling POST (`?transport=polling&sid=…`):
//
//   - A body longer than maxBody bytes is answered 413 without reaching
//     next, whatever its Content-Length says. Set maxBody to the engine's
//     MaxHttpBufferSize: the engine would otherwise cut a longer body
//     without a Content-Length at that size and decode the rest.
//   - A body that the library's parser for the request's protocol
//     (EIO=4, or EIO=3 in its text or binary framing) rejects closes the
//     session, as described in the package comment, and is answered 400.
//   - Anything else reaches next with the same body.
//
// JSONP polling (`j=` in the query) and EIO values other than 3 and 4 go
// to next untouched; so do EIO=4 bodies sent as application/octet-stream,
// which the engine itself rejects. Malformed payloads are logged to log at
// Info level with keys sid and err; log may be nil. Wrap panics if
// maxBody < 1. The handler is safe for concurrent use.
func Wrap(next http.Handler, maxBody int64, log *slog.Logger) http.Handler {
	if maxBody < 1 {
		panic("pollfix: Wrap: maxBody must be at least 1")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{next: next, max: maxBody, log: log}
}

type handler struct {
	next http.Handler
	max  int64
	log  *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.next.ServeHTTP(w, r)
		return
	}
	q := r.URL.Query()
	if q.Get("transport") != "polling" || q.Get("sid") == "" || q.Has("j") {
		h.next.ServeHTTP(w, r)
		return
	}
	// The engine picks binary framing on exactly this header value.
	binary := r.Header.Get("Content-Type") == "application/octet-stream"
	var p parser.Parser
	switch q.Get("EIO") {
	case "4":
		if binary {
			h.next.ServeHTTP(w, r)
			return
		}
		p = parser.Parserv4()
	case "3":
		p = parser.Parserv3()
	default:
		h.next.ServeHTTP(w, r)
		return
	}

	if r.ContentLength > h.max {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.max+1))
	r.Body.Close()
	if err != nil {
		// The client most likely went away mid-body. Unlike Node, which
		// closes the session then, it is left to its ping timeout.
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if int64(len(body)) > h.max {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}

	if err := decode(p, body, binary); err != nil {
		h.log.Info("malformed polling payload, closing session", "sid", q.Get("sid"), "err", err)
		h.closeSession(w, r, closePayload[p.Protocol()])
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	h.next.ServeHTTP(w, r)
}

// closePayload is a payload of one CLOSE packet in the text framing of
// each protocol version.
var closePayload = map[int]string{4: "1", 3: "1:1"}

// closeSession hands the engine a CLOSE packet in place of the client's
// payload, then answers the client: 400 when the engine took it, or the
// engine's own error (such as an unknown session).
func (h *handler) closeSession(w http.ResponseWriter, r *http.Request, payload string) {
	// The close must take effect even if the client has gone already.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), closeTimeout)
	defer cancel()
	r2 := r.Clone(ctx)
	r2.Body = io.NopCloser(strings.NewReader(payload))
	r2.ContentLength = int64(len(payload))
	r2.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	r2.Header.Del("Content-Encoding")
	rec := &recorder{header: make(http.Header)}
	h.next.ServeHTTP(rec, r2)

	hd := w.Header()
	for k, v := range rec.header {
		hd[k] = v // CORS headers, chiefly
	}
	hd.Del("Content-Length")
	if rec.status != 0 && rec.status != http.StatusOK {
		w.WriteHeader(rec.status)
		w.Write(rec.body.Bytes())
		return
	}
	hd.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	io.WriteString(w, `{"code":3,"message":"Bad request"}`) // the engine's BAD_REQUEST
}

// decode runs the library's payload decoder, the one the engine uses, on
// a copy of body, so that body reaches the engine as it came whatever the
// decoder does to its buffer (the EIO=3 binary decoder edits the bytes it
// reads). A panic in the decoder counts as a malformed payload.
func decode(p parser.Parser, body []byte, binary bool) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("payload decoder panicked: %v", v)
		}
	}()
	var buf types.BufferInterface
	if binary {
		buf = types.NewBytesBuffer(bytes.Clone(body))
	} else {
		buf = types.NewStringBuffer(bytes.Clone(body))
	}
	_, err = p.DecodePayload(buf)
	return err
}

// recorder is the response writer given to the engine when it handles the
// substituted payload: it keeps the status, the headers and the start of
// the body.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

const maxRecorded = 4 << 10

func (rw *recorder) Header() http.Header { return rw.header }

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
}

func (rw *recorder) Write(b []byte) (int, error) {
	rw.WriteHeader(http.StatusOK)
	if room := maxRecorded - rw.body.Len(); room > 0 {
		rw.body.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

// BoundPolls returns a handler that serves every request with next, the
// Engine.IO (or Socket.IO) handler, and ends each long-polling GET of a
// session (`?transport=polling&sid=…`) that next has not answered within
// d: its context is cancelled, which makes the engine let go of it, and,
// if nothing was written, the client is answered 400 with the engine's
// "Session ID unknown" error, on which socket.io-client reconnects. Choose
// d above the engine's ping interval plus ping timeout, so that only polls
// of sessions that are gone reach it. Other requests go to next untouched.
func BoundPolls(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		q := r.URL.Query()
		if q.Get("transport") != "polling" || q.Get("sid") == "" {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		tw := &trackingWriter{ResponseWriter: w}
		next.ServeHTTP(tw, r.WithContext(ctx))
		// The engine returns once its response is final, so nothing
		// writes to w after this point.
		if tw.wrote.Load() || r.Context().Err() != nil || ctx.Err() == nil {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"code":1,"message":"Session ID unknown"}`)
	})
}

// trackingWriter records whether the engine wrote a response.
type trackingWriter struct {
	http.ResponseWriter
	wrote atomic.Bool
}

func (tw *trackingWriter) WriteHeader(code int) {
	tw.wrote.Store(true)
	tw.ResponseWriter.WriteHeader(code)
}

func (tw *trackingWriter) Write(b []byte) (int, error) {
	tw.wrote.Store(true)
	return tw.ResponseWriter.Write(b)
}

func (tw *trackingWriter) Unwrap() http.ResponseWriter { return tw.ResponseWriter }
