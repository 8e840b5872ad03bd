package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/store"
)

// seenWindow is how many recent message ids a server remembers delivering,
// and how far back a catch-up looks: ids are allotted before commit, so a
// message can become visible after a higher one; the window covers that
// reordering.
const seenWindow = 4096

// catchUpEvery is how often a relay whose store read failed tries again.
const catchUpEvery = time.Second

// replayMargin is how far before the bus was last known good a replay of
// edits and deletes starts. That mark is this server's clock (or, when
// earlier, the publisher's), a change's time is the database's: the margin
// covers a skew between those clocks, a notice still in flight when the
// connection dropped, and PostgreSQL's now() being the time a change's
// transaction began. Generous on purpose, because a change replayed twice
// is harmless: `message edited` carries the whole text as stored, a delete
// is idempotent, and a client replaces the message it shows with the one
// received (public/app.js updateMessage) and ignores ids it does not show.
const replayMargin = time.Minute

// replayLimit bounds how many edits and deletes one catch-up replays: the
// most recent ones. Older ones show when a client next loads the history.
const replayLimit = 1000

// closedCh is what deliver returns for a message delivered already.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// deliver is the one way a message reaches this server's sockets, whether
// it was sent here (onSend) or on another server (the relay): each id at
// most once per server, however often it is announced or resent. The
// returned channel is closed once every socket has been handed m.
//
// Who may receive it is decided here and nowhere else: a message of
// general goes to every socket as `new message`, as in the seed; a message
// of any other room goes only to the sockets of that room's members. A
// message deleted before it was delivered here (a catch-up reads it late)
// goes to nobody: there is nothing left to show.
func (s *Server) deliver(m store.Message) <-chan struct{} {
	if !s.relay.markSeen(m.ID) || m.Deleted {
		return closedCh
	}
	if isGeneral(m.RoomID) {
		return s.hub.broadcast(m)
	}
	return s.toRoom(m.RoomID, m.ID, roomEventText("room message", m))
}

// toRoom queues an event for the local sockets of room's members (see
// memberships), in order with every other delivery; id is the message id
// for new messages (given once per socket), 0 otherwise.
func (s *Server) toRoom(room, id int64, text string) <-chan struct{} {
	if isGeneral(room) {
		return s.hub.enqueue(queued{id: id, text: text})
	}
	to := s.members.recipients(room)
	if len(to) == 0 {
		return closedCh
	}
	return s.hub.enqueue(queued{id: id, text: text, to: to, room: room})
}

// isGeneral reports whether room is general: its id, or 0, which the store
// reads as general.
func isGeneral(room int64) bool { return room == store.General || room == 0 }

// relay is the bus handler: a bus event names a message another server
// stored (or edited, or deleted); the relay reads it from the store and
// delivers it here. When the read fails (the database is briefly
// unreachable), nothing is dropped: the relay catches up from the store,
// from the lowest id it missed and, for edits and deletes, which have no
// id to count from, from a time, until a read succeeds.
type relay struct {
	s *Server

	// good is when the bus was last known to deliver, in Unix
	// nanoseconds: the newest event received (as of its publication) or
	// the start of the last resync. An edit or delete whose notice the
	// bus lost was made after it.
	good atomic.Int64

	mu sync.Mutex
	// Fields below are guarded by mu.
	seen     map[int64]struct{}
	ring     []int64   // seen ids in arrival order, to forget the oldest
	high     int64     // highest id seen
	floor    int64     // the newest id stored when this server started
	missed   int64     // lowest id whose read failed, 0 when none
	changes  time.Time // replay edits and deletes from here; zero when none is owed
	catching bool      // a catch-up goroutine is running
}

func newRelay(s *Server) *relay {
	r := &relay{s: s, seen: make(map[int64]struct{}, seenWindow)}
	// Sockets read their history after this: nothing older is owed.
	r.good.Store(time.Now().UnixNano())
	return r
}

