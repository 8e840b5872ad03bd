package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/chatd/chat/store"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"golang.org/x/crypto/bcrypt"
)

// session is one socket's login state. Its handlers run one at a time, but
// disconnect can run beside them, so the state sits under a mutex and a
// closed session never logs in again: a login that finishes after its
// socket left cannot leave a ghost in the online list.
type session struct {
	mu sync.Mutex
	// Fields below are guarded by mu.
	user   string // "" when not logged in
	closed bool
}

// bind logs the session in as user, replacing any earlier user, and
// reports the online-list version to wait for. It fails once closed.
func (ss *session) bind(o *online, user string) (uint64, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return 0, false
	}
	if ss.user == user {
		return o.current(), true // logging in again as oneself changes nothing
	}
	if ss.user != "" {
		o.remove(ss.user)
	}
	ss.user = user
	return o.add(user), true
}

// unbind logs the session out; close also prevents later logins. Both
// return the user that was logged in, or "".
func (ss *session) unbind(o *online, close bool) (string, uint64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if close {
		ss.closed = true
	}
	user := ss.user
	ss.user = ""
	if user == "" {
		return "", 0
	}
	return user, o.remove(user)
}

func (ss *session) username() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.user
}

func (s *Server) onConnection(sock *socket.Socket) {
	sid := string(sock.Id())
	log := s.log.With("sid", sid)
	ss := &session{}
	c := &client{
		send: func(ev string, args ...any) { sock.Emit(ev, args...) },
		close: func(reason string) {
			log.Warn("disconnecting socket", "reason", reason)
			sock.Disconnect(true)
		},
	}
	s.hub.join(c)
	s.gate.connected(string(sock.Conn().Id()))

	// Handlers are registered before anything is awaited, so no event the
	// client sends right after connecting is dropped.
	sock.On("register", func(args ...any) { s.onRegister(log, args) })
	sock.On("login", func(args ...any) { s.onLogin(log, ss, args) })
	sock.On("logout", func(args ...any) { s.onLogout(log, ss, args) })
	sock.On("send message", func(args ...any) { s.onSend(log, ss, sock, args) })
	sock.On("disconnect", func(args ...any) {
		s.hub.leave(c)
		if user, _ := ss.unbind(s.online, true); user != "" {
			log.Info("logged-in socket disconnected", "user", user)
		}
	})

	// The history is this socket's first queued task, so it runs before
	// any event handler and `load all messages` is the first event the
	// client receives.
	sock.Enqueue(func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
		defer cancel()
		history, err := s.store.RecentMessages(ctx, s.cfg.HistoryLimit)
		if err != nil {
			log.Error("loading history", "err", err)
			history = []store.Message{}
		}
		sock.Emit("load all messages", wireMsgs(history))
		var last int64
		if n := len(history); n > 0 {
			last = history[n-1].ID
		} else if err != nil {
			last = -1 // unknown: deliver everything that arrives
		}
		c.goLive(last)
	})
}

func (s *Server) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
}

func (s *Server) onRegister(log *slog.Logger, args []any) {
	args, ack := splitAck(args)
	username, password, err := credentials(args)
	if err == nil {
		err = validUsername(username)
	}
	if err == nil {
		err = validPassword(password)
	}
	if err != nil {
		log.Info("register refused", "reason", err.Error())
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
		ack(fail(msgUsernameTaken))
	case err != nil:
		log.Error("storing new user", "user", logName(username), "err", err)
		ack(fail(msgRegisterError))
	default:
		log.Info("registered", "user", username)
		ack(ok())
	}
}

func (s *Server) onLogin(log *slog.Logger, ss *session, args []any) {
	args, ack := splitAck(args)
	username, password, err := credentials(args)
	if err != nil {
		log.Info("login refused", "reason", err.Error())
		ack(fail(publicMessage(err, msgInvalidLogin)))
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
		log.Info("login failed", "user", logName(username))
		ack(fail(msgInvalidLogin))
		return
	}
	v, bound := ss.bind(s.online, username)
	if !bound {
		return // the socket left while the password was checked
	}
	if err := s.online.waitSent(s.ctx, v); err != nil {
		return
	}
	log.Info("logged in", "user", username)
	ack(ok())
}

func (s *Server) onLogout(log *slog.Logger, ss *session, args []any) {
	_, ack := splitAck(args)
	user, _ := ss.unbind(s.online, false)
	if user == "" {
		ack(fail(msgNotLoggedIn))
		return
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
	text, clientID, err := outgoing(args, s.cfg.MaxMessageLen)
	if err != nil {
		log.Info("message refused", "user", user, "reason", err.Error())
		ack(fail(publicMessage(err, msgMessageNotText)))
		return
	}
	// The write gets its own deadline, not the socket's: a message whose
	// sender disconnects mid-send is still stored and delivered.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	m, created, err := s.store.AddMessage(ctx, store.Message{Content: text, Username: user, ClientID: clientID})
	if err != nil {
		log.Error("storing message", "user", user, "err", err)
		ack(fail(msgUnavailable))
		return
	}
	if created {
		s.hub.broadcast(m)
	}
	ack(ok("id", m.ID))
}
