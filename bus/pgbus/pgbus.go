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
	"database/sql"
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

	mu       sync.Mutex
	listener *pq.Listener  // guarded by mu; nil until Subscribe
	done     chan struct{} // closed under mu by Close
	wg       sync.WaitGroup
}

var _ bus.Bus = (*Bus)(nil)

// New returns a bus that publishes through db and listens on a connection
// of its own to dsn.
func New(db *sql.DB, dsn string, log *slog.Logger) *Bus {
	return &Bus{db: db, dsn: dsn, log: log, done: make(chan struct{})}
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

// Subscribe implements bus.Bus.
// subscribeWait bounds how long Subscribe waits for the listener's first
// connection.
const subscribeWait = 10 * time.Second

func (b *Bus) Subscribe(h bus.Handler) error {
	select {
	case <-b.done:
		return errors.New("pgbus: subscribe after Close")
	default:
	}
	// pq connects in the background and runs LISTEN once connected, so
	// Listen returns before notices can arrive; only a reconnect is
	// followed by a nil notification (our Resync), not the first connect.
	// Subscribe waits for that first connection, so a server does not
	// miss what is published in its first moments.
	connected := make(chan struct{})
	var connectedOnce sync.Once
	l := pq.NewListener(b.dsn, 100*time.Millisecond, 2*time.Second, func(ev pq.ListenerEventType, err error) {
		if ev == pq.ListenerEventConnected || ev == pq.ListenerEventReconnected {
			connectedOnce.Do(func() { close(connected) })
		}
		switch ev {
		case pq.ListenerEventDisconnected:
			b.log.Warn("bus listener disconnected", "err", err)
		case pq.ListenerEventReconnected:
			b.log.Info("bus listener reconnected")
		case pq.ListenerEventConnectionAttemptFailed:
			b.log.Debug("bus listener connect attempt failed", "err", err)
		}
	})
	if err := l.Listen(Channel); err != nil {
		l.Close()
		return fmt.Errorf("pgbus: listen: %w", err)
	}
	select {
	case <-connected:
	case <-time.After(subscribeWait):
		b.log.Warn("bus listener not connected yet: notices published before it connects will be missed")
	}
	b.mu.Lock()
	select {
	case <-b.done:
		b.mu.Unlock()
		l.Close()
		for range l.Notify {
		}
		return errors.New("pgbus: subscribe after Close")
	default:
	}
	b.listener = l
	b.wg.Add(1) // under mu, so that Close cannot be waiting already
	b.mu.Unlock()
	go b.run(l, h)
	return nil
}

func (b *Bus) run(l *pq.Listener, h bus.Handler) {
	defer b.wg.Done()
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
				// pq sends nil after a reconnect: notices may be lost.
				h.Resync()
				continue
			}
			var e bus.Event
			if err := json.Unmarshal([]byte(n.Extra), &e); err != nil {
				b.log.Warn("bus: ignoring malformed event", "err", err)
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
	b.wg.Wait()
	if l == nil {
		return nil
	}
	err := l.Close()
	// run no longer reads Notify, and pq's goroutines may be blocked
	// sending on it (the handler was behind): unblock them until pq
	// closes the channel, which it does once they have ended.
	for range l.Notify {
	}
	return err
}
