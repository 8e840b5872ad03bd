package engineio

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// poll answers a GET of long-polling session s: with what is queued, at
// once; otherwise when something is (or a ping, or the close). One GET at
// a time: a second one while the first waits closes the session, as the
// protocol says.
func (srv *Server) poll(w http.ResponseWriter, r *http.Request, s *Session) {
	s.mu.Lock()
	switch {
	case s.state == stateClosing:
		// A session closed by the server waited for this poll: it gets the
		// queue and the close packet, at once.
		s.poll = &pollWait{ch: make(chan struct{})}
		pw := s.poll
		s.answerPollLocked(200, s.final)
		s.closeLocked("", 0)
		s.unlock()
		srv.writePoll(w, pw.status, pw.body)
		return
	case s.expiredLocked():
		s.unlock()
		writeError(w, http.StatusBadRequest, codeUnknownSid, "Session ID unknown")
		return
	case s.upgrade == upDone:
		// The session moved to WebSocket; this request belongs to the
		// discarded transport.
		s.unlock()
		writeError(w, http.StatusBadRequest, codeBadRequest, "Bad request")
		return
	case s.poll != nil:
		s.closeLocked("transport error", pktClose)
		s.unlock()
		writeError(w, http.StatusBadRequest, codeBadRequest, "Overlapping poll")
		return
	}
	pw := &pollWait{ch: make(chan struct{})}
	s.poll = pw
	if len(s.out) > 0 && s.upgrade < upProbed {
		s.answerPollSoonLocked()
	} else if s.upgrade == upProbed {
		s.noopLaterLocked()
	}
	s.unlock()

	select {
	case <-pw.ch:
	case <-r.Context().Done():
		s.mu.Lock()
		if s.poll == pw {
			// The client gave up its poll: Node's engine.io calls that
			// "poll connection closed prematurely", a transport error.
			s.poll = nil
			if pw.noop != nil {
				pw.noop.Stop()
			}
			if pw.batch != nil {
				pw.batch.Stop()
			}
			s.closeLocked("transport error", 0)
		}
		s.unlock()
		return
	}
	srv.writePoll(w, pw.status, pw.body)
}

// writePoll writes a poll's answer, bounded by PollTimeout.
func (srv *Server) writePoll(w http.ResponseWriter, status int, body []byte) {
	if status != http.StatusOK {
		writeError(w, status, codeBadRequest, "Bad request")
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(srv.opts.PollTimeout))
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// post reads a POST of long-polling session s, bounded by MaxPayload (413,
// the session kept)
// and PollTimeout, and handles its packets in order. A malformed payload
// closes the session ("parse error"); so does an overlapping POST.
func (srv *Server) post(w http.ResponseWriter, r *http.Request, s *Session) {
	s.mu.Lock()
	switch {
	case s.state == stateClosing || s.expiredLocked():
		s.unlock()
		writeError(w, http.StatusBadRequest, codeUnknownSid, "Session ID unknown")
		return
	case s.upgrade == upDone:
		s.unlock()
		writeError(w, http.StatusBadRequest, codeBadRequest, "Bad request")
		return
	case s.posting:
		s.closeLocked("transport error", pktClose)
		s.unlock()
		writeError(w, http.StatusBadRequest, codeBadRequest, "Overlapping POST")
		return
	}
	s.posting = true
	s.unlock()
	defer func() {
		s.mu.Lock()
		s.posting = false
		s.unlock()
	}()
	fail := func(status int, reason, msg string) {
		s.mu.Lock()
		s.closeLocked(reason, pktClose)
		s.unlock()
		writeError(w, status, codeBadRequest, msg)
	}

	// Too large is refused without ending the session, as Node's engine
	// does: the request is dropped, not the client, whose next POST may
	// be fine. (The body is not read; net/http closes that connection.)
	tooLarge := func() {
		writeError(w, http.StatusRequestEntityTooLarge, codeBadRequest, "Payload too large")
	}
	max := srv.opts.MaxPayload
	if r.ContentLength > max {
		tooLarge()
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(srv.opts.PollTimeout))
	buf := bodyPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			bodyPool.Put(buf)
		}
	}()
	buf.Reset()
	_, err := buf.ReadFrom(io.LimitReader(r.Body, max+1))
	if int64(buf.Len()) > max {
		tooLarge()
		return
	}
	if err != nil {
		fail(http.StatusBadRequest, "transport error", "Body not read")
		return
	}
	pkts, err := decodePost(int(s.proto), r.Header.Get("Content-Type"), buf.Bytes())
	if err != nil {
		fail(http.StatusBadRequest, "parse error", "Parse error")
		return
	}
	for i := range pkts {
		p := &pkts[i]
		s.mu.Lock()
		if s.state != stateOpen {
			s.unlock()
			break
		}
		if p.typ == pktMessage {
			h := s.h
			s.unlock()
			if h != nil {
				if p.binary {
					h.OnMessage(s, p.bin, true)
				} else {
					h.OnMessage(s, p.raw, false)
				}
			}
			continue
		}
		s.onPacketLocked(p.typ, string(p.raw))
		s.unlock()
	}
	h := w.Header()
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok")
}

func decodePost(proto int, contentType string, body []byte) ([]packet, error) {
	if proto == 4 {
		return decodePayloadV4(body)
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/octet-stream" {
		return decodeBinaryPayloadV3(body)
	}
	return decodePayloadV3(body)
}