// markGood records that the bus delivered as of at (Unix nanoseconds); the
// mark never moves back.
func (r *relay) markGood(at int64) {
	for {
		old := r.good.Load()
		if at <= old || r.good.CompareAndSwap(old, at) {
			return
		}
	}
}

// markSeen records id and reports whether it is new.
func (r *relay) markSeen(id int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.seen[id]; dup {
		return false
	}
	r.seen[id] = struct{}{}
	r.ring = append(r.ring, id)
	if len(r.ring) > seenWindow {
		delete(r.seen, r.ring[0])
		r.ring = r.ring[1:]
	}
	r.high = max(r.high, id)
	return true
}

// seenAlready reports whether id was delivered here.
func (r *relay) seenAlready(id int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.seen[id]
	return ok
}

// HandleEvent implements bus.Handler.
func (r *relay) HandleEvent(e bus.Event) {
	// The bus delivered what was published up to this event. Its
	// publication rather than now: a backlog of received events can run
	// after the connection dropped.
	at := time.Now().UnixNano()
	if e.Sent > 0 {
		at = min(at, e.Sent)
	}
	r.markGood(at)
	if e.Origin == r.s.id {
		return
	}
	if e.Sent > 0 {
		r.s.met.busLag.Observe(time.Since(time.Unix(0, e.Sent)).Seconds())
	}
	switch e.Kind {
	case bus.KindPresence:
		r.s.online.signal()
	case bus.KindMember:
		if e.User != "" && e.Room > 0 {
			r.s.members.notice(e.User, e.Room, e.Left)
		}
	case bus.KindEdit:
		if err := r.s.relayEdit(e.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			// The change was made before its notice was published.
			r.retry(0, time.Unix(0, at).Add(-replayMargin))
		}
	case bus.KindTyping:
		if e.User != "" && e.Room > 0 {
			r.s.deliverTyping(e.Room, e.User)
		}
	case bus.KindMessage:
		if r.seenAlready(e.ID) {
			// Announced again (a resend): delivered here already.
			return
		}
		ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.StoreTimeout)
		defer cancel()
		ms, err := r.s.store.MessagesAfter(ctx, e.ID-1, 1)
		if err != nil {
			r.s.met.storeErrors.WithLabelValues("relay").Inc()
			r.s.log.Error("relay: reading a message from another server; catching up from the store until it answers", "id", e.ID, "err", err)
			r.catchUpFrom(e.ID)
			return
		}
		if len(ms) == 1 && ms[0].ID == e.ID {
			r.s.deliver(ms[0])
		}
	}
}

// catchUpFrom makes sure a catch-up from id runs (see retry).
func (r *relay) catchUpFrom(id int64) { r.retry(id, time.Time{}) }

// retry makes sure a catch-up runs until the store answers: one goroutine,
// which delivers everything after the lowest missed id (id 0: none owed)
// and replays the edits and deletes made since the earliest time owed
// (zero: none), once a read succeeds.
func (r *relay) retry(id int64, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.oweLocked(id, since)
	if r.catching {
		return
	}
	r.catching = true
	r.s.wg.Go(func() {
		t := time.NewTicker(catchUpEvery)
		defer t.Stop()
		delivered, replayed := 0, 0
		for {
			select {
			case <-r.s.ctx.Done():
				return
			case <-t.C:
			}
			r.mu.Lock()
			missed, since := r.missed, r.changes
			r.missed, r.changes = 0, time.Time{}
			r.mu.Unlock()
			if missed != 0 {
				n, err := r.catchUp(missed - 1)
				delivered += n
				if err != nil {
					r.owe(missed, since)
					continue
				}
			}
			if !since.IsZero() {
				n, err := r.replayChanges(since)
				replayed += n
				if err != nil {
					r.owe(0, since)
					continue
				}
			}
			r.mu.Lock()
			if r.missed == 0 && r.changes.IsZero() {
				r.catching = false
				r.mu.Unlock()
				r.s.log.Info("relay: caught up after a failed store read", "delivered", delivered, "replayed", replayed)
				return
			}
			r.mu.Unlock() // missed again meanwhile: go on
		}
	})
}

