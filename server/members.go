package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/chatd/chat/store"
)

// memberships knows which rooms (other than general) this server's
// logged-in users are in, and from that which of its sockets a room's
// messages go to: a message to a room of 10 members costs 10 deliveries
// (fewer when some are on other servers), whatever the number of sockets
// connected. It is the one owner of that index.
//
// Where it comes from: at login (or a resumed session) the user's rooms are
// read from the store (load) before the login is answered. A join or leave
// through this server is applied at once (joined, left); one through
// another server arrives as a bus notice (bus.KindMember), is applied at
// once too, and the user's rooms are then read again from the store
// (markStale and run), so notices that cross on the bus cannot leave a
// wrong set for long. After a bus reconnect every local user is read again.
//
// Why an index kept by notices rather than asking the store at each
// delivery: membership changes are rare next to messages. Asking costs a
// query per room message on every server (store.Members for a room of 10:
// 425 µs on PostgreSQL over loopback on the 2-core test machine, against
// a small fraction of that for the whole in-memory delivery to those 10,
// BenchmarkRoomFanout in section "room" of bench/RESULTS.md; the relay's
// own read of the message is 219 µs), and the answer grows
// with the room. The price is a window as long as the bus's latency in
// which another server still delivers to a user who just left a public
// room (whose lines anyone may read by joining), and in which the user's
// sockets on other servers do not yet get a room they just joined (the
// lines are in the room's history when those tabs open it; CI caught a
// test sending in that window); direct rooms never change members, so
// nothing private depends on it.
//
// A load races with notices: a load that read the store before a notice
// arrived must not install what it read over the notice. Each user carries
// a generation, bumped by every change; a load installs only if the
// generation did not move while it read, and reads again otherwise.
//
// Lock order: a conn's mu may be held when calling attach and detach (conn
// bind and close do), never the other way round; no method holds mu while
// calling the store or writing to a socket.
type memberships struct {
	store store.Rooms
	log   *slog.Logger
	// changed is told which local sockets' room lists changed (rooms
	// changed event); set before use, may be nil.
	changed func(conns []*conn)
	wake    chan struct{}

	// mu is a read-write lock: every delivery of a room's event reads
	// (recipients, in), changes are rare.
	mu sync.RWMutex
	// Fields below are guarded by mu.
	users map[string]*userRooms        // local logged-in users
	rooms map[int64]map[*conn]struct{} // room -> local sockets of its members
	stale map[string]struct{}          // users whose rooms run must read again
}

// userRooms is one local user: their sockets here and their rooms.
type userRooms struct {
	conns map[*conn]struct{}
	rooms map[int64]struct{}
	gen   uint64
	// loaded: the rooms were read once; changes after that are news
	// for the sockets (rooms changed), the first reading is not.
	loaded bool
}

func newMemberships(st store.Rooms, log *slog.Logger) *memberships {
	return &memberships{
		store: st,
		log:   log,
		wake:  make(chan struct{}, 1),
		users: map[string]*userRooms{},
		rooms: map[int64]map[*conn]struct{}{},
		stale: map[string]struct{}{},
	}
}

// attach adds c as a socket of user: from now on it receives the messages
// of user's rooms, as far as they are known (load completes them).
func (ms *memberships) attach(c *conn, user string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	u := ms.users[user]
	if u == nil {
		u = &userRooms{conns: map[*conn]struct{}{}, rooms: map[int64]struct{}{}}
		ms.users[user] = u
	}
	u.conns[c] = struct{}{}
	for r := range u.rooms {
		ms.addLocked(r, c)
	}
}

// detach removes c, a socket of user: it receives no room's messages any
// more. A user with no socket left is forgotten.
func (ms *memberships) detach(c *conn, user string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	u := ms.users[user]
	if u == nil {
		return
	}
	delete(u.conns, c)
	for r := range u.rooms {
		ms.removeLocked(r, c)
	}
	if len(u.conns) == 0 {
		delete(ms.users, user)
		delete(ms.stale, user)
	}
}

func (ms *memberships) addLocked(room int64, c *conn) {
	set := ms.rooms[room]
	if set == nil {
		set = map[*conn]struct{}{}
		ms.rooms[room] = set
	}
	set[c] = struct{}{}
}

func (ms *memberships) removeLocked(room int64, c *conn) {
	if set := ms.rooms[room]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(ms.rooms, room)
		}
	}
}

// recipients returns the local sockets of room's members.
func (ms *memberships) recipients(room int64) []*conn {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	set := ms.rooms[room]
	out := make([]*conn, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	return out
}

// in reports whether user, logged in here, is in room as far as this
// server knows.
func (ms *memberships) in(user string, room int64) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	u := ms.users[user]
	if u == nil {
		return false
	}
	_, ok := u.rooms[room]
	return ok
}

// set applies a join (in true) or leave of user in room to the local
// sockets, if user has any here, and reports them when something changed.
func (ms *memberships) set(user string, room int64, in bool) []*conn {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	u := ms.users[user]
	if u == nil {
		return nil
	}
	u.gen++
	_, was := u.rooms[room]
	if was == in {
		return nil
	}
	if in {
		u.rooms[room] = struct{}{}
	} else {
		delete(u.rooms, room)
	}
	conns := make([]*conn, 0, len(u.conns))
	for c := range u.conns {
		if in {
			ms.addLocked(room, c)
		} else {
			ms.removeLocked(room, c)
		}
		conns = append(conns, c)
	}
	return conns
}

