package server

import (
	"context"
	"sync"
)

// online is the list of logged-in users that `get users` broadcasts. It
// counts sockets per user, so a user logged in from two tabs is listed once
// and stays listed until the last of those sockets leaves.
//
// Changes are broadcast by one goroutine (run), which always sends the
// newest list: concurrent logins can never leave clients holding an older
// list than the server's, and a burst of logins costs one broadcast rather
// than one per login.
type online struct {
	emit func(users []string)

	// changed wakes run; it has room for one signal so a change never blocks.
	changed chan struct{}

	mu sync.Mutex
	// Fields below are guarded by mu.
	counts  map[string]int
	order   []string      // usernames in order of first login, as the seed listed them
	version uint64        // bumped on every change of the list
	sent    uint64        // the newest version run has broadcast
	sentCh  chan struct{} // closed and replaced whenever sent advances
}

func newOnline(emit func(users []string)) *online {
	return &online{
		emit:    emit,
		changed: make(chan struct{}, 1),
		counts:  map[string]int{},
		sentCh:  make(chan struct{}),
	}
}

// add counts one more socket for user and returns the list version that
// includes it.
func (o *online) add(user string) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[user]++
	if o.counts[user] == 1 {
		o.order = append(o.order, user)
		o.changedLocked()
	}
	return o.version
}

// remove counts one socket less for user and returns the list version that
// reflects it.
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
	for i, u := range o.order {
		if u == user {
			o.order = append(o.order[:i], o.order[i+1:]...)
			break
		}
	}
	o.changedLocked()
	return o.version
}

func (o *online) changedLocked() {
	o.version++
	select {
	case o.changed <- struct{}{}:
	default: // run is already due to send; it will read the newest list
	}
}

// current returns the version of the list as it is now.
func (o *online) current() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.version
}

// list returns a copy of the online usernames.
func (o *online) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.listLocked()
}

func (o *online) listLocked() []string {
	return append([]string{}, o.order...)
}

// run broadcasts each change until ctx ends.
func (o *online) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.changed:
		}
		o.mu.Lock()
		users, v := o.listLocked(), o.version
		o.mu.Unlock()

		o.emit(users)

		o.mu.Lock()
		if v > o.sent {
			o.sent = v
			close(o.sentCh)
			o.sentCh = make(chan struct{})
		}
		o.mu.Unlock()
	}
}

// waitSent blocks until a list of version v or newer has been handed to
// every socket, so that a login's acknowledgement follows the `get users`
// that includes the new user.
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