// owe records a catch-up still to run, as retry takes it.
func (r *relay) owe(id int64, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.oweLocked(id, since)
}

func (r *relay) oweLocked(id int64, since time.Time) {
	if id != 0 && (r.missed == 0 || id < r.missed) {
		r.missed = id
	}
	if !since.IsZero() && (r.changes.IsZero() || since.Before(r.changes)) {
		r.changes = since
	}
}

// catchUp delivers what the store holds after id that this server has not
// delivered, and reports how many.
func (r *relay) catchUp(after int64) (int, error) {
	ctx, cancel := context.WithTimeout(r.s.ctx, 10*time.Second)
	defer cancel()
	n := 0
	for {
		ms, err := r.s.store.MessagesAfter(ctx, after, seenWindow)
		if err != nil {
			return n, err
		}
		for _, m := range ms {
			if !r.seenAlready(m.ID) {
				r.s.deliver(m)
				n++
			}
			after = m.ID
		}
		if len(ms) < seenWindow {
			return n, nil
		}
	}
}

// replayChanges delivers the edits and deletes made since since to the
// local sockets of their rooms' members, through deliverChange as a live
// notice's (relayEdit): the same membership rules. It reports how many.
// A message deleted before it was ever shown here is announced deleted
// too; clients ignore ids they do not show.
func (r *relay) replayChanges(since time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(r.s.ctx, 10*time.Second)
	defer cancel()
	ms, err := r.s.store.ChangedSince(ctx, since, replayLimit)
	if err != nil {
		return 0, err
	}
	if len(ms) == replayLimit {
		r.s.log.Warn("relay: more edits and deletes to replay than one replay carries; the older ones show on reload", "replayed", len(ms), "since", since)
	}
	for _, m := range ms {
		r.s.deliverChange(m)
	}
	return len(ms), nil
}

// setFloor records the newest id stored before this server subscribed to
// the bus. A catch-up never goes below it: what was stored before came to
// each socket in its history, and a server that has delivered nothing yet
// (high 0) would otherwise deliver the whole table live after a bus blip.
func (r *relay) setFloor(id int64) {
	r.mu.Lock()
	r.floor = id
	r.mu.Unlock()
}

// Resync implements bus.Handler: after the bus reconnected, deliver what
// other servers stored meanwhile, replay the edits and deletes they made
// meanwhile, and refresh the online list. Typing notices are not replayed:
// they are ephemeral, and one lost in the outage has expired anyway.
func (r *relay) Resync() {
	start := time.Now()
	// Membership first: a leave announced while the bus was down must
	// hold before the catch-up delivers what the room said meanwhile.
	r.s.members.reloadAll(r.s.ctx, r.s.cfg.StoreTimeout)
	r.mu.Lock()
	from := max(r.high-seenWindow, r.floor)
	r.mu.Unlock()
	// Edits and deletes have no id to count from: replay those made
	// since the bus was last known good. From now on it is good again;
	// a replay that fails below stays owed from since.
	since := time.Unix(0, r.good.Load()).Add(-replayMargin)
	r.markGood(start.UnixNano())
	n, err := r.catchUp(from)
	if err != nil {
		r.s.met.storeErrors.WithLabelValues("relay").Inc()
		r.s.log.Error("relay: catching up after a bus reconnect; trying again until the store answers", "err", err)
		r.retry(from+1, since)
		r.s.online.signal()
		return
	}
	replayed, err := r.replayChanges(since)
	if err != nil {
		r.s.met.storeErrors.WithLabelValues("relay").Inc()
		r.s.log.Error("relay: replaying edits and deletes after a bus reconnect; trying again until the store answers", "delivered", n, "err", err)
		r.retry(0, since)
	} else {
		r.s.log.Info("relay: caught up after a bus reconnect", "delivered", n, "replayed", replayed)
	}
	r.s.online.signal()
}
