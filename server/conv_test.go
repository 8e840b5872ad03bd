package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chat/bus"
	"github.com/chatd/chat/internal/testpg"
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

// user connects a client to e, registers name (unless taken) and logs in.
func (e *env) user(t testing.TB, name string) *tclient {
	t.Helper()
	c := e.connect(t, name, "websocket")
	c.waitEvent("load all messages", nil)
	c.call("register", creds(name, "pw"))
	wantAck(t, "login "+name, c.call("login", creds(name, "pw")), success)
	return c
}

func refusal(text string) map[string]any { return map[string]any{"success": false, "message": text} }

const noRoom = "No such room, or you are not a member of it"

// roomIDOf returns the room id in a create/join answer.
func roomIDOf(t testing.TB, ack map[string]any) float64 {
	t.Helper()
	r, _ := ack["room"].(map[string]any)
	id, _ := r["id"].(float64)
	if id <= 0 {
		t.Fatalf("answer %v carries no room id", ack)
	}
	return id
}

// roomMsgIs matches a `room message` of text in room.
func roomMsgIs(room float64, text string) func([]any) bool {
	return func(args []any) bool {
		if len(args) == 0 {
			return false
		}
		m, _ := args[0].(map[string]any)
		return m["msg"] == text && m["room"] == room
	}
}

// gotText reports whether c received an event named name whose msg is text.
func gotText(c *tclient, name, text string) bool {
	for _, ev := range c.snapshot() {
		if ev.name != name || len(ev.args) == 0 {
			continue
		}
		if m, _ := ev.args[0].(map[string]any); m["msg"] == text {
			return true
		}
	}
	return false
}

// fence sends a general message from c and waits until every client in
// watchers has it: whatever was delivered before it, on the same path,
// has arrived too.
func fence(t testing.TB, from *tclient, text string, watchers ...*tclient) {
	t.Helper()
	wantAck(t, "fence", from.call("send message", text), success)
	for _, w := range watchers {
		w.waitEvent("new message", func(args []any) bool {
			m, _ := args[0].(map[string]any)
			return m["msg"] == text
		})
	}
}

func TestRooms(t *testing.T) {
	testRooms(t, startServer(t, server.Config{}, nil))
}

