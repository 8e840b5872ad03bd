package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/server/limit"
	"github.com/chatd/chat/store"
)

// The conversation events: rooms, direct messages, room history, edits and
// deletes, typing, search and read markers (docs/protocol.md). They are
// additions a seed client never sends; the seed's events keep acting on
// general.
//
// Privacy: every read or write of a room goes through a store method that
// checks the caller's membership itself (store.RoomMessages takes the
// reader), and every delivery through Server.deliver or Server.toRoom,
// which reach the local sockets of the room's members only. Whatever the
// reason a room or message may not be used (it does not exist, it is a
// direct room of others, a public room not joined, someone else's
// message), the answer is the same text, so that answers do not tell
// which ids exist.

func (s *Server) onConversations(on func(string, func(*conn, []any, func(any)))) {
	add := func(event string, e conversationEvent) { on(event, e.handler(s, event)) }
	add("list rooms", convEvent[noArgs]{budget: pages, run: (*request).listRooms})
	add("create room", convEvent[string]{login: true, budget: roomOps, args: roomNameOf, run: (*request).createRoom})
	add("join room", convEvent[int64]{login: true, budget: roomOps, args: roomOf, run: (*request).joinRoom})
	add("leave room", convEvent[int64]{login: true, budget: roomOps, args: roomOf, run: (*request).leaveRoom})
	add("send room message", convEvent[roomText]{login: true, budget: messages, args: roomTextOf, run: (*request).roomSend})
	add("send direct message", convEvent[directText]{login: true, budget: messages, args: directTextOf, run: (*request).directSend})
	add("room history", convEvent[roomPage]{budget: pages, args: roomPageOf, run: (*request).roomHistory})
	add("edit message", convEvent[messageChange]{login: true, budget: messages, args: editOf, run: (*request).change})
	add("delete message", convEvent[messageChange]{login: true, budget: messages, args: deleteOf, run: (*request).change})
	add("typing", convEvent[int64]{login: true, args: roomOf, run: (*request).typing})
	add("search", convEvent[searchPage]{budget: pages, args: searchOf, run: (*request).search})
	add("mark read", convEvent[readMark]{login: true, budget: roomOps, args: readMarkOf, run: (*request).markRead})
}

// convEvent is one conversation event: the checks it shares with the
// others, which its handler makes in this order before the event's own
// logic runs, and that logic.
//
//  1. login: a socket that is not logged in is answered `Not logged in`.
//  2. budget messages: the user's message budget (MESSAGE_RATE), spent
//     before the payload is read, as `send message` spends it.
//  3. args reads the payload into A (nil: the event takes none); its
//     error, an input error, is the answer.
//  4. budget roomOps or pages: the user's room changes or the socket's
//     history pages, spent only by a payload that passed, so that a
//     refusal costs no budget.
//  5. run, the event's own logic.
//
// Every refusal of steps 1 and 3 is counted in chat_refused_total by
// event and logged sampled (refuse); of steps 2 and 4, in
// chat_rate_limited_total by limit.
type convEvent[A any] struct {
	login  bool
	budget budget
	args   func(r *request, args []any) (A, error)
	run    func(r *request, a A)
}

// budget names the allowance a conversation event spends (see convEvent).
type budget int

const (
	noBudget budget = iota
	messages
	roomOps
	pages
)

// conversationEvent is a convEvent of any payload type.
type conversationEvent interface {
	handler(s *Server, event string) func(*conn, []any, func(any))
}

func (e convEvent[A]) handler(s *Server, event string) func(*conn, []any, func(any)) {
	return func(c *conn, args []any, ack func(any)) {
		r := &request{s: s, c: c, event: event, user: c.username(), ack: ack}
		defer r.done()
		if e.login && r.user == "" {
			r.refuse(msgSendNotLoggedIn)
			return
		}
		if e.budget == messages && !s.allowMessage(c, r.user, ack) {
			return
		}
		var a A
		if e.args != nil {
			var err error
			if a, err = e.args(r, args); err != nil {
				r.refuse(publicMessage(err, msgBadInput))
				return
			}
		}
		if e.budget == roomOps && !s.allowRoomOp(c, r.user, event, ack) {
			return
		}
		if e.budget == pages && !s.allowPage(c, event, ack) {
			return
		}
		e.run(r, a)
	}
}

