package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/chatd/chat/bus/pgbus"
	"github.com/chatd/chat/internal/testpg"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/postgres"
)

func TestSessionToken(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	a := e.connect(t, "a", "websocket")
	wantAck(t, "register", a.call("register", creds("tok", "pw")), success)
	ack := a.call("login", creds("tok", "pw"))
	token, _ := ack["token"].(string)
	if ack["success"] != true || len(token) < 40 {
		t.Fatalf("login ack %v: want success with a token", ack)
	}

	// A new connection presenting the token is logged in without a password.
	b := e.connectAuth(t, "b", "websocket", map[string]any{"token": token})
	i, _ := b.waitEvent("session", func(a []any) bool { return len(a) > 0 && a[0].(map[string]any)["username"] == "tok" })
	if first := b.snapshot()[0]; first.name != "load all messages" || i == 0 {
		t.Errorf("events %v: load all messages must come first", b.snapshot())
	}
	wantAck(t, "send on resumed socket", b.call("send message", "resumed"), success)

	// The database holds the token's hash, never the token.
	if _, err := e.store.SessionUser(context.Background(), token, time.Now()); err == nil {
		t.Error("the raw token is a key in the sessions table")
	}

	// Logout revokes it: a later connection with it stays anonymous.
	wantAck(t, "logout", b.call("logout"), success)
	c := e.connectAuth(t, "c", "websocket", map[string]any{"token": token})
	_, args := c.waitEvent("session", nil)
	if m := args[0].(map[string]any); m["username"] != nil || m["message"] != "Session expired, please log in again" {
		t.Errorf("revoked token: session event %v", m)
	}
	c.conn.Emit("send message", "not logged in")
	c.waitEvent("reload", nil)

	for _, bogus := range []any{"nonsense", 42, map[string]any{"x": 1}, ""} {
		d := e.connectAuth(t, "d", "websocket", map[string]any{"token": bogus})
		d.waitEvent("load all messages", nil)
		wantAck(t, fmt.Sprintf("logout with token %v", bogus), d.call("logout"), nobody)
	}
}

func TestSessionExpires(t *testing.T) {
	e := startServer(t, server.Config{SessionTTL: 300 * time.Millisecond}, nil)
	a := e.connect(t, "a", "websocket")
	wantAck(t, "register", a.call("register", creds("brief", "pw")), success)
	token := a.call("login", creds("brief", "pw"))["token"]
	time.Sleep(500 * time.Millisecond)
	b := e.connectAuth(t, "b", "websocket", map[string]any{"token": token})
	_, args := b.waitEvent("session", nil)
	if args[0].(map[string]any)["username"] != nil {
		t.Errorf("expired token accepted: %v", args)
	}
}