func testRooms(t *testing.T, e *env) {
	alice, bob, carol := e.user(t, "alice"), e.user(t, "bob"), e.user(t, "carol")
	anon := e.connect(t, "anon", "websocket")
	anon.waitEvent("load all messages", nil)

	// Names: the store's rule, unique without regard to case.
	created := alice.call("create room", map[string]any{"name": "  Gophers "})
	wantAck(t, "create", created, success)
	room := roomIDOf(t, created)
	if r := created["room"].(map[string]any); r["name"] != "Gophers" || r["kind"] != "public" {
		t.Errorf("created room = %v", r)
	}
	for _, tc := range []struct {
		name string
		arg  any
		want string
	}{
		{"taken, other case", map[string]any{"name": "gOPHERS"}, "A room with that name already exists"},
		{"empty", map[string]any{"name": "   "}, "Room name is empty"},
		{"too long", map[string]any{"name": strings.Repeat("é", 65)}, "Room name is longer than 64 characters"},
		{"control", map[string]any{"name": "a\nb"}, "Room name contains a control character"},
		{"not text", map[string]any{"name": 5}, "Expected {name: room name}"},
		{"no object", "Gophers2", "Expected {name: room name}"},
	} {
		wantAck(t, "create: "+tc.name, alice.call("create room", tc.arg), refusal(tc.want))
	}
	wantAck(t, "create anonymously", anon.call("create room", map[string]any{"name": "x"}), refusal("Not logged in"))

	wantAck(t, "bob joins", bob.call("join room", map[string]any{"room": room}), success)
	wantAck(t, "join unknown", bob.call("join room", map[string]any{"room": 999999}), refusal(noRoom))
	wantAck(t, "join bad", bob.call("join room", map[string]any{"room": "1"}), refusal("Expected {room: room id}"))

	sent := alice.call("send room message", map[string]any{"room": room, "msg": "hello gophers", "id": "k1"})
	wantAck(t, "send to room", sent, map[string]any{"success": true, "room": room})
	alice.waitEvent("room message", roomMsgIs(room, "hello gophers"))
	bob.waitEvent("room message", roomMsgIs(room, "hello gophers"))
	again := alice.call("send room message", map[string]any{"room": room, "msg": "hello gophers", "id": "k1"})
	wantAck(t, "resend", again, map[string]any{"success": true, "id": sent["id"]})
	wantAck(t, "carol sends to a room she is not in", carol.call("send room message", map[string]any{"room": room, "msg": "let me in"}), refusal(noRoom))
	wantAck(t, "send to unknown room", alice.call("send room message", map[string]any{"room": 424242, "msg": "x"}), refusal(noRoom))
	wantAck(t, "send blank", alice.call("send room message", map[string]any{"room": room, "msg": "  "}), refusal("Message must not be empty"))
	wantAck(t, "send overlong", alice.call("send room message", map[string]any{"room": room, "msg": strings.Repeat("x", 2001)}), refusal("Message is 2001 characters; the limit is 2000"))

	// History and paging: members only.
	for i := range 5 {
		wantAck(t, "send", alice.call("send room message", map[string]any{"room": room, "msg": fmt.Sprint("line ", i)}), success)
	}
	hist := bob.call("room history", map[string]any{"room": room, "limit": 3})
	wantAck(t, "history", hist, success)
	if got := historyTexts(hist["messages"]); fmt.Sprint(got) != "[line 2 line 3 line 4]" {
		t.Errorf("history = %q", got)
	}
	first := hist["messages"].([]any)[0].(map[string]any)["id"]
	older := bob.call("room history", map[string]any{"room": room, "before": first, "limit": 3})
	if got := historyTexts(older["messages"]); fmt.Sprint(got) != "[hello gophers line 0 line 1]" {
		t.Errorf("older page = %q", got)
	}
	wantAck(t, "carol reads", carol.call("room history", map[string]any{"room": room}), refusal(noRoom))
	wantAck(t, "anon reads", anon.call("room history", map[string]any{"room": room}), refusal(noRoom))
	wantAck(t, "anyone reads general", anon.call("room history", map[string]any{"room": 1}), success)

	// Leaving stops delivery at once.
	wantAck(t, "bob leaves", bob.call("leave room", map[string]any{"room": room}), success)
	wantAck(t, "send after leave", alice.call("send room message", map[string]any{"room": room, "msg": "bob is gone"}), success)
	wantAck(t, "leave general", bob.call("leave room", map[string]any{"room": 1}), refusal("You cannot leave this room"))
	fence(t, alice, "fence 1", alice, bob, carol, anon)
	if gotText(bob, "room message", "bob is gone") {
		t.Error("bob got a room message after leaving")
	}

	// The list: public rooms for everyone, membership and unread counts.
	list := bob.call("list rooms")
	wantAck(t, "list", list, success)
	var sawRoom, sawGeneral bool
	for _, it := range list["rooms"].([]any) {
		r := it.(map[string]any)
		switch r["id"] {
		case float64(1):
			sawGeneral = r["member"] == true
		case room:
			sawRoom = r["member"] == false
		}
	}
	if !sawRoom || !sawGeneral {
		t.Errorf("bob's list %v: want general (member) and Gophers (not a member)", list["rooms"])
	}

	// Nobody outside the room saw a line of it, and `new message` never
	// carried one.
	for _, c := range []*tclient{carol, anon, alice, bob} {
		for _, ev := range c.snapshot() {
			if ev.name == "new message" && strings.Contains(fmt.Sprint(ev.args), "line") {
				t.Errorf("%s: new message carried a room's line: %v", c.name, ev.args)
			}
			if (c == carol || c == anon) && ev.name == "room message" {
				t.Errorf("%s received %v", c.name, ev.args)
			}
		}
	}
}

func TestDirectMessages(t *testing.T) {
	testDirectMessages(t, startServer(t, server.Config{}, nil))
}

