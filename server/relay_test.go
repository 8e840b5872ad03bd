package server_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/sqlite"
)

// memBus is a bus between servers in one process: every event reaches
// every subscriber, in order, on one goroutine per subscriber.
type memBus struct {
	mu       sync.Mutex
	subs     []chan bus.Event
	handlers []bus.Handler
}

// resync tells every subscriber that its bus connection came back.
func (b *memBus) resync() {
	b.mu.Lock()
	hs := b.handlers
	b.mu.Unlock()
	for _, h := range hs {
		h.Resync()
	}
}

func (b *memBus) Publish(_ context.Context, e bus.Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.subs {
		c <- e
	}
	return nil
}

func (b *memBus) Subscribe(h bus.Handler) error {
	c := make(chan bus.Event, 1024)
	b.mu.Lock()
	b.subs = append(b.subs, c)
	b.handlers = append(b.handlers, h)
	b.mu.Unlock()
	go func() {
		for e := range c {
			h.HandleEvent(e)
		}
	}()
	return nil
}

func (b *memBus) Close() error { return nil }

// readFails is a store whose reads of messages by id fail while failures
// is positive: the database unreachable for a moment, for one server.
type readFails struct {
	store.Store
	failures atomic.Int32
}

func (s *readFails) MessagesAfter(ctx context.Context, after int64, limit int) ([]store.Message, error) {
	if s.failures.Add(-1) >= 0 {
		return nil, errors.New("connection refused (test)")
	}
	return s.Store.MessagesAfter(ctx, after, limit)
}

// TestRelayCatchesUpAfterFailedRead: a message stored on server A reaches
// the users of server B even when B's store read of it fails (twice): B
// catches up from the store instead of dropping the message.
func TestRelayCatchesUpAfterFailedRead(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := &memBus{}
	flaky := &readFails{Store: st}
	a := startServer(t, server.Config{Bus: b, ServerID: "A"}, st)
	bsrv := startServer(t, server.Config{Bus: b, ServerID: "B"}, flaky)

	sender := a.connect(t, "sender", "websocket")
	wantAck(t, "register", sender.call("register", creds("ann", "pw")), success)
	wantAck(t, "login", sender.call("login", creds("ann", "pw")), success)
	reader := bsrv.connect(t, "reader", "websocket")
	reader.waitEvent("load all messages", nil)

	flaky.failures.Store(2)
	wantAck(t, "send", sender.call("send message", "through a failed read"), success)
	reader.waitEvent("new message", msgIs("through a failed read", "ann"))
	if n := reader.count("new message"); n != 1 {
		t.Errorf("reader got the message %d times", n)
	}
	// The line follows the delivery: wait for it rather than race it.
	for deadline := time.Now().Add(waitFor); !strings.Contains(bsrv.logs.String(), "caught up after a failed store read"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("B did not log its catch-up:\n%s", bsrv.logs.String())
		}
	}
}

// TestResyncDeliversNothingOld: after a bus reconnect, a server catches up
// on what other servers stored meanwhile, and nothing else: not the
// messages stored before it started, which its sockets have in their
// history (or can page), even when it has delivered nothing live yet.
func TestResyncDeliversNothingOld(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i := range 300 {
		if _, _, err := st.AddMessage(context.Background(), store.Message{Content: fmt.Sprint("old ", i), Username: "old"}); err != nil {
			t.Fatal(err)
		}
	}
	b := &memBus{}
	e := startServer(t, server.Config{Bus: b, ServerID: "A"}, st)
	viewer := e.connect(t, "viewer", "websocket")
	viewer.waitEvent("load all messages", nil)
	// Stored by another server while this one's bus was down.
	if _, _, err := st.AddMessage(context.Background(), store.Message{Content: "missed", Username: "other"}); err != nil {
		t.Fatal(err)
	}
	b.resync()
	viewer.waitEvent("new message", msgIs("missed", "other"))
	time.Sleep(200 * time.Millisecond)
	if n := viewer.count("new message"); n != 1 {
		t.Errorf("after a resync the viewer got %d messages live, want only the 1 stored meanwhile", n)
	}
}