// request is one conversation event being answered, its shared checks
// passed. Like the socket's other handlers it runs on the socket's
// executor, so its fields need no lock.
type request struct {
	s     *Server
	c     *conn
	event string
	// user is the socket's user; "" for a socket not logged in, which
	// only the events without login see.
	user string
	ack  func(any)

	ctx    context.Context // see storeCtx
	cancel context.CancelFunc
}

// storeCtx is the deadline of the request's store and bus calls:
// StoreTimeout from the first of them, within the server's life. A
// request refused before any store call costs no timer.
func (r *request) storeCtx() context.Context {
	if r.ctx == nil {
		r.ctx, r.cancel = r.s.storeCtx()
	}
	return r.ctx
}

func (r *request) done() {
	if r.cancel != nil {
		r.cancel()
	}
}

func (r *request) refuse(message string) { r.s.refuse(r.c, r.event, message, r.ack) }

func (r *request) storeFailed(err error) { r.s.storeFailed(r.c, r.event, err, r.ack) }

func (r *request) roomRefused(err error) bool { return r.s.roomRefused(r.c, r.event, err, r.ack) }

// refuse answers a client's mistake or a forbidden request with message:
// counted by event and logged, sampled, so a flood costs counters.
func (s *Server) refuse(c *conn, event, message string, ack func(any)) {
	s.met.refused.WithLabelValues(event).Inc()
	s.refusals.Info(c.logger(), "request refused", "event", event, "user", logName(c.username()), "reason", message)
	ack(fail(message))
}

// storeFailed answers a store error: logged in full, never shown.
func (s *Server) storeFailed(c *conn, event string, err error, ack func(any)) {
	s.met.storeErrors.WithLabelValues("rooms").Inc()
	c.logger().Error("store call failed", "event", event, "err", err)
	ack(fail(msgUnavailable))
}

// roomRefused answers err from a store call on a room: msgNoRoom for a
// room that does not exist or the caller may not use, the rule's reason
// for bad input, and reports whether it answered.
func (s *Server) roomRefused(c *conn, event string, err error, ack func(any)) bool {
	var ie *store.InvalidError
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrForbidden):
		s.refuse(c, event, msgNoRoom, ack)
	case errors.As(err, &ie):
		s.refuse(c, event, invalidReason(ie), ack)
	default:
		s.storeFailed(c, event, err, ack)
	}
	return true
}

// allowMessage spends one of user's messages (`send message` and the
// conversation events that write one).
func (s *Server) allowMessage(c *conn, user string, ack func(any)) bool {
	if allow(s.guard.msgs, user) {
		return true
	}
	s.met.rejections.WithLabelValues("messages_per_user").Inc()
	s.refusals.Warn(c.logger(), "message refused: rate limit", "user", user)
	ack(fail(msgTooFast))
	return false
}

// allowRoomOp spends one of user's room changes.
func (s *Server) allowRoomOp(c *conn, user, event string, ack func(any)) bool {
	if allow(s.guard.roomOps, user) {
		return true
	}
	s.met.rejections.WithLabelValues("room_ops_per_user").Inc()
	s.refusals.Warn(c.logger(), "room change refused: rate limit", "event", event, "user", user)
	ack(fail(msgTooFastRooms))
	return false
}

// allowPage spends one of the socket's history pages (shared by `load
// older messages`, `room history`, `list rooms` and `search`).
func (s *Server) allowPage(c *conn, event string, ack func(any)) bool {
	if c.pages == nil {
		c.pages = s.guard.pageLimiter()
	}
	if c.pages == nil || c.pages.Allow() {
		return true
	}
	s.met.rejections.WithLabelValues("pages_per_socket").Inc()
	s.refusals.Warn(c.logger(), "read refused: rate limit", "event", event)
	ack(fail(msgTooFastPages))
	return false
}

// loadRooms makes the socket's user's rooms known to delivery (see
// memberships) after a login; a store failure is retried in the
// background.
func (s *Server) loadRooms(ctx context.Context, c *conn, user string) {
	if err := s.members.load(ctx, user); err != nil {
		s.met.storeErrors.WithLabelValues("rooms").Inc()
		c.logger().Warn("reading the user's rooms at login; trying again in the background", "user", user, "err", err)
	}
}

// roomsChanged tells sockets that their user's room list changed (joined
// or left elsewhere, a new direct room), so that a client can list again.
func (s *Server) roomsChanged(conns []*conn) {
	text := eventText("rooms changed", map[string]any{})
	s.hub.enqueue(queued{text: text, to: conns})
}