func testDirectMessages(t *testing.T, e *env) {
	alice, bob, carol := e.user(t, "dm_alice"), e.user(t, "dm_bob"), e.user(t, "dm_carol")
	sent := alice.call("send direct message", map[string]any{"to": "dm_bob", "msg": "psst"})
	wantAck(t, "dm", sent, map[string]any{"success": true, "peer": "dm_bob"})
	room, _ := sent["room"].(float64)
	if room <= 1 {
		t.Fatalf("dm answer %v: want the direct room's id", sent)
	}
	bob.waitEvent("room message", roomMsgIs(room, "psst"))
	alice.waitEvent("room message", roomMsgIs(room, "psst"))
	bob.waitEvent("rooms changed", nil)
	// The same room the next time, and from the other side.
	wantAck(t, "dm again", alice.call("send direct message", map[string]any{"to": "dm_bob", "msg": "still there?"}), map[string]any{"success": true, "room": room})
	wantAck(t, "reply", bob.call("send room message", map[string]any{"room": room, "msg": "yes"}), success)
	alice.waitEvent("room message", roomMsgIs(room, "yes"))

	wantAck(t, "dm nobody", alice.call("send direct message", map[string]any{"to": "nobody_here", "msg": "hi"}), refusal("No such user"))
	wantAck(t, "dm self", alice.call("send direct message", map[string]any{"to": "dm_alice", "msg": "hi"}), refusal("You cannot send a direct message to yourself"))
	wantAck(t, "dm bad", alice.call("send direct message", map[string]any{"to": 7, "msg": "hi"}), refusal("Expected {to: username, msg: text, id?: resend key}"))
	wantAck(t, "carol joins the dm", carol.call("join room", map[string]any{"room": room}), refusal(noRoom))
	wantAck(t, "carol leaves the dm", carol.call("leave room", map[string]any{"room": room}), refusal(noRoom))
	wantAck(t, "bob leaves the dm", bob.call("leave room", map[string]any{"room": room}), refusal("You cannot leave this room"))

	list := bob.call("list rooms")
	found := false
	for _, it := range list["rooms"].([]any) {
		r := it.(map[string]any)
		if r["id"] == room {
			found = r["kind"] == "direct" && r["peer"] == "dm_alice" && r["member"] == true
		}
	}
	if !found {
		t.Errorf("bob's list %v lacks the direct room with dm_alice", list["rooms"])
	}
	fence(t, alice, "dm fence", carol)
	if n := carol.count("room message"); n != 0 {
		t.Errorf("carol received %d room messages of others' direct room", n)
	}
}

// TestRoomsAcrossServers: two servers on one store and one bus. Joins,
// leaves and new direct rooms made through one server change what the
// other delivers to its sockets of that user, at once.
func TestRoomsAcrossServers(t *testing.T) {
	st := openSQLite(t)
	b := &memBus{}
	testRoomsAcrossServers(t, startServer(t, server.Config{Bus: b, ServerID: "A"}, st),
		startServer(t, server.Config{Bus: b, ServerID: "B"}, st))
}

// TestRoomsAcrossServersOnPostgres is the same with the PostgreSQL bus, as
// main runs a cluster, and the single-server tests on PostgreSQL.
func TestRoomsAcrossServersOnPostgres(t *testing.T) {
	dsn := testpg.New(t)
	testRoomsAcrossServers(t, startClusterNode(t, dsn), startClusterNode(t, dsn))
	st := openPostgres(t, dsn)
	t.Run("Rooms", func(t *testing.T) { testRooms(t, startServer(t, server.Config{}, st)) })
	t.Run("DirectMessages", func(t *testing.T) { testDirectMessages(t, startServer(t, server.Config{}, st)) })
}

