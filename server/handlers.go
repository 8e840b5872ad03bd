package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/server/socketio"
	"github.com/chatd/chat/store"
	"golang.org/x/crypto/bcrypt"
)

// onConnection sets up a new socket: it runs on the socket's executor
// before the client hears that it is connected, so the handlers set here
// see every event the client sends, and the history queued here is the
// first event the client receives.
func (s *Server) onConnection(sock *socketio.Socket) {
	pr, _ := sock.Data().(peer)
	capped := s.guard.capConns(pr)
	if capped && !s.guard.conns.Acquire(pr.key) {
		s.met.rejections.WithLabelValues("connections_per_ip").Inc()
		s.refusals.Warn(s.log, "refused a connection: too many from one address", "sid", sock.ID(), "ip", pr.key, "max", s.guard.cfg.ConnsPerIP)
		sock.Disconnect()
		return
	}
	c := &conn{sock: sock, sid: sock.ID(), base: s.log, peer: pr, capped: capped, rooms: s.members}
	s.hub.join(c)

	sock.Handle(s.events, c)
	sock.OnDisconnect(func(reason string) {
		if capped {
			s.guard.conns.Release(pr.key)
		}
		user := c.close(s.online)
		s.hub.leave(c)
		if user != "" {
			c.logger().Info("logged-in socket disconnected", "user", user, "reason", reason)
		}
	})

	token, _ := authToken(sock.Auth())
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
			c.logger().Error("loading history failed after retries: sending an empty one", "err", err)
			history = []store.Message{}
		}
		sock.Emit("load all messages", wireMsgs(visible(history)))
		c.goLive(history)
		if token != "" {
			s.resume(ctx, c, token)
		}
	})
}

// eventTable is every event a socket answers, built once per server and
// shared by all sockets (socketio.Events says why).
func (s *Server) eventTable() socketio.Events {
	ev := socketio.Events{}
	on := func(event string, h func(c *conn, args []any, ack func(any))) {
		ev[event] = func(ctx any, args []any, ack func(...any)) { h(ctx.(*conn), args, reply(ack)) }
	}
	on("register", s.onRegister)
	on("login", s.onLogin)
	on("logout", s.onLogout)
	on("send message", s.onSend)
	on("load older messages", s.onOlder)
	s.onConversations(on)
	return ev
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
func (s *Server) resume(ctx context.Context, c *conn, token string) {
	log, sock := c.logger(), c.sock
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
	if _, bound := c.bind(s.online, user, hash); !bound {
		return
	}
	s.loadRooms(ctx, c, user)
	log.Info("resumed session", "user", user)
	sock.Emit("session", map[string]any{"username": user})
}

// allowAuth spends one login or register attempt of the socket's client
// (guard.allowAuth); when none is left it answers, counts the refusal and
// logs refused, sampled.
func (s *Server) allowAuth(c *conn, refused string, ack func(any)) bool {
	pr := c.peer
	if s.guard.allowAuth(pr) {
		return true
	}
	s.met.rejections.WithLabelValues(authLimitName(pr)).Inc()
	s.refusals.Warn(c.logger(), refused, "ip", pr.key, "limit", authLimitName(pr))
	ack(fail(msgTooManyAttempts))
	return false
}

func (s *Server) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
}

func (s *Server) onRegister(c *conn, args []any, ack func(any)) {
	log, ip := c.logger(), c.peer.key
	if !s.allowAuth(c, "register refused: rate limit", ack) {
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

func (s *Server) onLogin(c *conn, args []any, ack func(any)) {
	log, ip := c.logger(), c.peer.key
	if !s.allowAuth(c, "login refused: rate limit", ack) {
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
	var u store.User
	if strings.IndexByte(username, 0) >= 0 {
		// No account has such a name (PostgreSQL text cannot hold NUL,
		// and asking it fails as if it were down): unknown, answered
		// after the same bcrypt work as any.
		err = store.ErrNotFound
	} else {
		u, err = s.store.User(ctx, username)
	}
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
	v, bound := c.bind(s.online, username, tokHash)
	if !bound {
		return // the socket left while the password was checked
	}
	// The user's rooms are known before the answer: a message to one of
	// them stored after the client hears `success` reaches this socket.
	s.loadRooms(sctx, c, username)
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

func (s *Server) onLogout(c *conn, _ []any, ack func(any)) {
	log := c.logger()
	user, hash := c.unbind(s.online)
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

func (s *Server) onSend(c *conn, args []any, ack func(any)) {
	log := c.logger()
	user := c.username()
	if user == "" {
		c.sock.Emit("reload")
		ack(fail(msgSendNotLoggedIn))
		return
	}
	if !s.allowMessage(c, user, ack) {
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
func (s *Server) onOlder(c *conn, args []any, ack func(any)) {
	log := c.logger()
	if c.pages == nil {
		c.pages = s.guard.pageLimiter()
	}
	pages := c.pages
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
	// Deleted messages are left out too (see visible), by the same loop.
	page := visible(c.givePage(ms))
	for tries := 0; len(page) == 0 && len(ms) > 0 && tries < 10; tries++ {
		if ms, err = s.store.MessagesBefore(ctx, ms[0].ID, limit); err != nil {
			s.met.storeErrors.WithLabelValues("older").Inc()
			log.Error("reading older messages", "err", err)
			ack(fail(msgUnavailable))
			return
		}
		page = visible(c.givePage(ms))
	}
	ack(ok("messages", wireMsgs(page)))
}
