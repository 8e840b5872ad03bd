package server

import (
	"context"
	"errors"
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
	on("list rooms", s.onListRooms)
	on("create room", s.onCreateRoom)
	on("join room", s.onJoinRoom)
	on("leave room", s.onLeaveRoom)
	on("send room message", s.onRoomSend)
	on("send direct message", s.onDirectSend)
	on("room history", s.onRoomHistory)
	on("edit message", s.onEdit)
	on("delete message", s.onDelete)
	on("typing", s.onTyping)
	on("search", s.onSearch)
	on("mark read", s.onMarkRead)
}

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

// loggedIn returns the socket's user, or answers `Not logged in`.
func (s *Server) loggedIn(c *conn, event string, ack func(any)) (string, bool) {
	user := c.username()
	if user == "" {
		s.refuse(c, event, msgSendNotLoggedIn, ack)
	}
	return user, user != ""
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

func (s *Server) onListRooms(c *conn, _ []any, ack func(any)) {
	const event = "list rooms"
	if !s.allowPage(c, event, ack) {
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	list, err := s.store.ListRooms(ctx, c.username())
	if err != nil {
		s.storeFailed(c, event, err, ack)
		return
	}
	out := make([]wireRoom, len(list))
	for i, r := range list {
		out[i] = roomSummaryWire(r)
	}
	ack(ok("rooms", out))
}

func (s *Server) onCreateRoom(c *conn, args []any, ack func(any)) {
	const event = "create room"
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	obj, isObj := objectArg(args)
	name, isText := obj["name"].(string)
	if !isObj || !isText {
		s.refuse(c, event, msgBadCreate, ack)
		return
	}
	// The rule first: a name refused costs no room change and no query.
	name, err := store.ValidateRoomName(name)
	var ie *store.InvalidError
	if errors.As(err, &ie) {
		s.refuse(c, event, invalidReason(ie), ack)
		return
	}
	if !s.allowRoomOp(c, user, event, ack) {
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	r, err := s.store.CreateRoom(ctx, name, user)
	if errors.Is(err, store.ErrConflict) {
		s.refuse(c, event, msgRoomTaken, ack)
		return
	}
	if s.roomRefused(c, event, err, ack) {
		return
	}
	s.members.apply(user, r.ID, true)
	if err := s.announceMember(ctx, user, r.ID, false); err != nil {
		// Created and joined here; the user's sockets on other servers
		// learn it when they next read the user's rooms.
		c.logger().Warn("announcing a new room's first member", "room", r.ID, "err", err)
	}
	c.logger().Info("created room", "user", user, "room", r.ID)
	ack(ok("room", wireRoom{ID: r.ID, Name: r.Name, Kind: string(r.Kind), Member: true}))
}

func (s *Server) onJoinRoom(c *conn, args []any, ack func(any)) {
	const event = "join room"
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	room, err := roomArg(args)
	if err != nil {
		s.refuse(c, event, publicMessage(err, msgBadRoom), ack)
		return
	}
	if !s.allowRoomOp(c, user, event, ack) {
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	if s.roomRefused(c, event, s.store.JoinRoom(ctx, room, user), ack) {
		return
	}
	r, err := s.store.Room(ctx, room)
	if s.roomRefused(c, event, err, ack) {
		return
	}
	if !isGeneral(room) {
		s.members.apply(user, room, true)
		// Not announced, not answered: the user's sockets on other
		// servers would miss the room's messages. Joining again is
		// harmless and announces again.
		if err := s.announceMember(ctx, user, room, false); err != nil {
			c.logger().Error("announcing a join failed: not acknowledged", "room", room, "err", err)
			ack(fail(msgUnavailable))
			return
		}
	}
	ack(ok("room", wireRoom{ID: r.ID, Name: r.Name, Kind: string(r.Kind), Member: true}))
}

func (s *Server) onLeaveRoom(c *conn, args []any, ack func(any)) {
	const event = "leave room"
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	room, err := roomArg(args)
	if err != nil {
		s.refuse(c, event, publicMessage(err, msgBadRoom), ack)
		return
	}
	if !s.allowRoomOp(c, user, event, ack) {
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	err = s.store.LeaveRoom(ctx, room, user)
	if errors.Is(err, store.ErrForbidden) {
		// General, or a direct room. Only its members may hear that it
		// cannot be left; to anyone else it does not exist.
		member, merr := s.store.IsMember(ctx, room, user)
		switch {
		case merr != nil && !errors.Is(merr, store.ErrNotFound):
			s.storeFailed(c, event, merr, ack)
		case member:
			s.refuse(c, event, msgCannotLeave, ack)
		default:
			s.refuse(c, event, msgNoRoom, ack)
		}
		return
	}
	if s.roomRefused(c, event, err, ack) {
		return
	}
	// Applied here at once: from now on this server gives the user's
	// sockets nothing of the room. The other servers hear it on the bus.
	s.members.apply(user, room, false)
	if err := s.announceMember(ctx, user, room, true); err != nil {
		c.logger().Error("announcing a leave failed: not acknowledged", "room", room, "err", err)
		ack(fail(msgUnavailable))
		return
	}
	ack(ok())
}

// sendTo stores a message of user to room and delivers it, answering as
// `send message` does: the sender has its own `room message` before the
// answer, and the answer promises every server delivers it.
func (s *Server) sendTo(c *conn, event, user string, room int64, text, clientID string, ack func(any), extra ...any) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	m, created, err := s.store.AddMessage(ctx, store.Message{Content: text, Username: user, ClientID: clientID, RoomID: room})
	if s.roomRefused(c, event, err, ack) {
		return
	}
	if created {
		s.met.stored.Inc()
	}
	<-s.deliver(m)
	if err := s.cfg.Bus.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: m.ID, Origin: s.id, Sent: time.Now().UnixNano()}); err != nil {
		c.logger().Error("announcing message failed: not acknowledged, the client will resend", "id", m.ID, "err", err)
		ack(fail(msgUnavailable))
		return
	}
	s.met.ackLatency.Observe(time.Since(start).Seconds())
	ack(ok(append([]any{"id", m.ID, "room", roomWire(m).Room}, extra...)...))
}

func (s *Server) onRoomSend(c *conn, args []any, ack func(any)) {
	const event = "send room message"
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	if !allow(s.guard.msgs, user) {
		s.met.rejections.WithLabelValues("messages_per_user").Inc()
		s.refusals.Warn(c.logger(), "message refused: rate limit", "user", user)
		ack(fail(msgTooFast))
		return
	}
	obj, isObj := objectArg(args)
	room, isID := idField(obj, "room")
	if !isObj || !isID {
		s.refuse(c, event, msgBadRoomSend, ack)
		return
	}
	text, clientID, err := textAndKey(obj, s.cfg.MaxMessageLen, msgBadRoomSend)
	if err != nil {
		s.refuse(c, event, publicMessage(err, msgBadRoomSend), ack)
		return
	}
	s.sendTo(c, event, user, room, text, clientID, ack)
}

func (s *Server) onDirectSend(c *conn, args []any, ack func(any)) {
	const event = "send direct message"
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	if !allow(s.guard.msgs, user) {
		s.met.rejections.WithLabelValues("messages_per_user").Inc()
		s.refusals.Warn(c.logger(), "message refused: rate limit", "user", user)
		ack(fail(msgTooFast))
		return
	}
	obj, isObj := objectArg(args)
	to, isName := obj["to"].(string)
	if !isObj || !isName || to == "" || len(to) > 1024 { // the seed's varchar(255), in UTF-8
		s.refuse(c, event, msgBadDirect, ack)
		return
	}
	if to == user {
		s.refuse(c, event, msgSelfDirect, ack)
		return
	}
	text, clientID, err := textAndKey(obj, s.cfg.MaxMessageLen, msgBadDirect)
	if err != nil {
		s.refuse(c, event, publicMessage(err, msgBadDirect), ack)
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	r, err := s.store.DirectRoom(ctx, user, to)
	var ie *store.InvalidError
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.refuse(c, event, msgNoUser, ack)
		return
	case errors.As(err, &ie):
		s.refuse(c, event, msgSelfDirect, ack)
		return
	case err != nil:
		s.storeFailed(c, event, err, ack)
		return
	}
	// Both users' sockets must know the room before its first message
	// reaches them: here at once, elsewhere by notices published before
	// the message's own (a bus keeps one publisher's order).
	if !s.directAnnounced(r.ID) {
		s.members.apply(user, r.ID, true)
		s.members.apply(to, r.ID, true)
		for _, u := range []string{user, to} {
			if err := s.announceMember(ctx, u, r.ID, false); err != nil {
				c.logger().Error("announcing a direct room failed: not acknowledged", "room", r.ID, "err", err)
				ack(fail(msgUnavailable))
				return
			}
		}
		s.markAnnounced(r.ID)
	}
	s.sendTo(c, event, user, r.ID, text, clientID, ack, "peer", to)
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

func (s *Server) onRoomHistory(c *conn, args []any, ack func(any)) {
	const event = "room history"
	obj, isObj := objectArg(args)
	room, okRoom := idField(obj, "room")
	before, okBefore := beforeField(obj)
	limit, okLimit := limitField(obj)
	if !isObj || !okRoom || !okBefore || !okLimit {
		s.refuse(c, event, msgBadRoomPage, ack)
		return
	}
	if !s.allowPage(c, event, ack) {
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	var ms []store.Message
	var err error
	if before == 0 {
		ms, err = s.store.RecentRoomMessages(ctx, c.username(), room, limit)
	} else {
		ms, err = s.store.RoomMessagesBefore(ctx, c.username(), room, before, limit)
	}
	if s.roomRefused(c, event, err, ack) {
		return
	}
	ack(ok("room", room, "messages", roomWires(ms)))
}

// editArgs reads {message, id?} and, when withText, msg.
func (s *Server) editArgs(args []any, withText bool, bad string) (id int64, text, clientID string, err error) {
	obj, isObj := objectArg(args)
	id, isID, tooBig := messageField(obj, "message")
	if tooBig {
		return 0, "", "", inputErr(msgNoMessage)
	}
	if !isObj || !isID {
		return 0, "", "", inputErr(bad)
	}
	if withText {
		text, clientID, err = textAndKey(obj, s.cfg.MaxMessageLen, bad)
		return id, text, clientID, err
	}
	clientID, err = clientIDOf(obj)
	return id, "", clientID, err
}

func (s *Server) onEdit(c *conn, args []any, ack func(any)) { s.change(c, "edit message", args, ack) }

func (s *Server) onDelete(c *conn, args []any, ack func(any)) {
	s.change(c, "delete message", args, ack)
}

// change edits or deletes one of the user's messages and tells the room.
// A resend with the same key changes nothing more, and is answered and
// announced again like a resent message.
func (s *Server) change(c *conn, event string, args []any, ack func(any)) {
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	if !allow(s.guard.msgs, user) {
		s.met.rejections.WithLabelValues("messages_per_user").Inc()
		s.refusals.Warn(c.logger(), "message refused: rate limit", "user", user)
		ack(fail(msgTooFast))
		return
	}
	editing := event == "edit message"
	bad := msgBadDelete
	if editing {
		bad = msgBadEdit
	}
	id, text, clientID, err := s.editArgs(args, editing, bad)
	if err != nil {
		s.refuse(c, event, publicMessage(err, bad), ack)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	var m store.Message
	if editing {
		m, _, err = s.store.EditMessage(ctx, id, user, text, clientID)
	} else {
		m, _, err = s.store.DeleteMessage(ctx, id, user, clientID)
	}
	var ie *store.InvalidError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrForbidden):
		s.refuse(c, event, msgNoMessage, ack)
		return
	case errors.As(err, &ie):
		s.refuse(c, event, invalidReason(ie), ack)
		return
	case err != nil:
		s.storeFailed(c, event, err, ack)
		return
	}
	<-s.deliverChange(m)
	if err := s.cfg.Bus.Publish(ctx, bus.Event{Kind: bus.KindEdit, ID: m.ID, Origin: s.id, Sent: time.Now().UnixNano()}); err != nil {
		c.logger().Error("announcing an edit failed: not acknowledged, the client will resend", "id", m.ID, "err", err)
		ack(fail(msgUnavailable))
		return
	}
	ack(ok("message", roomWire(m)))
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

func (s *Server) onTyping(c *conn, args []any, ack func(any)) {
	const event = "typing"
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	room, err := roomArg(args)
	if err != nil {
		s.refuse(c, event, publicMessage(err, msgBadRoom), ack)
		return
	}
	// Membership as delivery knows it: no store call per keystroke.
	if !isGeneral(room) && !s.members.in(user, room) {
		s.refuse(c, event, msgNoRoom, ack)
		return
	}
	if !s.typing.allowUser(user) {
		s.met.rejections.WithLabelValues("typing_per_room").Inc()
		s.refusals.Info(c.logger(), "typing notice refused: rate limit across rooms", "user", user)
		ack(fail(msgTooFastTypingAll))
		return
	}
	if !s.typing.allow(user, room, time.Now()) {
		s.met.rejections.WithLabelValues("typing_per_room").Inc()
		s.refusals.Info(c.logger(), "typing notice refused: rate limit", "user", user)
		ack(fail(msgTooFastTyping))
		return
	}
	s.deliverTyping(room, user)
	ctx, cancel := s.storeCtx()
	defer cancel()
	if err := s.cfg.Bus.Publish(ctx, bus.Event{Kind: bus.KindTyping, Room: room, User: user, Origin: s.id, Sent: time.Now().UnixNano()}); err != nil {
		// Ephemeral: a lost notice is replaced by the next keystrokes.
		c.logger().Warn("announcing typing", "err", err)
	}
	ack(ok())
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
	perUser *limit.Limiter
	mu      sync.Mutex
	last    map[typingKey]time.Time // guarded by mu
}

// allowUser spends one of user's typing notices across rooms.
func (t *typingThrottle) allowUser(user string) bool { return t.perUser.Allow(user) }

type typingKey struct {
	user string
	room int64
}

func newTypingThrottle(every time.Duration) *typingThrottle {
	return &typingThrottle{every: every, perUser: limit.NewLimiter(2, 6, maxLimiterKeys), last: map[typingKey]time.Time{}}
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

func (s *Server) onSearch(c *conn, args []any, ack func(any)) {
	const event = "search"
	obj, isObj := objectArg(args)
	q, isText := obj["q"].(string)
	before, okBefore := beforeField(obj)
	limit, okLimit := limitField(obj)
	if !isObj || !isText || !okBefore || !okLimit {
		s.refuse(c, event, msgBadSearch, ack)
		return
	}
	if len(q) > store.MaxSearchQuery {
		s.refuse(c, event, msgSearchTooLong, ack)
		return
	}
	if !s.allowPage(c, event, ack) {
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	ms, err := s.store.SearchMessages(ctx, c.username(), q, before, limit)
	if s.roomRefused(c, event, err, ack) {
		return
	}
	ack(ok("messages", roomWires(ms)))
}

func (s *Server) onMarkRead(c *conn, args []any, ack func(any)) {
	const event = "mark read"
	user, in := s.loggedIn(c, event, ack)
	if !in {
		return
	}
	obj, isObj := objectArg(args)
	room, okRoom := idField(obj, "room")
	msg, okMsg, _ := messageField(obj, "message")
	if !isObj || !okRoom || !okMsg {
		s.refuse(c, event, msgBadMark, ack)
		return
	}
	if !s.allowRoomOp(c, user, event, ack) {
		return
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	at, err := s.store.MarkRead(ctx, user, room, msg)
	if s.roomRefused(c, event, err, ack) {
		return
	}
	ack(ok("room", room, "lastRead", at))
}