func testRoomsAcrossServers(t *testing.T, a, bs *env) {
	alice := a.user(t, "x_alice")
	bobB := bs.user(t, "x_bob")
	bobA := a.user(t, "x_bob") // bob's second tab, on the other server
	carolB := bs.user(t, "x_carol")

	room := roomIDOf(t, alice.call("create room", map[string]any{"name": "across"}))
	wantAck(t, "bob joins on B", bobB.call("join room", map[string]any{"room": room}), success)
	// A learns of the join from B's bus notice; until then its sockets of
	// bob are not in the room (memberships says why that window is kept).
	bobA.waitEvent("rooms changed", nil)
	wantAck(t, "send on A", alice.call("send room message", map[string]any{"room": room, "msg": "to both tabs"}), success)
	bobB.waitEvent("room message", roomMsgIs(room, "to both tabs"))
	bobA.waitEvent("room message", roomMsgIs(room, "to both tabs"))

	changes := bobA.count("rooms changed")
	wantAck(t, "bob leaves on B", bobB.call("leave room", map[string]any{"room": room}), success)
	// A applies the leave when its notice arrives (bobA hears `rooms
	// changed`); from then on it gives bob's sockets nothing of the room.
	// (Before that, within the bus's latency, a line sent through A may
	// still reach them: see docs/protocol.md.)
	waitCount(t, bobA, "rooms changed", changes+1)
	wantAck(t, "send after leave", alice.call("send room message", map[string]any{"room": room, "msg": "after the leave"}), success)
	fence(t, alice, "across fence", bobA, bobB, carolB)
	for _, c := range []*tclient{bobA, bobB, carolB} {
		if gotText(c, "room message", "after the leave") {
			t.Errorf("%s got a message of a room its user left", c.name)
		}
	}

	// A direct room made on A reaches its peer on B with its first line.
	dm := alice.call("send direct message", map[string]any{"to": "x_carol", "msg": "first words"})
	wantAck(t, "dm across", dm, success)
	carolB.waitEvent("room message", roomMsgIs(dm["room"].(float64), "first words"))
	fence(t, alice, "dm across fence", bobA, bobB)
	for _, c := range []*tclient{bobA, bobB} {
		if gotText(c, "room message", "first words") {
			t.Errorf("%s got others' direct message", c.name)
		}
	}
}

// waitCount waits until c has received n events named name.
func waitCount(t testing.TB, c *tclient, name string, n int) {
	t.Helper()
	for deadline := time.Now().Add(waitFor); c.count(name) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q events within %v, want %d", c.name, c.count(name), name, waitFor, n)
		}
	}
}

func TestEditsTypingSearchUnread(t *testing.T) {
	st := openSQLite(t)
	b := &memBus{}
	testEditsTypingSearchUnread(t, startServer(t, server.Config{Bus: b, ServerID: "A"}, st),
		startServer(t, server.Config{Bus: b, ServerID: "B"}, st))
}

func TestEditsTypingSearchUnreadOnPostgres(t *testing.T) {
	dsn := testpg.New(t)
	testEditsTypingSearchUnread(t, startClusterNode(t, dsn), startClusterNode(t, dsn))
}

// msgField returns field of the message in an event's first argument.
func msgField(args []any, field string) any {
	if len(args) == 0 {
		return nil
	}
	m, _ := args[0].(map[string]any)
	return m[field]
}