func TestLoadOlderMessages(t *testing.T) {
	e := startServer(t, server.Config{HistoryLimit: 5}, nil)
	var ids []int64
	for i := range 12 {
		m, _, err := e.store.AddMessage(context.Background(), store.Message{Content: fmt.Sprint("m", i), Username: "u"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	c := e.connect(t, "c", "websocket")
	_, hist := c.waitEvent("load all messages", nil)
	oldest := hist[0].([]any)[0].(map[string]any)
	if oldest["msg"] != "m7" {
		t.Fatalf("history starts at %v, want m7", oldest)
	}
	ack := c.call("load older messages", map[string]any{"before": oldest["id"], "limit": 4})
	page := ack["messages"].([]any)
	if got := fmt.Sprint(page[0].(map[string]any)["msg"], " ", page[3].(map[string]any)["msg"]); ack["success"] != true || len(page) != 4 || got != "m3 m6" {
		t.Errorf("page = %v, want m3..m6", ack)
	}
	ack = c.call("load older messages", map[string]any{"before": ids[0]})
	if p := ack["messages"].([]any); ack["success"] != true || len(p) != 0 {
		t.Errorf("before the first message: %v, want an empty page", ack)
	}
	for _, bad := range []any{nil, 5, map[string]any{}, map[string]any{"before": "x"}, map[string]any{"before": 1.5},
		map[string]any{"before": 10, "limit": 0}, map[string]any{"before": 10, "limit": 101}, map[string]any{"before": -3}} {
		wantAck(t, fmt.Sprintf("bad page %v", bad), c.call("load older messages", bad),
			map[string]any{"success": false, "message": "Expected {before: message id, limit: 1 to 100}"})
	}
}

// startClusterNode starts one server of a cluster sharing dsn, with the
// PostgreSQL bus, as main does.
func startClusterNode(t *testing.T, dsn string) *env {
	t.Helper()
	st := openPostgres(t, dsn).(*postgres.Store)
	b := pgbus.New(st.DB(), dsn, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	t.Cleanup(func() { b.Close() })
	return startServer(t, server.Config{Bus: b}, st)
}

// TestClusterDelivery: two servers on one database, like the primary and the
// backup after fail-back. Messages and the online list cross in both
// directions, each message exactly once.
func TestClusterDelivery(t *testing.T) {
	dsn := testpg.New(t)
	p := startClusterNode(t, dsn)
	b := startClusterNode(t, dsn)
	onP := p.connect(t, "onP", "websocket")
	onB := b.connect(t, "onB", "websocket")
	wantAck(t, "register", onP.call("register", creds("pia", "pw")), success)
	wantAck(t, "register", onB.call("register", creds("ben", "pw")), success)
	wantAck(t, "login pia on P", onP.call("login", creds("pia", "pw")), success)
	onB.waitEvent("get users", hasUser("pia"))
	wantAck(t, "login ben on B", onB.call("login", creds("ben", "pw")), success)
	onP.waitEvent("get users", func(a []any) bool { return hasUser("ben")(a) && hasUser("pia")(a) })

	first := onP.call("send message", "from P", map[string]any{"id": "p1"})
	wantAck(t, "send on P", first, success)
	wantAck(t, "send on B", onB.call("send message", "from B"), success)
	for _, c := range []*tclient{onP, onB} {
		c.waitEvent("new message", msgIs("from P", "pia"))
		c.waitEvent("new message", msgIs("from B", "ben"))
	}
	// pia's resend of p1 through the other server (her client failed over)
	// gets the first acknowledgement and is neither stored nor sent again.
	piaOnB := b.connect(t, "piaOnB", "websocket")
	wantAck(t, "login pia on B", piaOnB.call("login", creds("pia", "pw")), success)
	wantAck(t, "resend p1 on B", piaOnB.call("send message", "from P", map[string]any{"id": "p1"}), map[string]any{"success": true, "id": first["id"]})
	time.Sleep(300 * time.Millisecond)
	for _, c := range []*tclient{onP, onB} {
		if n := c.count("new message"); n != 2 {
			t.Errorf("%s got %d new message events, want 2", c.name, n)
		}
	}

	// Logout on B reaches P's list.
	wantAck(t, "logout ben", onB.call("logout"), success)
	onP.waitEvent("get users", lacksUser("ben"))
}

// TestDeadServerLeavesList: a server that dies without a word (no clean
// shutdown) drops out of the online list after its heartbeat goes stale.
func TestDeadServerLeavesList(t *testing.T) {
	dsn := testpg.New(t)
	alive := startClusterNode(t, dsn)
	st := openPostgres(t, dsn)
	// The "dead" server: its presence rows and one heartbeat, then silence.
	pres := st.(store.Presence)
	if _, err := pres.Heartbeat(context.Background(), "ghost"); err != nil {
		t.Fatal(err)
	}
	if err := pres.AddPresence(context.Background(), "ghost", "casper"); err != nil {
		t.Fatal(err)
	}
	w := alive.connect(t, "w", "websocket")
	wantAck(t, "register", w.call("register", creds("wendy", "pw")), success)
	wantAck(t, "login", w.call("login", creds("wendy", "pw")), success)
	w.waitEvent("get users", hasUser("casper"))
	start := time.Now()
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs := w.snapshot()
		last := evs[len(evs)-1]
		if last.name == "get users" && lacksUser("casper")(last.args) && hasUser("wendy")(last.args) {
			t.Logf("dead server's user left the list after %v", time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("casper still listed 15 s after his server died")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
