package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/sqlite"
)

// openSQLite returns a fresh embedded store closed at the end of the test.
func openSQLite(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// mustAdd stores m directly, as another server (or the Node server) would.
func mustAdd(t testing.TB, st store.Store, m store.Message) store.Message {
	t.Helper()
	got, _, err := st.AddMessage(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func historyTexts(list any) []string {
	var out []string
	items, _ := list.([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		out = append(out, fmt.Sprint(m["msg"]))
	}
	return out
}

// TestSeedEventsAreGeneralOnly: a seed client (it knows only `load all
// messages`, `new message` and `load older messages`) sees general and
// nothing else: not a room's messages, in history, paging or live (also
// when another server announces them on the bus), and not deleted messages.
func TestSeedEventsAreGeneralOnly(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	for _, u := range []string{"alice", "bob"} {
		if err := st.CreateUser(ctx, store.User{Username: u, PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	room, err := st.CreateRoom(ctx, "secret plans", "alice")
	if err != nil {
		t.Fatal(err)
	}
	dm, err := st.DirectRoom(ctx, "alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, st, store.Message{Content: "general one", Username: "alice"})
	mustAdd(t, st, store.Message{Content: "in the room", Username: "alice", RoomID: room.ID})
	mustAdd(t, st, store.Message{Content: "in the dm", Username: "bob", RoomID: dm.ID})
	gone := mustAdd(t, st, store.Message{Content: "to be deleted", Username: "alice"})
	if _, _, err := st.DeleteMessage(ctx, gone.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, st, store.Message{Content: "general two", Username: "bob"})

	b := &memBus{}
	e := startServer(t, server.Config{Bus: b, ServerID: "A"}, st)
	c := e.connect(t, "seed", "websocket")
	_, hist := c.waitEvent("load all messages", nil)
	if got := historyTexts(hist[0]); fmt.Sprint(got) != "[general one general two]" {
		t.Errorf("history = %q, want general's two visible messages", got)
	}
	page := c.call("load older messages", map[string]any{"before": 1 << 40, "limit": 100})
	if got := historyTexts(page["messages"]); len(got) != 0 {
		t.Errorf("older page = %q, want nothing (all given already, none of the rest visible)", got)
	}

	// Live: another server stored a room message, a DM, a deleted one and
	// a general one, and announced them.
	for _, m := range []store.Message{
		{Content: "room live", Username: "alice", RoomID: room.ID},
		{Content: "dm live", Username: "alice", RoomID: dm.ID},
		{Content: "general live", Username: "alice"},
	} {
		m = mustAdd(t, st, m)
		b.Publish(ctx, bus.Event{Kind: bus.KindMessage, ID: m.ID, Origin: "other"})
	}
	c.waitEvent("new message", msgIs("general live", "alice"))
	// Nothing else arrives: a resync (catch-up from the store) delivers
	// none of the room's lines either.
	b.resync()
	time.Sleep(200 * time.Millisecond)
	for _, ev := range c.snapshot() {
		if ev.name == "new message" && !msgIs("general live", "alice")(ev.args) {
			t.Errorf("seed client got %v", ev.args)
		}
	}
}