// announceMember tells the other servers that user joined or left room.
func (s *Server) announceMember(ctx context.Context, user string, room int64, left bool) error {
	return s.cfg.Bus.Publish(ctx, bus.Event{Kind: bus.KindMember, Room: room, User: user, Left: left, Origin: s.id, Sent: time.Now().UnixNano()})
}

// Payloads of the conversation events, as their args read them.
type (
	noArgs   struct{}
	roomText struct {
		room           int64
		text, clientID string
	}
	directText struct{ to, text, clientID string }
	roomPage   struct {
		room, before int64
		limit        int
	}
	messageChange struct {
		id             int64
		text, clientID string
	}
	searchPage struct {
		q      string
		before int64
		limit  int
	}
	readMark struct{ room, message int64 }
)

func (r *request) listRooms(noArgs) {
	list, err := r.s.store.ListRooms(r.storeCtx(), r.user)
	if err != nil {
		r.storeFailed(err)
		return
	}
	out := make([]wireRoom, len(list))
	for i, room := range list {
		out[i] = roomSummaryWire(room)
	}
	r.ack(ok("rooms", out))
}

// roomNameOf reads {name} of create room, by the name rule: a name
// refused costs no room change and no query.
func roomNameOf(_ *request, args []any) (string, error) {
	obj, isObj := objectArg(args)
	name, isText := obj["name"].(string)
	if !isObj || !isText {
		return "", inputErr(msgBadCreate)
	}
	name, err := store.ValidateRoomName(name)
	if ie := (*store.InvalidError)(nil); errors.As(err, &ie) {
		return "", inputErr(invalidReason(ie))
	}
	return name, err
}

func (r *request) createRoom(name string) {
	s, ctx, user := r.s, r.storeCtx(), r.user
	room, err := s.store.CreateRoom(ctx, name, user)
	if errors.Is(err, store.ErrConflict) {
		r.refuse(msgRoomTaken)
		return
	}
	if r.roomRefused(err) {
		return
	}
	s.members.apply(user, room.ID, true)
	if err := s.announceMember(ctx, user, room.ID, false); err != nil {
		// Created and joined here; the user's sockets on other servers
		// learn it when they next read the user's rooms.
		r.c.logger().Warn("announcing a new room's first member", "room", room.ID, "err", err)
	}
	r.c.logger().Info("created room", "user", user, "room", room.ID)
	r.ack(ok("room", wireRoom{ID: room.ID, Name: room.Name, Kind: string(room.Kind), Member: true}))
}

// roomOf reads {room} of join room, leave room and typing.
func roomOf(_ *request, args []any) (int64, error) { return roomArg(args) }

func (r *request) joinRoom(room int64) {
	s, ctx, user := r.s, r.storeCtx(), r.user
	if r.roomRefused(s.store.JoinRoom(ctx, room, user)) {
		return
	}
	joined, err := s.store.Room(ctx, room)
	if r.roomRefused(err) {
		return
	}
	if !isGeneral(room) {
		s.members.apply(user, room, true)
		// Not announced, not answered: the user's sockets on other
		// servers would miss the room's messages. Joining again is
		// harmless and announces again.
		if err := s.announceMember(ctx, user, room, false); err != nil {
			r.c.logger().Error("announcing a join failed: not acknowledged", "room", room, "err", err)
			r.ack(fail(msgUnavailable))
			return
		}
	}
	r.ack(ok("room", wireRoom{ID: joined.ID, Name: joined.Name, Kind: string(joined.Kind), Member: true}))
}

func (r *request) leaveRoom(room int64) {
	s, ctx, user := r.s, r.storeCtx(), r.user
	err := s.store.LeaveRoom(ctx, room, user)
	if errors.Is(err, store.ErrForbidden) {
		// General, or a direct room. Only its members may hear that it
		// cannot be left; to anyone else it does not exist.
		member, merr := s.store.IsMember(ctx, room, user)
		switch {
		case merr != nil && !errors.Is(merr, store.ErrNotFound):
			r.storeFailed(merr)
		case member:
			r.refuse(msgCannotLeave)
		default:
			r.refuse(msgNoRoom)
		}
		return
	}
	if r.roomRefused(err) {
		return
	}
	// Applied here at once: from now on this server gives the user's
	// sockets nothing of the room. The other servers hear it on the bus.
	s.members.apply(user, room, false)
	if err := s.announceMember(ctx, user, room, true); err != nil {
		r.c.logger().Error("announcing a leave failed: not acknowledged", "room", room, "err", err)
		r.ack(fail(msgUnavailable))
		return
	}
	r.ack(ok())
}