func testEditsTypingSearchUnread(t *testing.T, a, bs *env) {
	alice, bob, carol := a.user(t, "e_alice"), bs.user(t, "e_bob"), bs.user(t, "e_carol")
	seed := bs.connect(t, "seed", "websocket")
	seed.waitEvent("load all messages", nil)
	room := roomIDOf(t, alice.call("create room", map[string]any{"name": "edits"}))
	wantAck(t, "bob joins", bob.call("join room", map[string]any{"room": room}), success)

	// Edit: the author only, broadcast to the room on both servers,
	// applied once per resend key.
	sent := alice.call("send room message", map[string]any{"room": room, "msg": "helo wrld"})
	id := sent["id"]
	edit := map[string]any{"message": id, "msg": "hello world", "id": "e1"}
	ack := alice.call("edit message", edit)
	wantAck(t, "edit", ack, success)
	if m, _ := ack["message"].(map[string]any); m["msg"] != "hello world" || m["edited"] == nil || m["room"] != room {
		t.Errorf("edit answer %v", ack)
	}
	_, got := bob.waitEvent("message edited", func(args []any) bool { return msgField(args, "id") == id })
	if msgField(got, "msg") != "hello world" {
		t.Errorf("bob's edit event %v", got)
	}
	wantAck(t, "bob edits alice's", bob.call("edit message", map[string]any{"message": id, "msg": "mine"}), refusal("No such message of yours"))
	wantAck(t, "carol edits", carol.call("edit message", map[string]any{"message": id, "msg": "mine"}), refusal("No such message of yours"))
	// A later edit, then a resend of the first: the resend changes nothing.
	wantAck(t, "edit 2", alice.call("edit message", map[string]any{"message": id, "msg": "hello, world", "id": "e2"}), success)
	again := alice.call("edit message", edit)
	wantAck(t, "edit resend", again, success)
	if m, _ := again["message"].(map[string]any); m["msg"] != "hello, world" {
		t.Errorf("a resent edit was applied again: %v", again)
	}
	hist := bob.call("room history", map[string]any{"room": room})
	if got := historyTexts(hist["messages"]); fmt.Sprint(got) != "[hello, world]" {
		t.Errorf("history after edits = %q", got)
	}
	wantAck(t, "edit to blank", alice.call("edit message", map[string]any{"message": id, "msg": " "}), refusal("Message must not be empty"))

	// Delete: marked in room history, gone from search; seed clients see
	// general's deleted message no more.
	gen := alice.call("send message", "general typo")
	wantAck(t, "delete general", alice.call("delete message", map[string]any{"message": gen["id"], "id": "d1"}), success)
	seed.waitEvent("message deleted", func(args []any) bool { return msgField(args, "id") == gen["id"] })
	wantAck(t, "delete again", alice.call("delete message", map[string]any{"message": gen["id"], "id": "d1"}), success)
	wantAck(t, "edit deleted", alice.call("edit message", map[string]any{"message": gen["id"], "msg": "back"}), refusal("No such message of yours"))
	late := bs.connect(t, "late", "websocket")
	_, lh := late.waitEvent("load all messages", nil)
	for _, text := range historyTexts(lh[0]) {
		if text == "general typo" || text == "" {
			t.Errorf("seed history shows the deleted message: %q", historyTexts(lh[0]))
		}
	}
	gh := late.call("room history", map[string]any{"room": 1})
	marked := false
	for _, it := range asList(gh["messages"]) {
		if m := it.(map[string]any); m["id"] == gen["id"] {
			marked = m["deleted"] == true && m["msg"] == ""
		}
	}
	if !marked {
		t.Errorf("room history of general lacks the deleted marker: %v", gh["messages"])
	}
	// Nobody outside the room heard of its edits.
	fence(t, alice, "edit fence", carol, seed)
	for _, c := range []*tclient{carol, seed} {
		for _, ev := range c.snapshot() {
			if (ev.name == "message edited" || ev.name == "message deleted") && msgField(ev.args, "room") != 1.0 {
				t.Errorf("%s got %s %v", c.name, ev.name, ev.args)
			}
		}
	}

	// Typing: to the room's members on both servers, throttled, with its
	// time to live; never to others.
	wantAck(t, "typing", alice.call("typing", map[string]any{"room": room}), success)
	_, ty := bob.waitEvent("typing", nil)
	if msgField(ty, "user") != "e_alice" || msgField(ty, "room") != room || msgField(ty, "ttl") != 5000.0 {
		t.Errorf("typing event %v", ty)
	}
	wantAck(t, "typing again at once", alice.call("typing", map[string]any{"room": room}), refusal("Typing notices are limited to one every 2 seconds per room"))
	wantAck(t, "carol types in a room she is not in", carol.call("typing", map[string]any{"room": room}), refusal(noRoom))
	fence(t, alice, "typing fence", carol)
	if n := carol.count("typing"); n != 0 {
		t.Errorf("carol got %d typing notices of a room she is not in", n)
	}

	// Search: what the caller may read, newest first, paged.
	for i := range 3 {
		wantAck(t, "send", alice.call("send room message", map[string]any{"room": room, "msg": fmt.Sprint("needle ", i)}), success)
	}
	wantAck(t, "general needle", alice.call("send message", "needle in general"), success)
	res := bob.call("search", map[string]any{"q": "needle", "limit": 2})
	wantAck(t, "search", res, success)
	if got := historyTexts(res["messages"]); fmt.Sprint(got) != "[needle in general needle 2]" {
		t.Errorf("search page 1 = %q", got)
	}
	last := asList(res["messages"])[1].(map[string]any)["id"]
	res = bob.call("search", map[string]any{"q": "needle", "before": last, "limit": 10})
	if got := historyTexts(res["messages"]); fmt.Sprint(got) != "[needle 1 needle 0]" {
		t.Errorf("search page 2 = %q", got)
	}
	res = carol.call("search", map[string]any{"q": "needle"})
	if got := historyTexts(res["messages"]); fmt.Sprint(got) != "[needle in general]" {
		t.Errorf("carol's search = %q, want general's only", got)
	}
	wantAck(t, "search too long", bob.call("search", map[string]any{"q": strings.Repeat("x", 1001)}), refusal("Search text must be at most 1000 bytes"))
	wantAck(t, "search bad", bob.call("search", map[string]any{"q": 5}), refusal("Expected {q: text, before?: message id, limit?: 1 to 100}"))
	wantAck(t, "search deleted", bob.call("search", map[string]any{"q": "typo"}), success)

	// Unread: counted in the list, moved by mark read, never backwards.
	unread := func(c *tclient) float64 {
		t.Helper()
		for _, it := range asList(c.call("list rooms")["rooms"]) {
			if r := it.(map[string]any); r["id"] == room {
				return r["unread"].(float64)
			}
		}
		t.Fatalf("room %v not in %s's list", room, c.name)
		return 0
	}
	if n := unread(bob); n != 4 { // the edited line and three needles
		t.Errorf("bob's unread = %v, want 4", n)
	}
	if n := unread(alice); n != 0 {
		t.Errorf("alice's unread = %v, want 0 (her own)", n)
	}
	marked2 := bob.call("mark read", map[string]any{"room": room, "message": id})
	wantAck(t, "mark read", marked2, map[string]any{"success": true, "lastRead": id})
	if n := unread(bob); n != 3 {
		t.Errorf("bob's unread after marking = %v, want 3", n)
	}
	wantAck(t, "mark back", bob.call("mark read", map[string]any{"room": room, "message": 1}), map[string]any{"success": true, "lastRead": id})
	wantAck(t, "carol marks", carol.call("mark read", map[string]any{"room": room, "message": id}), refusal(noRoom))
}

