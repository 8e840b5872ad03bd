package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/server/wstransport"
	"github.com/chatd/chat/store"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// session is one socket's login state. Its handlers run one at a time, but
// disconnect can run beside them, so the state sits under a mutex and a
// closed session never logs in again: a login that finishes after its
// socket left cannot leave a ghost in the online list.
type session struct {
	mu sync.Mutex
	// Fields below are guarded by mu.
	user      string // "" when not logged in
	tokenHash string // the session token this socket logged in with, if any
	closed    bool
}

// bind logs the session in as user, replacing any earlier user, and
// reports the online-list version to wait for. It fails once closed.
func (ss *session) bind(o *online, user, tokenHash string) (uint64, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return 0, false
	}
	ss.tokenHash = tokenHash
	if ss.user == user {
		// Logging in again as oneself changes no count, but the seed
		// broadcast the list on every login and clients expect it.
		o.signal()
		return o.current(), true
	}
	if ss.user != "" {
		o.remove(ss.user)
	}
	ss.user = user
	return o.add(user), true
}

// unbind logs the session out; close also prevents later logins. Both
// return the user that was logged in, or "".
func (ss *session) unbind(o *online, close bool) (user, tokenHash string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if close {
		ss.closed = true
	}
	user, tokenHash = ss.user, ss.tokenHash
	ss.user, ss.tokenHash = "", ""
	if user != "" {
		o.remove(user)
	}
	return user, tokenHash
}

func (ss *session) username() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.user
}

func (s *Server) onConnection(sock *socket.Socket) {
	sid := string(sock.Id())
	log := s.log.With("sid", sid)
	pr := s.guard.peerOf(sock.Request().Request())
	ip := pr.key
	if pr.unnamed {
		s.guard.noteUnnamed(s.log, pr)
	}
	capped := s.guard.capConns(pr)
	if capped && !s.guard.conns.Acquire(ip) {
		s.met.rejections.WithLabelValues("connections_per_ip").Inc()
		s.refusals.Warn(log, "refused a connection: too many from one address", "ip", ip, "max", s.guard.cfg.ConnsPerIP)
		sock.Disconnect(true)
		return
	}
	ss := &session{}
	// drained is set once an upgraded socket's engine is known to hold
	// no packet from before the upgrade (see sendEncoded). The hub calls
	// sendFrames and sendEncoded under the client's lock, one at a time.
	var drained atomic.Bool
	c := &client{
		send: func(ev string, args ...any) { sock.Emit(ev, args...) },
		// A socket on our WebSocket transport gets broadcast frames as
		// they are: no per-recipient encoding, no engine emitters. That
		// includes a socket that started on long-polling (the stock
		// client's path) once its upgrade is done and drained; until
		// then the engine may hold packets queued while polling, which
		// must go first, so it goes through the engine.
		sendFrames: func(frames []byte) bool {
			conn := sock.Conn()
			if !sock.Connected() || (conn.Upgraded() && !drained.Load()) {
				return false
			}
			t, ok := conn.Transport().(*wstransport.Transport)
			if ok {
				t.WriteFrame(frames)
			}
			return ok
		},
		// Written straight to the engine, past socket.Emit: the packet
		// was encoded once for all recipients (hub.encode).
		sendEncoded: func(e encoded) {
			if !sock.Connected() {
				return
			}
			_, onWS := sock.Conn().Transport().(*wstransport.Transport)
			sock.Client().WriteToEngine(e.packets, &socket.WriteOptions{})
			if onWS {
				// The engine flushed this write to the WebSocket, which
				// takes packets at once, and a flush takes everything
				// queued before it: the engine holds nothing older now,
				// so frames written straight to the WebSocket from here
				// on come after all of it.
				drained.Store(true)
			}
		},
		close: func(reason string) {
			log.Info("disconnecting socket", "reason", reason)
			sock.Disconnect(true)
		},
	}
	s.hub.join(c)
	s.gate.connected(string(sock.Conn().Id()))

	// Handlers are registered before anything is awaited, so no event the
	// client sends right after connecting is dropped.
	sock.On("register", func(args ...any) { s.onRegister(log, pr, args) })
	sock.On("login", func(args ...any) { s.onLogin(log, pr, ss, args) })
	sock.On("logout", func(args ...any) { s.onLogout(log, ss, args) })
	sock.On("send message", func(args ...any) { s.onSend(log, ss, sock, args) })
	pages := s.guard.pageLimiter()
	sock.On("load older messages", func(args ...any) { s.onOlder(log, pages, c, args) })
	sock.On("disconnect", func(args ...any) {
		// A client that leaves the namespace but keeps its connection
		// holds an Engine.IO session with no socket: no timeout ends it
		// and MAX_CONNS_PER_IP no longer counts it. This server has one
		// namespace, and socket.io-client closes the connection with its
		// last socket anyway, so the connection goes too.
		if len(args) > 0 && args[0] == "client namespace disconnect" {
			sock.Conn().Close(false)
		}
		if capped {
			s.guard.conns.Release(ip)
		}
		s.hub.leave(c)
		if user, _ := ss.unbind(s.online, true); user != "" {
			log.Info("logged-in socket disconnected", "user", user)
		}
	})

	// The history is this socket's first queued task, so it runs before
	// any event handler and `load all messages` is the first event the
	// client receives.
	token, _ := authToken(sock.Handshake().Auth)
	sock.Enqueue(func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
		defer cancel()
		history, err := s.recentMessages(ctx)
		if err != nil {
			// The database is down, not just busy. The socket still gets
			// its first event, empty, and stays: during an outage the
			// user must be able to hear 'Service temporarily unavailable'
			// from login and keep messages in the outbox, rather than
			// watch the page reconnect in a loop.
			s.met.storeErrors.WithLabelValues("history").Inc()
			log.Error("loading history failed after retries: sending an empty one", "err", err)
			history = []store.Message{}
		}
		sock.Emit("load all messages", wireMsgs(history))
		c.goLive(history)
		if token != "" {
			s.resume(ctx, log, ss, sock, token)
		}
	})
}

