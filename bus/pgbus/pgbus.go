// Package pgbus is the bus over PostgreSQL LISTEN/NOTIFY, for deployments
// whose servers already share one PostgreSQL: no extra service to run.
//
// NOTIFY payloads are limited to 8000 bytes; events here are ids of at most a
// few dozen bytes, and the data stays in its tables. One dedicated listener
// connection per server receives every notice; pq.Listener reconnects it
// after a database restart, and Resync lets the server catch up on what it
// missed meanwhile.
package pgbus

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/lib/pq"
)

// Channel is the NOTIFY channel the servers share.
const Channel = "chatd_events"

// Bus is a bus.Bus on PostgreSQL. It is safe for concurrent use.
type Bus struct {
	db  *sql.DB
	dsn string
	log *slog.Logger
	// ctx is canceled by Close: it ends Subscribe's probe.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	listener *pq.Listener  // guarded by mu; nil until Subscribe
	done     chan struct{} // closed under mu by Close
	late     bool          // guarded by mu: Subscribe returned before its LISTEN was confirmed
	wg       sync.WaitGroup
	listenWG sync.WaitGroup // the goroutine that runs LISTEN and the probe
}

var _ bus.Bus = (*Bus)(nil)

// New returns a bus that publishes through db and listens on a connection
// of its own to dsn.
func New(db *sql.DB, dsn string, log *slog.Logger) *Bus {
	ctx, cancel := context.WithCancel(context.Background())
	return &Bus{db: db, dsn: dsn, log: log, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

// Publish implements bus.Bus.
func (b *Bus) Publish(ctx context.Context, e bus.Event) error {
	payload, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := b.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, Channel, string(payload)); err != nil {
		return fmt.Errorf("pgbus: publish: %w", err)
	}
	return nil
}

// subscribeWait bounds how long Subscribe waits for its LISTEN to be
// confirmed.
var subscribeWait = 10 * time.Second // a variable for the tests

// probeKind is the kind of the event Subscribe publishes to confirm its
// LISTEN. No handler is given one: every bus drops them (and a server that
// does not know the kind ignores it).
const probeKind = "pgbus.subscribed"

// Subscribe implements bus.Bus. It returns once the listener's LISTEN is in
// effect, proven end to end: an event it publishes after LISTEN (a probe)
// came back through the listener, so every notice committed after Subscribe
// returns reaches h, or the connection dropped since and h is told to
// Resync. pq.Listener's Listen waits for a connection and runs LISTEN on it,
// but that is how pq happens to work (its documentation promises no more
// than "listening", a reconnect may lose the LISTEN's answer, and a database
// that does not answer makes it wait for ever); the probe does not depend on
// it. If no confirmation comes within subscribeWait (the database is down
// at start), Subscribe returns nil anyway, logs it, and h is told to Resync
// once the confirmation comes: what was published meanwhile is read from
// the database then.
func (b *Bus) Subscribe(h bus.Handler) error {
	var r [8]byte
	rand.Read(r[:])
	token := hex.EncodeToString(r[:])
	ready := make(chan struct{})
	l := pq.NewListener(b.dsn, 100*time.Millisecond, 2*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			b.log.Warn("bus listener disconnected", "err", err)
		case pq.ListenerEventReconnected:
			b.log.Info("bus listener reconnected")
		case pq.ListenerEventConnectionAttemptFailed:
			b.log.Debug("bus listener connect attempt failed", "err", err)
		}
	})
	b.mu.Lock()
	var refuse error
	select {
	case <-b.done:
		refuse = errors.New("pgbus: subscribe after Close")
	default:
		if b.listener != nil {
			refuse = errors.New("pgbus: already subscribed")
		}
	}
	if refuse != nil {
		b.mu.Unlock()
		l.Close()
		for range l.Notify {
		}
		return refuse
	}
	b.listener = l
	b.wg.Add(1) // under mu, so that Close cannot be waiting already
	b.listenWG.Add(1)
	b.mu.Unlock()
	go b.run(l, h, token, ready)
	go b.listen(l, token, ready)
	wait := time.NewTimer(subscribeWait)
	defer wait.Stop()
	select {
	case <-ready:
		return nil
	case <-b.done:
		return errors.New("pgbus: closed while subscribing")
	case <-wait.C:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-ready:
		return nil
	default:
	}
	b.late = true
	b.log.Warn("bus listener not confirmed yet: notices published until it is will be caught up from the database then")
	return nil
}

// listen runs LISTEN, then publishes the probe that confirms it (again
// while publishing fails), until the confirmation comes or Close.
func (b *Bus) listen(l *pq.Listener, token string, ready <-chan struct{}) {
	defer b.listenWG.Done()
	if err := l.Listen(Channel); err != nil {
		// net.ErrClosed: Close came first.
		if b.ctx.Err() == nil {
			b.log.Error("bus: listen", "err", err)
		}
		return
	}
	payload, _ := json.Marshal(bus.Event{Kind: probeKind, Origin: token})
	for retry := 100 * time.Millisecond; ; retry = min(2*retry, 2*time.Second) {
		ctx, cancel := context.WithTimeout(b.ctx, subscribeWait)
		_, err := b.db.ExecContext(ctx, `SELECT pg_notify($1, $2)`, Channel, string(payload))
		cancel()
		if err == nil {
			// It comes back, or the connection drops and the
			// reconnect confirms (run).
			select {
			case <-ready:
			case <-b.ctx.Done():
			}
			return
		}
		if b.ctx.Err() != nil {
			return
		}
		b.log.Debug("bus: publishing the listener's probe failed; retrying", "err", err)
		select {
		case <-ready:
			return
		case <-b.ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

func (b *Bus) run(l *pq.Listener, h bus.Handler, token string, ready chan struct{}) {
	defer b.wg.Done()
	confirmed := false
	// confirm marks the LISTEN confirmed and reports whether Subscribe
	// had returned without it.
	confirm := func() (late bool) {
		if confirmed {
			return false
		}
		confirmed = true
		b.mu.Lock()
		defer b.mu.Unlock()
		close(ready)
		return b.late
	}
	// A quiet connection can die without a word (a firewall, a hung
	// database); pinging finds out so the listener reconnects.
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-b.done:
			return
		case n, ok := <-l.Notify:
			if !ok {
				return
			}
			if n == nil {
				// pq sends nil after a reconnect, whose LISTEN is in
				// effect: notices may be lost.
				confirm()
				h.Resync()
				continue
			}
			var e bus.Event
			if err := json.Unmarshal([]byte(n.Extra), &e); err != nil {
				b.log.Warn("bus: ignoring malformed event", "err", err)
				continue
			}
			if e.Kind == probeKind {
				if e.Origin == token && confirm() {
					h.Resync()
				}
				continue
			}
			h.HandleEvent(e)
		case <-ping.C:
			go l.Ping()
		}
	}
}

// Close implements bus.Bus. It waits for a running handler call, so a
// handler must not call it; events not yet handled are dropped. Later calls
// do nothing. The db given to New stays open: Publish still works.
func (b *Bus) Close() error {
	b.mu.Lock()
	l := b.listener
	b.listener = nil
	select {
	case <-b.done:
	default:
		close(b.done)
	}
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	if l == nil {
		return nil
	}
	err := l.Close() // also ends a Listen still waiting for a connection
	// run no longer reads Notify, and pq's goroutines may be blocked
	// sending on it (the handler was behind): unblock them until pq
	// closes the channel, which it does once they have ended.
	for range l.Notify {
	}
	b.listenWG.Wait()
	return err
}
