package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/internal/testproc"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
	"github.com/chatd/chat/store/sqlite"
)

const waitFor = 5 * time.Second

// env is a real server on a loopback port with its own store.
type env struct {
	t     testing.TB
	url   string
	store store.Store
	srv   *server.Server
	logs  *testproc.Log
}

func startServer(t testing.TB, cfg server.Config, st store.Store) *env {
	t.Helper()
	if st == nil {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		st = s
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = 4 // the cheapest cost: these tests are about the protocol
	}
	logs := &testproc.Log{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.New(cfg, st, log)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &env{t: t, url: hs.URL, store: st, srv: srv, logs: logs}
}

// event is one server-to-client event as the client saw it.
type event struct {
	name string
	args []any
}

// tclient is a Socket.IO client that records every event it receives.
type tclient struct {
	t    testing.TB
	name string
	conn *sioclient.Conn

	mu     sync.Mutex
	events []event
	signal chan struct{}
}

// connect opens a client over transport. Only "websocket" is driven from Go:
// long-polling is covered by test/compat with the npm clients users run.
func (e *env) connect(t testing.TB, name, transport string) *tclient {
	t.Helper()
	return e.connectAuth(t, name, transport, nil)
}

// connectAuth connects with a handshake auth payload.
func (e *env) connectAuth(t testing.TB, name, transport string, auth map[string]any) *tclient {
	t.Helper()
	if transport != "websocket" {
		t.Fatalf("unknown transport %q", transport)
	}
	return e.connectOpts(t, name, sioclient.Options{Auth: auth})
}

// connectFrom connects as a client at addr behind a trusted proxy (nginx
// with nginx.conf, which names the client in X-Forwarded-For), so that the
// per-address limits see addr.
func (e *env) connectFrom(t testing.TB, name, addr string) *tclient {
	t.Helper()
	return e.connectOpts(t, name, sioclient.Options{Header: forwardedFor(addr)})
}

func forwardedFor(addr string) http.Header {
	return http.Header{"X-Forwarded-For": {addr}}
}

// connectOpts connects over WebSocket with opts; OnEvent is the client's.
func (e *env) connectOpts(t testing.TB, name string, opts sioclient.Options) *tclient {
	t.Helper()
	c := &tclient{t: t, name: name, signal: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	opts.OnEvent = c.record
	conn, err := sioclient.Dial(ctx, e.url, opts)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c.conn = conn
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *tclient) record(ev string, args []any) {
	c.mu.Lock()
	c.events = append(c.events, event{ev, args})
	c.mu.Unlock()
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

func (c *tclient) snapshot() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.events...)
}

// waitEvent returns the first recorded event (from index from) named name
// that satisfies match, failing the test after waitFor.
func (c *tclient) waitEvent(name string, match func([]any) bool) (int, []any) {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		for i, ev := range c.snapshot() {
			if ev.name == name && (match == nil || match(ev.args)) {
				return i, ev.args
			}
		}
		select {
		case <-c.signal:
		case <-deadline:
			c.t.Fatalf("%s: no matching %q event within %v; got %v", c.name, name, waitFor, c.snapshot())
			return 0, nil
		}
	}
}

// count returns how many events named name were recorded.
func (c *tclient) count(name string) int {
	n := 0
	for _, ev := range c.snapshot() {
		if ev.name == name {
			n++
		}
	}
	return n
}

// call emits ev with args and waits for the acknowledgement object.
func (c *tclient) call(ev string, args ...any) map[string]any {
	c.t.Helper()
	return c.callWithin(waitFor, ev, args...)
}

// callWithin is call with its own bound on the answer: a login against a
// Node-made bcrypt hash (cost 10) takes seconds under the race detector
// while other test packages share the cores.
func (c *tclient) callWithin(d time.Duration, ev string, args ...any) map[string]any {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	a, err := c.conn.Call(ctx, ev, args...)
	if err != nil {
		c.t.Fatalf("%s: %s: %v", c.name, ev, err)
	}
	if len(a) != 1 {
		c.t.Fatalf("%s: %s ack has %d arguments, want 1: %v", c.name, ev, len(a), a)
	}
	m, ok := a[0].(map[string]any)
	if !ok {
		c.t.Fatalf("%s: %s ack is %T, want an object", c.name, ev, a[0])
	}
	return m
}