// send stores a message of the user to room and delivers it, answering
// as `send message` does: the sender has its own `room message` before
// the answer, and the answer promises every server delivers it.
func (r *request) send(room int64, text, clientID string, extra ...any) {
	s := r.s
	start := time.Now()
	// The write gets its own deadline, not the server's: as with `send
	// message`, a message whose sender disconnects mid-send is stored.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	m, created, err := s.store.AddMessage(ctx, store.Message{Content: text, Username: r.user, ClientID: clientID, RoomID: room})
	if r.roomRefused(err) {
		return
	}
	if created {
		s.met.stored.Inc()
	}
	<-s.deliver(m)
	if err := s.cfg.Bus.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: m.ID, Origin: s.id, Sent: time.Now().UnixNano()}); err != nil {
		r.c.logger().Error("announcing message failed: not acknowledged, the client will resend", "id", m.ID, "err", err)
		r.ack(fail(msgUnavailable))
		return
	}
	s.met.ackLatency.Observe(time.Since(start).Seconds())
	r.ack(ok(append([]any{"id", m.ID, "room", roomWire(m).Room}, extra...)...))
}

// roomTextOf reads {room, msg, id?} of send room message.
func roomTextOf(r *request, args []any) (roomText, error) {
	obj, isObj := objectArg(args)
	room, isID := idField(obj, "room")
	if !isObj || !isID {
		return roomText{}, inputErr(msgBadRoomSend)
	}
	text, clientID, err := textAndKey(obj, r.s.cfg.MaxMessageLen, msgBadRoomSend)
	return roomText{room, text, clientID}, err
}

func (r *request) roomSend(m roomText) { r.send(m.room, m.text, m.clientID) }

// directTextOf reads {to, msg, id?} of send direct message.
func directTextOf(r *request, args []any) (directText, error) {
	obj, isObj := objectArg(args)
	to, isName := obj["to"].(string)
	if !isObj || !isName || to == "" || len(to) > 1024 { // the seed's varchar(255), in UTF-8
		return directText{}, inputErr(msgBadDirect)
	}
	if to == r.user {
		return directText{}, inputErr(msgSelfDirect)
	}
	text, clientID, err := textAndKey(obj, r.s.cfg.MaxMessageLen, msgBadDirect)
	return directText{to, text, clientID}, err
}

func (r *request) directSend(m directText) {
	s, user, to := r.s, r.user, m.to
	if strings.IndexByte(to, 0) >= 0 {
		// No account has such a name (registration refuses it, and
		// PostgreSQL text cannot hold NUL), and asking PostgreSQL fails
		// as if it were down.
		r.refuse(msgNoUser)
		return
	}
	ctx := r.storeCtx()
	room, err := s.store.DirectRoom(ctx, user, to)
	var ie *store.InvalidError
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.refuse(msgNoUser)
		return
	case errors.As(err, &ie):
		r.refuse(msgSelfDirect)
		return
	case err != nil:
		r.storeFailed(err)
		return
	}
	// Both users' sockets must know the room before its first message
	// reaches them: here at once, elsewhere by notices published before
	// the message's own (a bus keeps one publisher's order).
	if !s.directAnnounced(room.ID) {
		s.members.apply(user, room.ID, true)
		s.members.apply(to, room.ID, true)
		for _, u := range []string{user, to} {
			if err := s.announceMember(ctx, u, room.ID, false); err != nil {
				r.c.logger().Error("announcing a direct room failed: not acknowledged", "room", room.ID, "err", err)
				r.ack(fail(msgUnavailable))
				return
			}
		}
		s.markAnnounced(room.ID)
	}
	r.send(room.ID, m.text, m.clientID, "peer", to)
}

// announced remembers the direct rooms whose members this server has
// announced on the bus, so that a conversation costs the notices once per
// server rather than once per message. Bounded: when full it is emptied,
// which costs a few notices again.
type announcedSet struct {
	mu sync.Mutex
	m  map[int64]struct{} // guarded by mu
}

const maxAnnounced = 100_000

func (s *Server) directAnnounced(room int64) bool {
	s.announced.mu.Lock()
	defer s.announced.mu.Unlock()
	_, ok := s.announced.m[room]
	return ok
}

func (s *Server) markAnnounced(room int64) {
	s.announced.mu.Lock()
	defer s.announced.mu.Unlock()
	if s.announced.m == nil || len(s.announced.m) >= maxAnnounced {
		s.announced.m = map[int64]struct{}{}
	}
	s.announced.m[room] = struct{}{}
}