// recentMessages reads the history a new socket gets, trying again a few
// times within ctx: a pool that is momentarily exhausted or a connection
// the database just dropped should not cost a user their history.
func (s *Server) recentMessages(ctx context.Context) ([]store.Message, error) {
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		history, err := s.store.RecentMessages(ctx, s.cfg.HistoryLimit)
		if err == nil || attempt == 3 {
			return history, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
			delay *= 4
		}
	}
}

// resume logs the socket in with the session token from its handshake, so
// that after a failover or a page reload the user is back without typing a
// password. The socket learns the outcome from a `session` event.
func (s *Server) resume(ctx context.Context, log *slog.Logger, ss *session, sock *socket.Socket, token string) {
	hash := hashToken(token)
	user, err := s.store.SessionUser(ctx, hash, time.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Info("session token refused")
		sock.Emit("session", map[string]any{"username": nil, "message": msgSessionExpired})
		return
	case err != nil:
		log.Error("reading session", "err", err)
		sock.Emit("session", map[string]any{"username": nil, "message": msgUnavailable, "retry": true})
		return
	}
	if _, bound := ss.bind(s.online, user, hash); !bound {
		return
	}
	log.Info("resumed session", "user", user)
	sock.Emit("session", map[string]any{"username": user})
}

func (s *Server) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
}

