package engineio

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/lesismal/nbio"
)

// Server is an Engine.IO server. Mount it at the Engine.IO path
// (/socket.io/ or /engine.io/); it ignores the path itself.
//
// It runs one goroutine for its timer wheel from NewServer on, and from the
// first WebSocket on nbio's poller goroutine and nbio's timer goroutine
// (which also runs nbio's close callbacks); Close stops them all.
type Server struct {
	opts  Options
	wheel *wheel

	mu       sync.RWMutex
	sessions map[string]*Session
	closed   bool
	nb       *nbio.Engine
	nbErr    error
}

// NewServer returns a server with o's settings (zero fields take their
// defaults).
func NewServer(o Options) *Server {
	o.setDefaults()
	tick := min(o.PingInterval, o.PingTimeout, o.WriteTimeout) / 16
	tick = max(time.Millisecond, min(tick, 100*time.Millisecond))
	return &Server{opts: o, wheel: newWheel(tick), sessions: make(map[string]*Session)}
}

// poller returns nbio's engine, started on first use.
func (srv *Server) poller() (*nbio.Engine, error) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return nil, errors.New("server closed")
	}
	if srv.nb != nil || srv.nbErr != nil {
		return srv.nb, srv.nbErr
	}
	routeNbioLog()
	nb := nbio.NewEngine(nbio.Config{
		Name: "engineio",
		// Our own bound (MaxQueued) is the one that applies, with its
		// OnSlowPeer; nbio's would close the conn unannounced.
		MaxWriteBufferSize: 1 << 40,
	})
	w := srv.wheel
	nb.OnData(func(c *nbio.Conn, data []byte) {
		if p, ok := c.Session().(*probe); ok {
			p.onData()
			return
		}
		if s, ok := c.Session().(*Session); ok {
			// nbio's poller does not recover: a panic here (a handler's)
			// would end the process. It ends the connection instead (its
			// OnClose ends the session).
			defer func() {
				if recover() != nil {
					c.Close()
				}
			}()
			s.onWSData(c, data)
		}
	})
	nb.OnClose(func(c *nbio.Conn, err error) {
		if s, ok := c.Session().(*Session); ok {
			s.onWSClose(c)
		}
	})
	nb.OnWrittenSize(func(c *nbio.Conn, b []byte, n int) {
		if s, ok := c.Session().(*Session); ok {
			s.pending.Add(-int64(n))
			s.progress.Store(w.now.Load())
		}
	})
	if err := nb.Start(); err != nil {
		srv.nbErr = err
		return nil, err
	}
	if err := waitPollers(nb, 10*time.Second); err != nil {
		// The engine works; only a Close that comes before the late
		// poller runs could hang (waitPollers says why).
		slog.Warn("engineio: could not confirm that nbio's pollers started", "err", err)
	}
	srv.nb = nb
	return nb, nil
}

// Close closes every session ("server shutting down"), answers pending
// polls and stops the timer wheel and the WebSocket poller.
func (srv *Server) Close() {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		return
	}
	srv.closed = true
	all := make([]*Session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		all = append(all, s)
	}
	nb := srv.nb
	srv.mu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		s.closeLocked("server shutting down", pktClose)
		s.unlock()
	}
	srv.wheel.close()
	if nb != nil {
		nb.Stop()
	}
}

// Count returns the number of open sessions.
func (srv *Server) Count() int {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	return len(srv.sessions)
}

func (srv *Server) lookup(sid string) *Session {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	return srv.sessions[sid]
}

func (srv *Server) remove(s *Session) {
	srv.mu.Lock()
	if srv.sessions[s.id] == s {
		delete(srv.sessions, s.id)
	}
	srv.mu.Unlock()
}

// Error codes of Engine.IO's JSON error answers.
const (
	codeUnknownTransport = 0
	codeUnknownSid       = 1
	codeBadHandshake     = 2
	codeBadRequest       = 3
	codeForbidden        = 4
	codeUnsupported      = 5
)

func writeError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b := []byte(`{"code":`)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = strconv.AppendQuote(b, msg)
	b = append(b, '}')
	_, _ = w.Write(b)
}

// ServeHTTP answers handshakes, polls, posts and WebSocket upgrades.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if origin := r.Header.Get("Origin"); origin != "" {
		// Which origins get here is the caller's decision.
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
		}
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	q := r.URL.Query()
	var proto uint8
	switch q.Get("EIO") {
	case "4":
		proto = 4
	case "3":
		if srv.opts.AllowEIO3 {
			proto = 3
		}
	}
	if proto == 0 {
		writeError(w, http.StatusBadRequest, codeUnsupported, "Unsupported protocol version")
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		writeError(w, http.StatusBadRequest, codeUnknownTransport, "Transport unknown")
		return
	}
	srv.mu.RLock()
	closed := srv.closed
	srv.mu.RUnlock()
	if closed {
		writeError(w, http.StatusServiceUnavailable, codeBadRequest, "Server shutting down")
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusBadRequest, codeBadHandshake, "Bad handshake method")
			return
		}
		srv.handshake(w, r, proto, transport == "websocket")
		return
	}
	s := srv.lookup(sid)
	if s == nil {
		writeError(w, http.StatusBadRequest, codeUnknownSid, "Session ID unknown")
		return
	}
	if s.proto != proto {
		writeError(w, http.StatusBadRequest, codeBadRequest, "Bad request")
		return
	}
	switch {
	case transport == "websocket":
		srv.upgradeWS(w, r, s)
	case r.Method == http.MethodGet:
		srv.poll(w, r, s)
	case r.Method == http.MethodPost:
		srv.post(w, r, s)
	default:
		writeError(w, http.StatusBadRequest, codeBadRequest, "Bad request")
	}
}