// TestConversationBadInput sends every conversation event every shape of
// wrong payload, anonymous and logged in: each gets an answer, none
// crashes or closes the socket, and each refusal is counted.
func TestConversationBadInput(t *testing.T) {
	e := startServer(t, server.Config{Limits: openLimits}, nil)
	anon := e.connect(t, "anon", "websocket")
	anon.waitEvent("load all messages", nil)
	user := e.user(t, "bad_input")
	events := []string{"list rooms", "create room", "join room", "leave room", "send room message",
		"send direct message", "room history", "edit message", "delete message", "typing", "search", "mark read"}
	payloads := []any{nil, 0.0, -1.0, 1e308, "", "x", true, []any{}, []any{1.0, "a"},
		map[string]any{}, map[string]any{"room": nil}, map[string]any{"room": "1"}, map[string]any{"room": -3.0},
		map[string]any{"room": 1.0, "msg": 5.0}, map[string]any{"room": 1.0, "msg": strings.Repeat("é", 2001)},
		map[string]any{"room": 1.0, "msg": "ok", "id": 5.0}, map[string]any{"room": 1.0, "msg": "ok", "id": strings.Repeat("k", 129)},
		map[string]any{"name": strings.Repeat("n", 10_000)}, map[string]any{"name": "\u202e evil"},
		map[string]any{"to": strings.Repeat("u", 10_000), "msg": "hi"}, map[string]any{"to": "", "msg": "hi"},
		map[string]any{"message": 1e15, "msg": "x"}, map[string]any{"message": "1"}, map[string]any{"room": 1.0, "message": -1.0},
		map[string]any{"q": strings.Repeat("\"*(", 400)}, map[string]any{"q": "a", "before": "x"}, map[string]any{"q": "a", "limit": 1000.0},
		map[string]any{"room": 1.0, "before": 0.5}, map[string]any{"room": 1.0, "limit": 0.0},
	}
	n := 0
	for _, c := range []*tclient{anon, user} {
		for _, ev := range events {
			for _, p := range payloads {
				ack := c.call(ev, p)
				n++
				if _, isBool := ack["success"].(bool); !isBool {
					t.Errorf("%s %s %v: answer %v has no success", c.name, ev, p, ack)
				}
				if ack["success"] == false {
					if msg, _ := ack["message"].(string); msg == "" || strings.Contains(msg, "store:") || strings.Contains(msg, "pq:") {
						t.Errorf("%s %s %v: answer %v", c.name, ev, p, ack)
					}
				}
			}
			// No payload at all, and no callback: answered or ignored, never a crash.
			c.conn.Emit(ev)
		}
	}
	// Both sockets are still there and answer.
	wantAck(t, "still connected", user.call("send message", "still here"), success)
	anon.call("list rooms")
	if !strings.Contains(metricsText(t, e.url), `chat_refused_total{event="room history"}`) {
		t.Error("refusals are not counted by event")
	}
	t.Logf("%d bad requests answered", n)
}