func (s *Server) onRegister(log *slog.Logger, pr peer, args []any) {
	ip := pr.key
	args, ack := splitAck(args)
	if !s.guard.allowAuth(pr) {
		s.met.rejections.WithLabelValues(authLimitName(pr)).Inc()
		s.refusals.Warn(log, "register refused: rate limit", "ip", ip, "limit", authLimitName(pr))
		ack(fail(msgTooManyAttempts))
		return
	}
	username, password, err := credentials(args)
	if err == nil {
		err = validUsername(username)
	}
	if err == nil {
		err = validPassword(password)
	}
	if err != nil {
		s.refusals.Info(log, "register refused", "reason", err.Error())
		ack(fail(publicMessage(err, msgRegisterError)))
		return
	}
	var hash []byte
	if busy := s.withBcrypt(func() {
		hash, err = bcrypt.GenerateFromPassword([]byte(password), s.cfg.BcryptCost)
	}); busy != nil {
		log.Warn("register: no bcrypt slot", "err", busy)
		ack(fail(msgUnavailable))
		return
	}
	if err != nil {
		log.Error("hashing password", "err", err)
		ack(fail(msgRegisterError))
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	err = s.store.CreateUser(ctx, store.User{Username: username, PasswordHash: string(hash)})
	switch {
	case errors.Is(err, store.ErrConflict):
		// A refusal like the others: logged (sampled, so a client trying
		// names in a loop cannot flood the log), never with the password.
		s.refusals.Info(log, "register refused: username taken", "user", logName(username), "ip", ip)
		ack(fail(msgUsernameTaken))
	case err != nil:
		s.met.storeErrors.WithLabelValues("register").Inc()
		log.Error("storing new user", "user", logName(username), "err", err)
		ack(fail(msgRegisterError))
	default:
		log.Info("registered", "user", username)
		ack(ok())
	}
}

func (s *Server) onLogin(log *slog.Logger, pr peer, ss *session, args []any) {
	ip := pr.key
	args, ack := splitAck(args)
	if !s.guard.allowAuth(pr) {
		s.met.rejections.WithLabelValues(authLimitName(pr)).Inc()
		s.refusals.Warn(log, "login refused: rate limit", "ip", ip, "limit", authLimitName(pr))
		ack(fail(msgTooManyAttempts))
		return
	}
	username, password, err := credentials(args)
	if err != nil {
		s.refusals.Info(log, "login refused", "reason", err.Error())
		ack(fail(publicMessage(err, msgInvalidLogin)))
		return
	}
	if !allow(s.guard.authUser, username) {
		s.met.rejections.WithLabelValues("login_per_user").Inc()
		s.refusals.Warn(log, "login refused: too many attempts on this user", "user", logName(username), "ip", ip)
		ack(fail(msgTooManyAttempts))
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	u, err := s.store.User(ctx, username)
	hash := []byte(u.PasswordHash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		hash = s.dummyHash
	case err != nil:
		s.met.storeErrors.WithLabelValues("login").Inc()
		log.Error("reading user", "err", err)
		ack(fail(msgUnavailable))
		return
	}
	// Node's bcrypt hashed only the first 72 bytes of longer passwords;
	// comparing the same bytes lets those users log in as before.
	pw := []byte(password)
	if len(pw) > maxPasswordBytes {
		pw = pw[:maxPasswordBytes]
	}
	var mismatch error
	if busy := s.withBcrypt(func() { mismatch = bcrypt.CompareHashAndPassword(hash, pw) }); busy != nil {
		log.Warn("login: no bcrypt slot", "err", busy)
		ack(fail(msgUnavailable))
		return
	}
	if mismatch != nil || err != nil {
		s.met.logins.WithLabelValues("failed").Inc()
		log.Info("login failed", "user", logName(username), "ip", ip)
		ack(fail(msgInvalidLogin))
		return
	}
	// A fresh deadline: the password check may have queued for a while.
	sctx, scancel := s.storeCtx()
	defer scancel()
	token, tokHash, err := newToken()
	if err == nil {
		err = s.store.CreateSession(sctx, store.Session{TokenHash: tokHash, Username: username, Expires: time.Now().Add(s.cfg.SessionTTL)})
	}
	if err != nil {
		// Logging in still works; only resuming after a reconnect won't.
		log.Error("creating session", "user", username, "err", err)
		token, tokHash = "", ""
	}
	v, bound := ss.bind(s.online, username, tokHash)
	if !bound {
		return // the socket left while the password was checked
	}
	if err := s.online.waitSent(s.ctx, v); err != nil {
		return
	}
	s.met.logins.WithLabelValues("ok").Inc()
	log.Info("logged in", "user", username)
	if token == "" {
		ack(ok())
		return
	}
	ack(ok("token", token))
}

func (s *Server) onLogout(log *slog.Logger, ss *session, args []any) {
	_, ack := splitAck(args)
	user, hash := ss.unbind(s.online, false)
	if user == "" {
		ack(fail(msgNotLoggedIn))
		return
	}
	if hash != "" {
		ctx, cancel := s.storeCtx()
		defer cancel()
		if err := s.store.DeleteSession(ctx, hash); err != nil {
			log.Error("revoking session at logout", "user", user, "err", err)
		}
	}
	log.Info("logged out", "user", user)
	ack(ok())
}

func (s *Server) onSend(log *slog.Logger, ss *session, sock *socket.Socket, args []any) {
	args, ack := splitAck(args)
	user := ss.username()
	if user == "" {
		sock.Emit("reload")
		ack(fail(msgSendNotLoggedIn))
		return
	}
	if !allow(s.guard.msgs, user) {
		s.met.rejections.WithLabelValues("messages_per_user").Inc()
		s.refusals.Warn(log, "message refused: rate limit", "user", user)
		ack(fail(msgTooFast))
		return
	}
	start := time.Now()
	text, clientID, err := outgoing(args, s.cfg.MaxMessageLen)
	if err != nil {
		s.refusals.Info(log, "message refused", "user", user, "reason", err.Error())
		ack(fail(publicMessage(err, msgMessageNotText)))
		return
	}
	// The write gets its own deadline, not the socket's: a message whose
	// sender disconnects mid-send is still stored and delivered.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	m, created, err := s.store.AddMessage(ctx, store.Message{Content: text, Username: user, ClientID: clientID})
	if err != nil {
		s.met.storeErrors.WithLabelValues("send").Inc()
		log.Error("storing message", "user", user, "err", err)
		ack(fail(msgUnavailable))
		return
	}
	// Each server delivers a message at most once (deliver). A resend
	// (created false) is still delivered by a server that never did: when
	// a server dies between commit and broadcast, the client's resend
	// through the backup is how everyone gets the message. The ack waits
	// for the delivery, so the sender has its own `new message` before the
	// answer, as with Node.
	if created {
		s.met.stored.Inc()
	}
	<-s.deliver(m)
	// An acknowledgement promises that every server delivers the message,
	// so it waits until the bus has the announcement (bus.Bus.Publish
	// returns nil only then; a server whose bus connection drops later
	// catches up from the database, relay.Resync). Announced on every
	// attempt, a resend included: the first announcement may have failed,
	// or died with the server that stored it, and servers deliver an id
	// once however often it is announced. Not announced, not acknowledged:
	// the client resends, and the resend announces it again.
	if err := s.cfg.Bus.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: m.ID, Origin: s.id, Sent: time.Now().UnixNano()}); err != nil {
		log.Error("announcing message failed: not acknowledged, the client will resend", "id", m.ID, "err", err)
		ack(fail(msgUnavailable))
		return
	}
	// Counted before the ack goes out: the client may read the metrics
	// the moment it has its answer.
	s.met.ackLatency.Observe(time.Since(start).Seconds())
	ack(ok("id", m.ID))
}