func creds(u, p string) map[string]any { return map[string]any{"username": u, "password": p} }

func wantAck(t testing.TB, what string, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("%s: ack = %v, want %s = %v", what, got, k, v)
		}
	}
}

var (
	success = map[string]any{"success": true}
	taken   = map[string]any{"success": false, "message": "Username already taken"}
	invalid = map[string]any{"success": false, "message": "Invalid username or password"}
	nobody  = map[string]any{"success": false, "message": "No user is currently logged in."}
)

func hasUser(user string) func([]any) bool {
	return func(args []any) bool {
		if len(args) == 0 {
			return false
		}
		list, _ := args[0].([]any)
		for _, u := range list {
			if u == user {
				return true
			}
		}
		return false
	}
}

func lacksUser(user string) func([]any) bool {
	has := hasUser(user)
	return func(args []any) bool { return len(args) > 0 && !has(args) }
}

func msgIs(text, user string) func([]any) bool {
	return func(args []any) bool {
		if len(args) == 0 {
			return false
		}
		m, _ := args[0].(map[string]any)
		return m["msg"] == text && m["user"] == user
	}
}

// transportsUnderTest is what the Go tests drive; see connect.
var transportsUnderTest = []string{"websocket"}

func TestProtocol(t *testing.T) {
	for _, tr := range transportsUnderTest {
		t.Run(tr, func(t *testing.T) {
			e := startServer(t, server.Config{}, nil)
			t.Run("FirstEventIsHistory", func(t *testing.T) { testFirstEventIsHistory(t, e, tr) })
			t.Run("RegisterLoginSend", func(t *testing.T) { testRegisterLoginSend(t, e, tr) })
			t.Run("AnonymousSendGetsReload", func(t *testing.T) { testAnonymousSend(t, e, tr) })
			t.Run("LogoutAndDisconnect", func(t *testing.T) { testLogoutAndDisconnect(t, e, tr) })
			t.Run("TwoTabs", func(t *testing.T) { testTwoTabs(t, e, tr) })
		})
	}
}

func testFirstEventIsHistory(t *testing.T, e *env, tr string) {
	a := e.connect(t, "a", tr)
	_, args := a.waitEvent("load all messages", nil)
	if first := a.snapshot()[0]; first.name != "load all messages" {
		t.Fatalf("first event = %q, want load all messages", first.name)
	}
	if _, isList := args[0].([]any); !isList {
		t.Errorf("load all messages payload is %T, want an array", args[0])
	}
}

func testRegisterLoginSend(t *testing.T, e *env, tr string) {
	user := "alice_" + tr
	a := e.connect(t, "a", tr)
	anon := e.connect(t, "anon", tr)
	wantAck(t, "register", a.call("register", creds(user, "pw1")), success)
	wantAck(t, "register again", a.call("register", creds(user, "other")), taken)
	wantAck(t, "wrong password", a.call("login", creds(user, "nope")), invalid)
	wantAck(t, "unknown user", a.call("login", creds("nobody_"+tr, "pw1")), invalid)

	ack := a.call("login", creds(user, "pw1"))
	wantAck(t, "login", ack, success)
	// get users reached the logging-in socket before its acknowledgement:
	// it is already recorded when the ack returns.
	found := false
	for _, ev := range a.snapshot() {
		if ev.name == "get users" && hasUser(user)(ev.args) {
			found = true
		}
	}
	if !found {
		t.Errorf("login acked before get users with %s arrived: %v", user, a.snapshot())
	}
	anon.waitEvent("get users", hasUser(user))

	sent := a.call("send message", "hello from "+tr)
	wantAck(t, "send message", sent, success)
	if id, _ := sent["id"].(float64); id <= 0 {
		t.Errorf("send ack id = %v, want a positive message id", sent["id"])
	}
	_, got := a.waitEvent("new message", msgIs("hello from "+tr, user))
	anon.waitEvent("new message", msgIs("hello from "+tr, user))
	m := got[0].(map[string]any)
	if m["id"] != sent["id"] {
		t.Errorf("broadcast id %v != ack id %v", m["id"], sent["id"])
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"])); err != nil {
		t.Errorf("message time %v: %v", m["time"], err)
	}

	late := e.connect(t, "late", tr)
	_, hist := late.waitEvent("load all messages", nil)
	if !containsMsg(hist[0], "hello from "+tr, user) {
		t.Errorf("newcomer's history %v lacks the message", hist[0])
	}
}

