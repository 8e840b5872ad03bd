package server

import (
	"context"
	"sync"
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
// stored; the relay reads it from the store and delivers it here. When the
// read fails (the database is briefly unreachable), the message is not
// dropped: the relay catches up from the store, from the lowest id it
// missed, until a read succeeds.
type relay struct {
	s *Server

	mu sync.Mutex
	// Fields below are guarded by mu.
	seen     map[int64]struct{}
	ring     []int64 // seen ids in arrival order, to forget the oldest
	high     int64   // highest id seen
	floor    int64   // the newest id stored when this server started
	missed   int64   // lowest id whose read failed, 0 when none
	catching bool    // a catch-up goroutine is running
}

func newRelay(s *Server) *relay {
	return &relay{s: s, seen: make(map[int64]struct{}, seenWindow)}
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
		r.s.relayEdit(e.ID)
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

// catchUpFrom makes sure a catch-up from id runs: one goroutine, which
// reads everything after the lowest missed id once a read succeeds.
func (r *relay) catchUpFrom(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.missed == 0 || id < r.missed {
		r.missed = id
	}
	if r.catching {
		return
	}
	r.catching = true
	r.s.wg.Go(func() {
		t := time.NewTicker(catchUpEvery)
		defer t.Stop()
		for {
			select {
			case <-r.s.ctx.Done():
				return
			case <-t.C:
			}
			r.mu.Lock()
			from := r.missed - 1
			r.missed = 0
			r.mu.Unlock()
			n, err := r.catchUp(from)
			r.mu.Lock()
			if err != nil {
				if r.missed == 0 || from+1 < r.missed {
					r.missed = from + 1
				}
				r.mu.Unlock()
				continue
			}
			if r.missed == 0 {
				r.catching = false
				r.mu.Unlock()
				r.s.log.Info("relay: caught up after a failed store read", "delivered", n)
				return
			}
			r.mu.Unlock() // missed again meanwhile: go on
		}
	})
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
// other servers stored meanwhile, and refresh the online list.
func (r *relay) Resync() {
	// Membership first: a leave announced while the bus was down must
	// hold before the catch-up delivers what the room said meanwhile.
	r.s.members.reloadAll(r.s.ctx, r.s.cfg.StoreTimeout)
	r.mu.Lock()
	from := max(r.high-seenWindow, r.floor)
	r.mu.Unlock()
	n, err := r.catchUp(from)
	if err != nil {
		r.s.met.storeErrors.WithLabelValues("relay").Inc()
		r.s.log.Error("relay: catching up after a bus reconnect; trying again until the store answers", "err", err)
		r.catchUpFrom(from + 1)
	} else {
		r.s.log.Info("relay: caught up after a bus reconnect", "delivered", n)
	}
	r.s.online.signal()
}
