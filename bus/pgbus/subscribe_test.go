package pgbus

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/internal/testpg"
)

// switchProxy forwards TCP connections to PostgreSQL while up; while down
// it closes each connection it accepts, as a database not reachable yet.
type switchProxy struct {
	ln net.Listener
	up atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
}

func newSwitchProxy(t *testing.T, upstream string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.up.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

// recorder counts what a handler is given.
type recorder struct {
	mu      sync.Mutex
	events  []bus.Event
	resyncs int
}

func (r *recorder) HandleEvent(e bus.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) Resync() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resyncs++
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events), r.resyncs
}

// TestSubscribeBeforeDatabaseIsReachable: the listener cannot connect when
// Subscribe is called. Subscribe must return within its bound anyway (it
// used to wait in pq's Listen for ever, its own 10 s bound never reached),
// and an event published after it returned, before LISTEN could be in
// effect, must not be lost silently: once the listener connects and its
// LISTEN is confirmed, the handler is told to Resync (pq's first connection
// sends no nil notification, so nothing else would tell it).
func TestSubscribeBeforeDatabaseIsReachable(t *testing.T) {
	dsn := testpg.New(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newSwitchProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer func(w time.Duration) { subscribeWait = w }(subscribeWait)
	subscribeWait = 500 * time.Millisecond

	b := New(db, u.String(), slog.New(slog.DiscardHandler))
	defer b.Close()
	h := &recorder{}
	returned := make(chan error, 1)
	start := time.Now()
	go func() { returned <- b.Subscribe(h) }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Subscribe has not returned after 5 s with the database unreachable (its bound is %v)", subscribeWait)
	}
	t.Logf("Subscribe returned after %v with the database unreachable", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: 1, Origin: "other"}); err != nil {
		t.Fatal(err)
	}
	if n, resyncs := h.counts(); n != 0 || resyncs != 0 {
		t.Fatalf("before the listener connected: %d events, %d resyncs", n, resyncs)
	}
	p.up.Store(true)
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, resyncs := h.counts()
		if resyncs >= 1 {
			t.Logf("Resync %v after Subscribe was called, once the database was reachable (%d events)", time.Since(start).Round(time.Millisecond), n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Resync within 15 s of the listener being able to connect (%d events): the event published before its LISTEN is lost", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// And from now on events flow.
	if err := b.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: 2, Origin: "other"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		h.mu.Lock()
		var got bool
		for _, e := range h.events {
			got = got || e.ID == 2
		}
		h.mu.Unlock()
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("event 2 not delivered after the listener connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