func containsMsg(list any, text, user string) bool {
	items, _ := list.([]any)
	for _, it := range items {
		if msgIs(text, user)([]any{it}) {
			return true
		}
	}
	return false
}

func testAnonymousSend(t *testing.T, e *env, tr string) {
	a := e.connect(t, "a", tr)
	b := e.connect(t, "b", tr)
	a.waitEvent("load all messages", nil)
	b.waitEvent("load all messages", nil)
	user := "reg_only_" + tr
	wantAck(t, "register", a.call("register", creds(user, "pw")), success)
	// register does not log in: sending gets reload.
	a.conn.Emit("send message", "should not be stored "+tr)
	a.waitEvent("reload", nil)
	wantAck(t, "send with ack", a.call("send message", "nor this "+tr), map[string]any{"success": false})
	// The other socket saw no reload and no message.
	time.Sleep(200 * time.Millisecond)
	if n := b.count("reload"); n != 0 {
		t.Errorf("another socket got %d reload events", n)
	}
	if n := b.count("new message"); n != 0 {
		t.Errorf("anonymous send was broadcast %d times", n)
	}
	msgs, _ := e.store.RecentMessages(context.Background(), 0)
	for _, m := range msgs {
		if strings.Contains(m.Content, "should not be stored") || strings.Contains(m.Content, "nor this") {
			t.Errorf("anonymous message stored: %+v", m)
		}
	}
}

func testLogoutAndDisconnect(t *testing.T, e *env, tr string) {
	a := e.connect(t, "a", tr)
	watcher := e.connect(t, "watcher", tr)
	wantAck(t, "logout while anonymous", a.call("logout"), nobody)
	user := "bob_" + tr
	wantAck(t, "register", a.call("register", creds(user, "pw")), success)
	wantAck(t, "login", a.call("login", creds(user, "pw")), success)
	watcher.waitEvent("get users", hasUser(user))
	wantAck(t, "logout", a.call("logout"), success)
	watcher.waitEvent("get users", lacksUser(user))
	wantAck(t, "logout twice", a.call("logout"), nobody)
	a.conn.Emit("send message", "after logout")
	a.waitEvent("reload", nil)

	// Disconnecting a logged-in socket removes its user.
	b := e.connect(t, "b", tr)
	wantAck(t, "login b", b.call("login", creds(user, "pw")), success)
	i, _ := watcher.waitEvent("get users", hasUser(user))
	b.conn.Close()
	deadline := time.Now().Add(waitFor)
	for {
		ev := watcher.snapshot()
		if len(ev) > i+1 && ev[len(ev)-1].name == "get users" && lacksUser(user)(ev[len(ev)-1].args) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("user still online after disconnect: %v", ev[i:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testTwoTabs(t *testing.T, e *env, tr string) {
	user := "carol_" + tr
	tab1, tab2, watcher := e.connect(t, "tab1", tr), e.connect(t, "tab2", tr), e.connect(t, "watcher", tr)
	wantAck(t, "register", tab1.call("register", creds(user, "pw")), success)
	wantAck(t, "login tab1", tab1.call("login", creds(user, "pw")), success)
	wantAck(t, "login tab2", tab2.call("login", creds(user, "pw")), success)
	_, list := watcher.waitEvent("get users", hasUser(user))
	n := 0
	for _, u := range list[0].([]any) {
		if u == user {
			n++
		}
	}
	if n != 1 {
		t.Errorf("user listed %d times with two tabs: %v", n, list)
	}
	wantAck(t, "logout tab1", tab1.call("logout"), success)
	time.Sleep(200 * time.Millisecond)
	evs := watcher.snapshot()
	if last := evs[len(evs)-1]; last.name == "get users" && !hasUser(user)(last.args) {
		t.Errorf("user left the list while still logged in on tab2")
	}
	tab2.conn.Close()
	watcher.waitEvent("get users", lacksUser(user))
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