// TestConversationFloods: with the default limits, floods of room changes,
// typing notices and room messages are answered "too fast" and counted.
func TestConversationFloods(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	c := e.user(t, "flooder")
	room := roomIDOf(t, c.call("create room", map[string]any{"name": "flood"}))
	count := func(ev string, arg map[string]any, tooFast ...string) int {
		refused := 0
		for range 100 {
			if ack := c.call(ev, arg); ack["success"] == false {
				if !slices.Contains(tooFast, ack["message"].(string)) {
					t.Fatalf("%s: %v", ev, ack)
				}
				refused++
			}
		}
		return refused
	}
	if n := count("join room", map[string]any{"room": room}, "You are doing that too fast; please wait a moment"); n == 0 {
		t.Error("100 joins at once: none refused")
	}
	// One passes every 2 s: of 100 sent as fast as answered, most are refused.
	typed := count("typing", map[string]any{"room": room}, "Typing notices are limited to one every 2 seconds per room", "You are sending typing notices too fast")
	if typed < 50 {
		t.Errorf("100 typing notices at once: %d refused", typed)
	}
	if n := count("send room message", map[string]any{"room": room, "msg": "spam"}, "You are sending messages too fast; please slow down"); n == 0 {
		t.Error("100 room messages at once: none refused")
	}
	m := metricsText(t, e.url)
	for _, want := range []string{`chat_rate_limited_total{limit="room_ops_per_user"}`, fmt.Sprintf(`chat_rate_limited_total{limit="typing_per_room"} %d`, typed)} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestMembershipAfterBusOutage: a leave whose notice was lost (the bus was
// down) holds once the bus is back: the resync reads every local user's
// rooms again before delivering what was missed.
func TestMembershipAfterBusOutage(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	b := &memBus{}
	e := startServer(t, server.Config{Bus: b, ServerID: "A"}, st)
	alice, bob := e.user(t, "o_alice"), e.user(t, "o_bob")
	room := roomIDOf(t, alice.call("create room", map[string]any{"name": "outage"}))
	wantAck(t, "bob joins", bob.call("join room", map[string]any{"room": room}), success)
	// Through another server whose notice never arrived.
	if err := st.LeaveRoom(ctx, int64(room), "o_bob"); err != nil {
		t.Fatal(err)
	}
	missed := mustAdd(t, st, store.Message{Content: "said during the outage", Username: "o_alice", RoomID: int64(room)})
	b.resync()
	alice.waitEvent("room message", roomMsgIs(room, missed.Content))
	wantAck(t, "send after", alice.call("send room message", map[string]any{"room": room, "msg": "after the outage"}), success)
	fence(t, alice, "outage fence", bob)
	for _, text := range []string{missed.Content, "after the outage"} {
		if gotText(bob, "room message", text) {
			t.Errorf("bob, who left during the outage, got %q", text)
		}
	}
}

// TestResumedSessionGetsItsRooms: a socket logged in by its session token
// (a reconnect after failover) receives its rooms' messages like one
// logged in by password.
func TestResumedSessionGetsItsRooms(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	alice := e.user(t, "r_alice")
	c := e.connect(t, "bob", "websocket")
	c.call("register", creds("r_bob", "pw"))
	login := c.call("login", creds("r_bob", "pw"))
	room := roomIDOf(t, alice.call("create room", map[string]any{"name": "resume"}))
	wantAck(t, "bob joins", c.call("join room", map[string]any{"room": room}), success)
	back := e.connectAuth(t, "bob again", "websocket", map[string]any{"token": login["token"]})
	back.waitEvent("session", func(args []any) bool { return msgField(args, "username") == "r_bob" })
	wantAck(t, "send", alice.call("send room message", map[string]any{"room": room, "msg": "welcome back"}), success)
	back.waitEvent("room message", roomMsgIs(room, "welcome back"))
}

// TestTypingLimitAcrossRooms: the limit on one user's typing notices
// across rooms is Limits.TypingPerUser and TypingBurst (TYPING_RATE,
// TYPING_BURST): the first notice in each of 8 rooms passes the per-room
// interval, and the burst decides how many of them pass.
func TestTypingLimitAcrossRooms(t *testing.T) {
	for _, tt := range []struct {
		name   string
		limits server.Limits
		want   int
	}{
		{"default burst 6", server.Limits{}, 6},
		{"burst 3", server.Limits{TypingPerUser: 2, TypingBurst: 3}, 3},
		{"off", server.Limits{TypingPerUser: -1}, 8},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := startServer(t, server.Config{Limits: tt.limits}, nil)
			c := e.user(t, "typist")
			var rooms []float64
			for i := range 8 {
				rooms = append(rooms, roomIDOf(t, c.call("create room", map[string]any{"name": fmt.Sprint("room ", i)})))
			}
			passed := 0
			for _, r := range rooms {
				switch ack := c.call("typing", map[string]any{"room": r}); {
				case ack["success"] == true:
					passed++
				case ack["message"] != "You are sending typing notices too fast":
					t.Errorf("typing in room %v: %v", r, ack)
				}
			}
			if passed != tt.want {
				t.Errorf("%d of 8 first notices in 8 rooms passed, want %d", passed, tt.want)
			}
		})
	}
}