func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// handshake opens a session: Accept, OnOpen, then the open packet (and
// whatever OnOpen queued) on the transport asked for.
func (srv *Server) handshake(w http.ResponseWriter, r *http.Request, proto uint8, websocket bool) {
	var data any
	if srv.opts.Accept != nil {
		var err error
		if data, err = srv.opts.Accept(r); err != nil {
			writeError(w, http.StatusForbidden, codeForbidden, err.Error())
			return
		}
	}
	var c *nbio.Conn
	var extra []byte
	if websocket {
		var why string
		var hijacked bool
		if c, extra, why, hijacked = srv.acceptWebSocket(w, r, ""); why != "" {
			if !hijacked {
				writeError(w, http.StatusBadRequest, codeBadRequest, why)
			}
			return
		}
	}
	s := &Session{srv: srv, id: newID(), data: data, proto: proto}
	s.hb = wheelNode{s: s, kind: timerHeartbeat}
	s.wt = wheelNode{s: s, kind: timerWrite}
	o := &srv.opts
	now := srv.wheel.nanos()
	if proto == 3 {
		s.due = now + int64(o.PingInterval+o.PingTimeout)
	} else {
		s.due = now + int64(o.PingInterval)
	}
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		if c != nil {
			c.Close()
		} else {
			writeError(w, http.StatusServiceUnavailable, codeBadRequest, "Server shutting down")
		}
		return
	}
	srv.sessions[s.id] = s
	srv.mu.Unlock()
	srv.wheel.schedule(&s.hb, time.Duration(s.due-now))
	if o.OnOpen != nil {
		o.OnOpen(s)
	}
	open := packet{typ: pktOpen, text: srv.openJSON(s, !websocket && !o.DisableUpgrades)}

	s.mu.Lock()
	if websocket && s.state != stateOpen {
		// OnOpen closed it already.
		s.closeLocked("", 0)
		s.unlock()
		c.Close()
		return
	}
	if websocket {
		s.upgrade = upDone
		if _, err := srv.nb.AddConn(c); err != nil {
			s.closeLocked("transport error", 0)
			s.unlock()
			return
		}
		s.ws = c
		c.SetSession(s)
		if len(extra) > 0 {
			s.rbuf = extra
		}
		s.writePacketLocked(&open)
		out := s.out
		s.out, s.outBytes = nil, 0
		for i := range out {
			s.writePacketLocked(&out[i])
		}
		s.unlock()
		return
	}
	s.out = append([]packet{open}, s.out...)
	s.outBytes += open.size()
	s.poll = &pollWait{ch: make(chan struct{})}
	wt := s.poll
	s.answerPollLocked(200, 0)
	s.answered = 0 // the handshake is no reason to hold the first poll (PollBatch)
	s.unlock()
	srv.writePoll(w, wt.status, wt.body)
}

func (srv *Server) openJSON(s *Session, upgrades bool) string {
	b := []byte(`{"sid":"`)
	b = append(b, s.id...)
	b = append(b, `","upgrades":[`...)
	if upgrades {
		b = append(b, `"websocket"`...)
	}
	b = append(b, `],"pingInterval":`...)
	b = strconv.AppendInt(b, srv.opts.PingInterval.Milliseconds(), 10)
	b = append(b, `,"pingTimeout":`...)
	b = strconv.AppendInt(b, srv.opts.PingTimeout.Milliseconds(), 10)
	if s.proto == 4 {
		b = append(b, `,"maxPayload":`...)
		b = strconv.AppendInt(b, srv.opts.MaxPayload, 10)
	}
	return string(append(b, '}'))
}

// upgradeWS attaches a WebSocket to polling session s for the upgrade.
// The WebSocket handshake is answered under s.mu: a second WebSocket for
// the same sid (the protocol suite opens one right after the first one's
// "2probe" and "5") must find the first attached, never take its place.
// Answering a fresh connection's handshake does not block: its send buffer
// is empty.
func (srv *Server) upgradeWS(w http.ResponseWriter, r *http.Request, s *Session) {
	refuse := func(reason string) {
		if f := srv.opts.OnUpgradeRefused; f != nil {
			f(s, reason)
		}
	}
	s.mu.Lock()
	why, after := "", ""
	switch {
	case s.expiredLocked():
		why = "session closed"
	case srv.opts.DisableUpgrades:
		why = "upgrades disabled"
	case s.upgrade == upDone:
		after = "already upgraded"
	case s.upgrade != upNone:
		after = "upgrade under way"
	}
	if why != "" {
		s.unlock()
		refuse(why)
		writeError(w, http.StatusBadRequest, codeBadRequest, "Bad request")
		return
	}
	c, extra, why, hijacked := srv.acceptWebSocket(w, r, after)
	if why != "" {
		s.unlock()
		refuse(why)
		if !hijacked {
			writeError(w, http.StatusBadRequest, codeBadRequest, "Bad request")
		}
		return
	}
	c.SetSession(s)
	if len(extra) > 0 {
		s.rbuf = extra
	}
	// Under s.mu, so that the poller's first OnData finds s.ws set.
	if _, err := srv.nb.AddConn(c); err != nil {
		s.unlock()
		refuse("poller: " + err.Error())
		return
	}
	s.ws = c
	s.upgrade = upAttached
	s.unlock()
}