// roomPageOf reads {room, before?, limit?} of room history.
func roomPageOf(_ *request, args []any) (roomPage, error) {
	obj, isObj := objectArg(args)
	room, okRoom := idField(obj, "room")
	before, okBefore := beforeField(obj)
	limit, okLimit := limitField(obj)
	if !isObj || !okRoom || !okBefore || !okLimit {
		return roomPage{}, inputErr(msgBadRoomPage)
	}
	return roomPage{room, before, limit}, nil
}

func (r *request) roomHistory(p roomPage) {
	var ms []store.Message
	var err error
	if p.before == 0 {
		ms, err = r.s.store.RecentRoomMessages(r.storeCtx(), r.user, p.room, p.limit)
	} else {
		ms, err = r.s.store.RoomMessagesBefore(r.storeCtx(), r.user, p.room, p.before, p.limit)
	}
	if r.roomRefused(err) {
		return
	}
	r.ack(ok("room", p.room, "messages", roomWires(ms)))
}

// editOf reads {message, msg, id?} of edit message, deleteOf {message,
// id?} of delete message.
func editOf(r *request, args []any) (messageChange, error) {
	return changeOf(r, args, true, msgBadEdit)
}

func deleteOf(r *request, args []any) (messageChange, error) {
	return changeOf(r, args, false, msgBadDelete)
}

// changeOf reads {message, id?} and, when withText, msg; bad is the
// answer to a wrong shape.
func changeOf(r *request, args []any, withText bool, bad string) (messageChange, error) {
	obj, isObj := objectArg(args)
	id, isID, tooBig := messageField(obj, "message")
	if tooBig {
		return messageChange{}, inputErr(msgNoMessage)
	}
	if !isObj || !isID {
		return messageChange{}, inputErr(bad)
	}
	if withText {
		text, clientID, err := textAndKey(obj, r.s.cfg.MaxMessageLen, bad)
		return messageChange{id, text, clientID}, err
	}
	clientID, err := clientIDOf(obj)
	return messageChange{id: id, clientID: clientID}, err
}

// change edits or deletes one of the user's messages and tells the room.
// A resend with the same key changes nothing more, and is answered and
// announced again like a resent message.
func (r *request) change(c messageChange) {
	s, user := r.s, r.user
	// A write: its own deadline, as in send.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	var m store.Message
	var err error
	if r.event == "edit message" {
		m, _, err = s.store.EditMessage(ctx, c.id, user, c.text, c.clientID)
	} else {
		m, _, err = s.store.DeleteMessage(ctx, c.id, user, c.clientID)
	}
	var ie *store.InvalidError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrForbidden):
		r.refuse(msgNoMessage)
		return
	case errors.As(err, &ie):
		r.refuse(invalidReason(ie))
		return
	case err != nil:
		r.storeFailed(err)
		return
	}
	<-s.deliverChange(m)
	if err := s.cfg.Bus.Publish(ctx, bus.Event{Kind: bus.KindEdit, ID: m.ID, Origin: s.id, Sent: time.Now().UnixNano()}); err != nil {
		r.c.logger().Error("announcing an edit failed: not acknowledged, the client will resend", "id", m.ID, "err", err)
		r.ack(fail(msgUnavailable))
		return
	}
	r.ack(ok("message", roomWire(m)))
}

// deliverChange tells m's room that m was edited or deleted: `message
// edited` or `message deleted` with the message as stored now.
func (s *Server) deliverChange(m store.Message) <-chan struct{} {
	name := "message edited"
	if m.Deleted {
		name = "message deleted"
	}
	return s.toRoom(m.RoomID, 0, roomEventText(name, m))
}

// relayEdit delivers here an edit or delete made on another server. It
// returns the store's error when it cannot read the message; the relay
// then replays changes from the store.
func (s *Server) relayEdit(id int64) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
	defer cancel()
	m, err := s.store.Message(ctx, id)
	if err != nil {
		s.met.storeErrors.WithLabelValues("relay").Inc()
		s.log.Warn("relay: reading an edited message", "id", id, "err", err)
		return err
	}
	s.deliverChange(m)
	return nil
}

// Typing notices.
const (
	// typingEvery is the least time between two typing notices of one
	// user in one room; clients send one every few seconds while typing.
	typingEvery = 2 * time.Second
	// typingTTL is how long a client shows a notice it does not hear
	// renewed: the notice expires by itself, nothing is ever stored.
	typingTTL = 5 * time.Second
)

