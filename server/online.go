package server

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/store"
)

// Presence timing: a server renews its heartbeat every presenceBeat, and a
// server silent for presenceStale is considered dead, its users off the
// list. Stale must exceed a beat plus a slow database round trip.
const (
	presenceBeat  = 2 * time.Second
	presenceStale = 6 * time.Second
)

// online is the list of logged-in users that `get users` broadcasts. It
// counts this server's sockets per user, so a user logged in from two tabs is
// listed once and stays listed until the last of those sockets leaves. The
// list comes from the store's presence (store.Presence): cluster-wide on a
// shared store, in memory on the embedded one, by the same code path.
//
// One goroutine (run) does everything that talks to the store or the
// sockets: it writes this server's changes to the presence table in order,
// reads the cluster's list and broadcasts it. Handlers only change counts
// under mu and wait for run. So writes for one user can never be reordered,
// concurrent logins never leave clients holding an older list than the
// server's, and a burst of logins costs one broadcast, not one per login.
type online struct {
	emit     func(users []string)
	presence store.Presence
	bus      bus.Bus
	serverID string
	log      *slog.Logger

	// wake has room for one signal, so signalling never blocks.
	wake chan struct{}

	mu sync.Mutex
	// Fields below are guarded by mu.
	counts  map[string]int
	order   []string      // local usernames in order of first login
	version uint64        // bumped on every local change
	force   bool          // a local change happened: broadcast even if the list looks the same
	sent    uint64        // the newest version run has finished with
	sentCh  chan struct{} // closed and replaced whenever sent advances
}

func newOnline(emit func([]string), presence store.Presence, b bus.Bus, serverID string, log *slog.Logger) *online {
	return &online{
		emit:     emit,
		presence: presence,
		bus:      b,
		serverID: serverID,
		log:      log,
		wake:     make(chan struct{}, 1),
		counts:   map[string]int{},
		sentCh:   make(chan struct{}),
	}
}

// add counts one more socket for user and returns the version to wait for.
func (o *online) add(user string) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[user]++
	if o.counts[user] == 1 {
		o.order = append(o.order, user)
	}
	// Every login broadcasts, as the seed did, so the socket that logs in
	// receives the list even when its user was already online.
	return o.changedLocked()
}

// remove counts one socket less for user and returns the version to wait for.
func (o *online) remove(user string) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, ok := o.counts[user]
	if !ok {
		return o.version
	}
	if n > 1 {
		o.counts[user] = n - 1
		return o.version
	}
	delete(o.counts, user)
	if i := slices.Index(o.order, user); i >= 0 {
		o.order = slices.Delete(o.order, i, i+1)
	}
	return o.changedLocked()
}

func (o *online) changedLocked() uint64 {
	o.version++
	o.force = true
	o.signal()
	return o.version
}

// list returns this server's logged-in users.
func (o *online) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.order)
}

// current returns the version of the local list as it is now.
func (o *online) current() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.version
}

// signal asks run for a pass; another server's change calls it too.
func (o *online) signal() {
	select {
	case o.wake <- struct{}{}:
	default: // a pass is already due; it will see the newest state
	}
}

// run owns presence writes and broadcasts until ctx ends.
func (o *online) run(ctx context.Context) {
	var (
		written  = map[string]bool{} // what the presence table holds for this server
		lastSent []string
		dbNow    time.Time // the database clock at the last heartbeat
	)
	beat := time.NewTicker(presenceBeat)
	defer beat.Stop()
	dbNow = o.heartbeat(ctx, dbNow)
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-beat.C:
			dbNow = o.heartbeat(ctx, dbNow)
		}
		o.mu.Lock()
		local, v, force := slices.Clone(o.order), o.version, o.force
		o.force = false
		o.mu.Unlock()

		users := local
		if o.sync(ctx, local, written) {
			o.publish(ctx)
		}
		if cluster, err := o.cluster(ctx, dbNow); err == nil {
			users = cluster
		} else {
			o.log.Warn("reading the online list; sending this server's users only", "err", err)
		}
		if force || !slices.Equal(users, lastSent) {
			o.emit(users)
			lastSent = users
		}

		o.mu.Lock()
		if v > o.sent {
			o.sent = v
			close(o.sentCh)
			o.sentCh = make(chan struct{})
		}
		o.mu.Unlock()
	}
}

// sync writes the difference between the local users and what the presence
// table holds for this server, and reports whether anything changed. A
// failed write is retried on the next pass.
func (o *online) sync(ctx context.Context, local []string, written map[string]bool) bool {
	changed := false
	want := make(map[string]bool, len(local))
	for _, u := range local {
		want[u] = true
		if !written[u] {
			if err := o.presence.AddPresence(ctx, o.serverID, u); err != nil {
				o.log.Warn("recording presence", "user", u, "err", err)
				continue
			}
			written[u] = true
			changed = true
		}
	}
	for u := range written {
		if !want[u] {
			if err := o.presence.RemovePresence(ctx, o.serverID, u); err != nil {
				o.log.Warn("removing presence", "user", u, "err", err)
				continue
			}
			delete(written, u)
			changed = true
		}
	}
	return changed
}

func (o *online) publish(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := o.bus.Publish(pctx, bus.Event{Kind: bus.KindPresence, Origin: o.serverID, Sent: time.Now().UnixNano()}); err != nil {
		o.log.Warn("announcing presence change", "err", err)
	}
}

func (o *online) heartbeat(ctx context.Context, prev time.Time) time.Time {
	hctx, cancel := context.WithTimeout(ctx, presenceBeat)
	defer cancel()
	now, err := o.presence.Heartbeat(hctx, o.serverID)
	if err != nil {
		o.log.Warn("presence heartbeat", "err", err)
		return prev
	}
	return now
}

func (o *online) cluster(ctx context.Context, dbNow time.Time) ([]string, error) {
	if dbNow.IsZero() {
		dbNow = time.Now()
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return o.presence.OnlineUsers(qctx, dbNow.Add(-presenceStale))
}

// forget removes this server from the presence table at shutdown, so its
// users leave the list at once rather than after presenceStale.
func (o *online) forget() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := o.presence.ForgetServer(ctx, o.serverID); err != nil {
		o.log.Warn("leaving the presence table", "err", err)
		return
	}
	o.publish(ctx)
}

// waitSent blocks until run has finished a pass that includes version v,
// so that a login's acknowledgement follows the `get users` with its user.
func (o *online) waitSent(ctx context.Context, v uint64) error {
	for {
		o.mu.Lock()
		done, ch := o.sent >= v, o.sentCh
		o.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