// apply is set, then telling the sockets whose list changed.
func (ms *memberships) apply(user string, room int64, in bool) {
	if conns := ms.set(user, room, in); len(conns) > 0 && ms.changed != nil {
		ms.changed(conns)
	}
}

// notice applies a membership change made on another server, then has the
// user's rooms read again from the store.
func (ms *memberships) notice(user string, room int64, left bool) {
	ms.apply(user, room, !left)
	ms.mu.Lock()
	if _, here := ms.users[user]; here {
		ms.stale[user] = struct{}{}
	}
	ms.mu.Unlock()
	ms.poke()
}

// reloadAll reads every local user's rooms again, now (after a bus
// reconnect: notices may have been lost). Those it cannot read are left
// to run.
func (ms *memberships) reloadAll(ctx context.Context, timeout time.Duration) {
	ms.mu.Lock()
	users := make([]string, 0, len(ms.users))
	for u := range ms.users {
		users = append(users, u)
	}
	ms.mu.Unlock()
	for _, u := range users {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		settled, _ := ms.loadOnce(lctx, u)
		cancel()
		if !settled {
			ms.markStale(u)
		}
	}
}

func (ms *memberships) poke() {
	select {
	case ms.wake <- struct{}{}:
	default:
	}
}

// load reads user's rooms from the store and installs them, reading again
// if a change arrived meanwhile. When the store cannot answer, run tries
// again later; until then the user receives what is known of their rooms.
func (ms *memberships) load(ctx context.Context, user string) error {
	settled, err := ms.loadOnce(ctx, user)
	if !settled {
		ms.markStale(user)
	}
	return err
}

// markStale has run read user's rooms again.
func (ms *memberships) markStale(user string) {
	ms.mu.Lock()
	if ms.users[user] != nil {
		ms.stale[user] = struct{}{}
	}
	ms.mu.Unlock()
	ms.poke()
}

// loadOnce reads and installs user's rooms, up to three times while
// changes keep arriving, and reports whether it settled.
func (ms *memberships) loadOnce(ctx context.Context, user string) (bool, error) {
	for range 3 {
		ms.mu.Lock()
		u := ms.users[user]
		if u == nil {
			ms.mu.Unlock()
			return true, nil // logged out meanwhile
		}
		gen := u.gen
		ms.mu.Unlock()
		// MemberRooms, not ListRooms: it is read at every login and every
		// resumed session (all of a failed server's users at once), and
		// ListRooms also counts unread messages (3.8 ms on PostgreSQL for
		// a user in 5 busy rooms, against 0.3 ms).
		ids, err := ms.store.MemberRooms(ctx, user)
		if err != nil {
			return false, err
		}
		rooms := make(map[int64]struct{}, len(ids))
		for _, id := range ids {
			if !isGeneral(id) {
				rooms[id] = struct{}{}
			}
		}
		if done, conns := ms.install(user, gen, rooms); done {
			if len(conns) > 0 && ms.changed != nil {
				ms.changed(conns)
			}
			return true, nil
		}
	}
	return false, nil
}

// install replaces user's rooms with rooms, read at generation gen, unless
// a change came since. It reports whether it did, and the user's sockets
// when the set changed.
func (ms *memberships) install(user string, gen uint64, rooms map[int64]struct{}) (bool, []*conn) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	u := ms.users[user]
	if u == nil {
		return true, nil
	}
	if u.gen != gen {
		return false, nil
	}
	same := len(rooms) == len(u.rooms)
	for r := range u.rooms {
		if _, keep := rooms[r]; !keep {
			same = false
			for c := range u.conns {
				ms.removeLocked(r, c)
			}
		}
	}
	for r := range rooms {
		if _, had := u.rooms[r]; !had {
			same = false
			for c := range u.conns {
				ms.addLocked(r, c)
			}
		}
	}
	u.rooms = rooms
	first := !u.loaded
	u.loaded = true
	if same || first {
		return true, nil
	}
	conns := make([]*conn, 0, len(u.conns))
	for c := range u.conns {
		conns = append(conns, c)
	}
	return true, conns
}

// run reads again the rooms of the users marked stale, until ctx ends;
// a failed read is retried a second later.
func (ms *memberships) run(ctx context.Context, timeout time.Duration) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var later []string // not settled: tried again when retry fires
	for {
		select {
		case <-ctx.Done():
			return
		case <-ms.wake:
		case <-retry.C:
		}
		ms.mu.Lock()
		users := make([]string, 0, len(ms.stale))
		for u := range ms.stale {
			users = append(users, u)
		}
		clear(ms.stale)
		ms.mu.Unlock()
		users = append(users, later...)
		later = later[:0]
		var firstErr error
		for _, u := range users {
			lctx, cancel := context.WithTimeout(ctx, timeout)
			settled, err := ms.loadOnce(lctx, u)
			cancel()
			if !settled {
				later = append(later, u)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if len(later) > 0 {
			if firstErr != nil {
				ms.log.Warn("reading users' rooms failed; trying again in a second", "users", len(later), "err", firstErr)
			}
			retry.Reset(time.Second)
		}
	}
}
