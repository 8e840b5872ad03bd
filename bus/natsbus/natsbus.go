// Package natsbus is the bus over core NATS publish/subscribe, for
// deployments that run a NATS server beside the chat servers.
//
// Prefer it to PostgreSQL NOTIFY (package pgbus) when the bus, rather than
// the database, becomes the limit: NOTIFY funnels every event through one
// listener connection per chat server and the database's single notification
// queue, whose commits PostgreSQL serializes, and every listener reads every
// notice of the whole database. NATS moves that traffic off the database and
// scales out on its own (a cluster of servers, interest-based routing). Stay
// with pgbus for small deployments: it needs no extra service to run and
// secure.
//
// Events are JSON on one subject, core NATS (at most once, no persistence).
// The connection is retried forever with a short wait; events sent while it
// is down are lost, so the handler's Resync is called once it is back. The
// subscription buffers a bounded number of events; when the handler falls
// that far behind, NATS drops events, the bus logs the slow consumer and
// calls Resync too.
package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/nats-io/nats.go"
)

// Subject is the default subject the servers share.
const Subject = "chatd.events"

// Limits of the subscription's buffer of events not yet handled; past
// either, NATS drops events and the bus resyncs.
const (
	PendingEvents = 65536
	PendingBytes  = 16 << 20
)

const (
	reconnectWait = 250 * time.Millisecond
	// A quiet connection can die without a word; two missed pings find
	// out, so the client reconnects.
	pingInterval = 10 * time.Second
	drainTimeout = 5 * time.Second
)

// Bus is a bus.Bus on NATS. It is safe for concurrent use.
type Bus struct {
	nc      *nats.Conn
	subject string
	log     *slog.Logger

	events     chan bus.Event // from the subscription's goroutine to run
	resync     chan struct{}  // cap 1: the handler must catch up
	subscribed atomic.Bool
	closing    atomic.Bool
	connClosed chan struct{} // closed once nc is closed for good
	done       chan struct{} // closed by Close after the drain: run returns
	wg         sync.WaitGroup

	mu  sync.Mutex
	sub *nats.Subscription // guarded by mu; nil until Subscribe

	closeOnce sync.Once
}

var _ bus.Bus = (*Bus)(nil)

// New connects to the NATS server at url (a comma-separated list for a
// cluster) and returns a bus on subject, Subject unless each deployment
// needs its own. It fails if no server can be reached now; after that the
// bus reconnects forever. The caller must Close the bus.
func New(url, subject string, log *slog.Logger) (*Bus, error) {
	if subject == "" || strings.ContainsAny(subject, "*> \t\r\n") {
		return nil, fmt.Errorf("natsbus: invalid subject %q", subject)
	}
	b := &Bus{
		subject:    subject,
		log:        log,
		events:     make(chan bus.Event),
		resync:     make(chan struct{}, 1),
		connClosed: make(chan struct{}),
		done:       make(chan struct{}),
	}
	var closedOnce sync.Once
	nc, err := nats.Connect(url,
		nats.Name("chatd"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DrainTimeout(drainTimeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !b.closing.Load() {
				b.log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("bus reconnected", "server", nc.ConnectedUrlRedacted())
			b.needResync()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				var dropped int
				if sub != nil {
					dropped, _ = sub.Dropped()
				}
				b.log.Warn("bus: slow consumer, events dropped; resyncing", "dropped", dropped)
				b.needResync()
				return
			}
			b.log.Warn("bus error", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			closedOnce.Do(func() { close(b.connClosed) })
		}),
	)
	if err != nil {
		// Never log or return the URL: it may hold a password.
		return nil, fmt.Errorf("natsbus: connect: %w", err)
	}
	b.nc = nc
	return b, nil
}

// needResync asks run to call Resync, once however often it is asked
// before run gets to it.
func (b *Bus) needResync() {
	if !b.subscribed.Load() {
		return
	}
	select {
	case b.resync <- struct{}{}:
	default:
	}
}

// confirmWait bounds the wait for the server's confirmation when ctx has
// no deadline.
const confirmWait = 5 * time.Second

// Publish implements bus.Bus. It returns once the NATS server has the event:
// the client's Publish only queues it in the connection's buffer, written a
// moment later by another goroutine, so a crash in between (issue 14: a
// SIGKILL 2 ms after the acknowledgement) lost it for every other server.
// A PING sent after it and answered by the server confirms it (the server
// handles a connection's protocol in order, and has routed the event to
// every subscription before it answers): one round trip to the NATS server,
// concurrent publishes sharing none of them (measured in
// BenchmarkPublish: section "bus" of bench/RESULTS.md). While the
// connection is down the event is buffered for the reconnect but not
// confirmed: Publish fails when ctx (or
// confirmWait) ends, and the caller must treat the event as possibly lost
// (the chat server does not acknowledge the message; the client resends).
// It fails after Close.
func (b *Bus) Publish(ctx context.Context, e bus.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natsbus: publish: %w", err)
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := b.nc.Publish(b.subject, payload); err != nil {
		return fmt.Errorf("natsbus: publish: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, confirmWait)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("natsbus: publish not confirmed by the server: %w", err)
	}
	return nil
}

// Subscribe implements bus.Bus. h is called from one goroutine of the bus.
func (b *Bus) Subscribe(h bus.Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sub != nil {
		return errors.New("natsbus: already subscribed")
	}
	sub, err := b.nc.Subscribe(b.subject, b.deliver)
	if err != nil {
		return fmt.Errorf("natsbus: subscribe: %w", err)
	}
	if err := sub.SetPendingLimits(PendingEvents, PendingBytes); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("natsbus: subscribe: %w", err)
	}
	// The server has the subscription once a round trip is done: events
	// published by anyone after Subscribe returns are delivered. If the
	// connection is down, the client subscribes again on reconnecting and
	// Resync covers the gap.
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		b.log.Warn("bus: subscription not confirmed by the server", "err", err)
	}
	b.sub = sub
	b.subscribed.Store(true)
	b.wg.Add(1)
	go b.run(h)
	return nil
}

// deliver runs on the subscription's goroutine, one message at a time, and
// hands each event to run; NATS buffers the rest up to the pending limits.
func (b *Bus) deliver(m *nats.Msg) {
	var e bus.Event
	if err := json.Unmarshal(m.Data, &e); err != nil {
		b.log.Warn("bus: ignoring malformed event", "err", err)
		return
	}
	select {
	case b.events <- e:
	case <-b.done:
	}
}

// run calls h, one call at a time, until Close.
func (b *Bus) run(h bus.Handler) {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case e := <-b.events:
			h.HandleEvent(e)
		case <-b.resync:
			h.Resync()
		}
	}
}

// Close implements bus.Bus. It drains the connection: events already
// received are handled and events published are flushed to the server, for
// at most a few seconds; then the connection is closed and Close returns,
// after the last call to the handler. Close waits for a running handler
// call, so a handler must not call it. Later calls do nothing.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		if derr := b.nc.Drain(); derr != nil {
			// Reconnecting or already closed: Drain closed the
			// connection, nothing more to wait for.
			b.nc.Close()
		}
		select {
		case <-b.connClosed:
		case <-time.After(drainTimeout + time.Second):
			b.nc.Close()
		}
		close(b.done)
		b.wg.Wait()
	})
	return nil
}