func (r *request) typing(room int64) {
	s, user := r.s, r.user
	// Membership as delivery knows it: no store call per keystroke.
	if !isGeneral(room) && !s.members.in(user, room) {
		r.refuse(msgNoRoom)
		return
	}
	if !s.typing.allowUser(user) {
		s.met.rejections.WithLabelValues("typing_per_room").Inc()
		s.refusals.Info(r.c.logger(), "typing notice refused: rate limit across rooms", "user", user)
		r.ack(fail(msgTooFastTypingAll))
		return
	}
	if !s.typing.allow(user, room, time.Now()) {
		s.met.rejections.WithLabelValues("typing_per_room").Inc()
		s.refusals.Info(r.c.logger(), "typing notice refused: rate limit", "user", user)
		r.ack(fail(msgTooFastTyping))
		return
	}
	s.deliverTyping(room, user)
	if err := s.cfg.Bus.Publish(r.storeCtx(), bus.Event{Kind: bus.KindTyping, Room: room, User: user, Origin: s.id, Sent: time.Now().UnixNano()}); err != nil {
		// Ephemeral: a lost notice is replaced by the next keystrokes.
		r.c.logger().Warn("announcing typing", "err", err)
	}
	r.ack(ok())
}

// deliverTyping tells room's local members that user is typing.
func (s *Server) deliverTyping(room int64, user string) {
	if isGeneral(room) {
		room = store.General
	}
	s.toRoom(room, 0, eventText("typing", map[string]any{"room": room, "user": user, "ttl": typingTTL.Milliseconds()}))
}

// typingThrottle lets one typing notice per user and room through every
// interval, and a few a second per user across all rooms (a member of
// many rooms cannot multiply the first limit). Its map is swept of old
// entries as it grows, so it holds about the notices of one interval.
type typingThrottle struct {
	every   time.Duration
	perUser *limit.Limiter // nil when the limit across rooms is off
	mu      sync.Mutex
	last    map[typingKey]time.Time // guarded by mu
}

// allowUser spends one of user's typing notices across rooms.
func (t *typingThrottle) allowUser(user string) bool { return allow(t.perUser, user) }

type typingKey struct {
	user string
	room int64
}

// newTypingThrottle takes the limit across rooms from l
// (TypingPerUser, TypingBurst), its defaults set.
func newTypingThrottle(every time.Duration, l Limits) *typingThrottle {
	t := &typingThrottle{every: every, last: map[typingKey]time.Time{}}
	if l.TypingPerUser > 0 {
		t.perUser = limit.NewLimiter(l.TypingPerUser, l.TypingBurst, maxLimiterKeys)
	}
	return t
}

func (t *typingThrottle) allow(user string, room int64, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := typingKey{user, room}
	if last, ok := t.last[k]; ok && now.Sub(last) < t.every {
		return false
	}
	if len(t.last) >= 10_000 {
		for k, at := range t.last {
			if now.Sub(at) >= t.every {
				delete(t.last, k)
			}
		}
	}
	t.last[k] = now
	return true
}

// searchOf reads {q, before?, limit?} of search.
func searchOf(_ *request, args []any) (searchPage, error) {
	obj, isObj := objectArg(args)
	q, isText := obj["q"].(string)
	before, okBefore := beforeField(obj)
	limit, okLimit := limitField(obj)
	if !isObj || !isText || !okBefore || !okLimit {
		return searchPage{}, inputErr(msgBadSearch)
	}
	if len(q) > store.MaxSearchQuery {
		return searchPage{}, inputErr(msgSearchTooLong)
	}
	return searchPage{q, before, limit}, nil
}

func (r *request) search(p searchPage) {
	ms, err := r.s.store.SearchMessages(r.storeCtx(), r.user, p.q, p.before, p.limit)
	if r.roomRefused(err) {
		return
	}
	r.ack(ok("messages", roomWires(ms)))
}

// readMarkOf reads {room, message} of mark read.
func readMarkOf(_ *request, args []any) (readMark, error) {
	obj, isObj := objectArg(args)
	room, okRoom := idField(obj, "room")
	msg, okMsg, _ := messageField(obj, "message")
	if !isObj || !okRoom || !okMsg {
		return readMark{}, inputErr(msgBadMark)
	}
	return readMark{room, msg}, nil
}

func (r *request) markRead(m readMark) {
	at, err := r.s.store.MarkRead(r.storeCtx(), r.user, m.room, m.message)
	if r.roomRefused(err) {
		return
	}
	r.ack(ok("room", m.room, "lastRead", at))
}
