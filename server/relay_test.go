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
	down     map[int]bool // subscribers (by order of Subscribe) cut off
}

// cut takes subscriber i's connection down (or brings it back): what is
// published meanwhile never reaches it, as with a real bus. Bring it back,
// then resync.
func (b *memBus) cut(i int, down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down == nil {
		b.down = map[int]bool{}
	}
	b.down[i] = down
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
	for i, c := range b.subs {
		if !b.down[i] {
			c <- e
		}
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

// isChange matches a `message edited` or `message deleted` of message id
// showing text.
func isChange(id any, text string) func([]any) bool {
	return func(args []any) bool { return msgField(args, "id") == id && msgField(args, "msg") == text }
}

// TestResyncReplaysEditsAndDeletes: a message edited and one deleted on
// server B while A's bus connection is down reach A's live sockets when it
// comes back, as the notices would have (a room's edit to its members
// only), instead of showing only after a reload.
func TestResyncReplaysEditsAndDeletes(t *testing.T) {
	st := openSQLite(t)
	b := &memBus{}
	a := startServer(t, server.Config{Bus: b, ServerID: "A"}, st) // subscriber 0
	bs := startServer(t, server.Config{Bus: b, ServerID: "B"}, st)
	alice := bs.user(t, "r_alice")
	viewer := a.connect(t, "viewer", "websocket")
	viewer.waitEvent("load all messages", nil)
	bob, carol := a.user(t, "r_bob"), a.user(t, "r_carol")
	room := roomIDOf(t, alice.call("create room", map[string]any{"name": "replayed"}))
	wantAck(t, "bob joins on A", bob.call("join room", map[string]any{"room": room}), success)
	typo := alice.call("send message", "helo")["id"]
	doomed := alice.call("send message", "regrettable")["id"]
	inRoom := alice.call("send room message", map[string]any{"room": room, "msg": "in the room"})["id"]
	viewer.waitEvent("new message", msgIs("regrettable", "r_alice"))
	bob.waitEvent("room message", roomMsgIs(room, "in the room"))

	b.cut(0, true)
	wantAck(t, "edit", alice.call("edit message", map[string]any{"message": typo, "msg": "hello"}), success)
	wantAck(t, "delete", alice.call("delete message", map[string]any{"message": doomed}), success)
	wantAck(t, "edit in the room", alice.call("edit message", map[string]any{"message": inRoom, "msg": "in the room, edited"}), success)
	alice.waitEvent("message edited", isChange(inRoom, "in the room, edited"))
	b.cut(0, false)
	b.resync()

	for _, c := range []*tclient{viewer, bob, carol} {
		c.waitEvent("message edited", isChange(typo, "hello"))
		c.waitEvent("message deleted", isChange(doomed, ""))
	}
	bob.waitEvent("message edited", isChange(inRoom, "in the room, edited"))
	// Nobody outside the room heard of its edit.
	fence(t, alice, "replay fence", viewer, carol)
	for _, c := range []*tclient{viewer, carol} {
		if gotText(c, "message edited", "in the room, edited") {
			t.Errorf("%s got the edit of a room it is not in", c.name)
		}
	}
	if !strings.Contains(a.logs.String(), "replayed=") {
		t.Errorf("A did not log how many changes it replayed:\n%s", a.logs.String())
	}
}

// messageFails is a store whose reads of one message fail while failures
// is positive.
type messageFails struct {
	store.Store
	failures atomic.Int32
}

func (s *messageFails) Message(ctx context.Context, id int64) (store.Message, error) {
	if s.failures.Add(-1) >= 0 {
		return store.Message{}, errors.New("connection refused (test)")
	}
	return s.Store.Message(ctx, id)
}

// TestRelayReplaysEditAfterFailedRead: an edit made on server B reaches
// the sockets of server A even when A's read of the edited message fails:
// A replays the changes from the store instead of dropping the edit.
func TestRelayReplaysEditAfterFailedRead(t *testing.T) {
	st := openSQLite(t)
	b := &memBus{}
	flaky := &messageFails{Store: st}
	a := startServer(t, server.Config{Bus: b, ServerID: "A"}, flaky)
	bs := startServer(t, server.Config{Bus: b, ServerID: "B"}, st)
	alice := bs.user(t, "f_alice")
	viewer := a.connect(t, "viewer", "websocket")
	viewer.waitEvent("load all messages", nil)
	id := alice.call("send message", "helo")["id"]
	viewer.waitEvent("new message", msgIs("helo", "f_alice"))

	flaky.failures.Store(1)
	wantAck(t, "edit", alice.call("edit message", map[string]any{"message": id, "msg": "hello"}), success)
	viewer.waitEvent("message edited", isChange(id, "hello"))
	for deadline := time.Now().Add(waitFor); !strings.Contains(a.logs.String(), "caught up after a failed store read"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("A did not log its replay:\n%s", a.logs.String())
		}
	}
}
