package server

import (
	"context"
	"sync"
	"time"

	"github.com/chatd/chat/bus"
)

// seenWindow is how many recent message ids the relay remembers, and how
// far back a resync looks: ids are allotted before commit, so a message can
// become visible after a higher one; the window covers that reordering.
const seenWindow = 4096

// relay is the bus handler: it delivers messages stored by other servers to
// this server's sockets, exactly once each, and passes on presence changes.
type relay struct {
	s *Server

	mu sync.Mutex
	// Fields below are guarded by mu.
	seen map[int64]struct{}
	ring []int64 // seen ids in arrival order, to forget the oldest
	high int64   // highest id seen
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
	case bus.KindMessage:
		if r.seenAlready(e.ID) {
			// Announced again (a resend): delivered here already.
			return
		}
		ctx, cancel := context.WithTimeout(r.s.ctx, r.s.cfg.StoreTimeout)
		defer cancel()
		ms, err := r.s.store.MessagesAfter(ctx, e.ID-1, 1)
		if err != nil {
			r.s.log.Error("relay: reading a message from another server", "id", e.ID, "err", err)
			return
		}
		if len(ms) == 1 && ms[0].ID == e.ID && r.markSeen(e.ID) {
			r.s.hub.broadcast(ms[0])
		}
	}
}

// Resync implements bus.Handler: after the bus reconnected, deliver what
// other servers stored meanwhile, and refresh the online list.
func (r *relay) Resync() {
	r.mu.Lock()
	from := max(r.high-seenWindow, 0)
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.s.ctx, 10*time.Second)
	defer cancel()
	ms, err := r.s.store.MessagesAfter(ctx, from, 2*seenWindow)
	if err != nil {
		r.s.log.Error("relay: catching up after a bus reconnect", "err", err)
		return
	}
	n := 0
	for _, m := range ms {
		if r.markSeen(m.ID) {
			r.s.hub.broadcast(m)
			n++
		}
	}
	r.s.log.Info("relay: caught up after a bus reconnect", "delivered", n)
	r.s.online.signal()
}