// onOlder answers `load older messages` {before, limit}: the page of history
// just before what the client shows, oldest first.
func (s *Server) onOlder(log *slog.Logger, pages *rate.Limiter, c *client, args []any) {
	args, ack := splitAck(args)
	before, limit, err := pageArgs(args)
	if err != nil {
		ack(fail(publicMessage(err, msgBadPage)))
		return
	}
	// Only pages that would be read count: a refusal costs nothing.
	if pages != nil && !pages.Allow() {
		s.met.rejections.WithLabelValues("pages_per_socket").Inc()
		s.refusals.Warn(log, "history page refused: rate limit")
		ack(fail(msgTooFastPages))
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	ms, err := s.store.MessagesBefore(ctx, before, limit)
	if err != nil {
		s.met.storeErrors.WithLabelValues("older").Inc()
		log.Error("reading older messages", "err", err)
		ack(fail(msgUnavailable))
		return
	}
	// A socket is never given a message twice (hub.go): the page leaves
	// out what it was given live, and none of the page comes live after.
	// An empty page tells the client there is nothing older, so a page
	// emptied that way is followed by the next one down.
	page := c.givePage(ms)
	for tries := 0; len(page) == 0 && len(ms) > 0 && tries < 3; tries++ {
		if ms, err = s.store.MessagesBefore(ctx, ms[0].ID, limit); err != nil {
			s.met.storeErrors.WithLabelValues("older").Inc()
			log.Error("reading older messages", "err", err)
			ack(fail(msgUnavailable))
			return
		}
		page = c.givePage(ms)
	}
	ack(ok("messages", wireMsgs(page)))
}