// TestNULRefused: PostgreSQL text cannot hold NUL, so a NUL in a
// message's text, its resend key, a direct message's addressee or a
// login name used to fail in the store as if the database were down
// ("Service temporarily unavailable", which a client answers by resending
// for ever), logged as a store error each time. It is refused as input
// on both stores alike, and nothing reaches the store's error path.
func TestNULRefused(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testNULRefused(t, openSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { testNULRefused(t, openPostgres(t, testpg.New(t))) })
}

func testNULRefused(t *testing.T, st store.Store) {
	e := startServer(t, server.Config{Limits: openLimits}, st)
	a := e.user(t, "alice")
	e.user(t, "bob")
	room := roomIDOf(t, a.call("create room", map[string]any{"name": "nul"}))
	mine := a.call("send room message", map[string]any{"room": room, "msg": "fine"})["id"]
	const (
		nulText = "Message must not contain the NUL character"
		badKey  = "Message id must be a string of 1 to 128 characters"
	)
	for _, c := range []struct {
		event string
		args  []any
		want  string
	}{
		{"send message", []any{"a\x00b"}, nulText},
		{"send message", []any{"\x00"}, nulText},
		{"send message", []any{"ab", map[string]any{"id": "k\x00"}}, badKey},
		{"send room message", []any{map[string]any{"room": room, "msg": "x\x00y"}}, nulText},
		{"send room message", []any{map[string]any{"room": room, "msg": "xy", "id": "\x00"}}, badKey},
		{"send direct message", []any{map[string]any{"to": "bob", "msg": "h\x00i"}}, nulText},
		{"send direct message", []any{map[string]any{"to": "bo\x00b", "msg": "hi"}}, "No such user"},
		{"edit message", []any{map[string]any{"message": mine, "msg": "e\x00"}}, nulText},
		{"edit message", []any{map[string]any{"message": mine, "msg": "e", "id": "k\x00"}}, badKey},
		{"delete message", []any{map[string]any{"message": mine, "id": "k\x00"}}, badKey},
		{"create room", []any{map[string]any{"name": "a\x00b"}}, "Room name contains a control character"},
	} {
		wantAck(t, fmt.Sprintf("%s %q", c.event, c.args), a.call(c.event, c.args...), refusal(c.want))
	}
	wantAck(t, "search with NUL", a.call("search", map[string]any{"q": "fi\x00ne"}), success)
	anon := e.connect(t, "anon", "websocket")
	wantAck(t, "login as al\\x00ice", anon.call("login", creds("al\x00ice", "pw")), invalid)
	wantAck(t, "the message unchanged", a.call("room history", map[string]any{"room": room}), success)
	if h := a.call("room history", map[string]any{"room": room}); !slices.Equal(historyTexts(h["messages"]), []string{"fine"}) {
		t.Errorf("room history after the refusals: %v, want only \"fine\"", h["messages"])
	}
	for _, line := range []string{"store call failed", "storing message", "reading user"} {
		if strings.Contains(e.logs.String(), line) {
			t.Errorf("the server logged %q: a NUL reached the store", line)
		}
	}
}
