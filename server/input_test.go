package server_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store"
)

// TestBadInput sends every shape of wrong payload to every event. Each gets a
// specific refusal where there is a callback, nothing is stored, and the
// server goes on serving.
func TestBadInput(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	a := e.connect(t, "a", "websocket")
	wantAck(t, "register", a.call("register", creds("eve", "pw")), success)

	long := strings.Repeat("x", 100_000)
	badCreds := []struct {
		name string
		args []any
		want string
	}{
		{"no payload", nil, "Expected {username, password} with both as text"},
		{"number", []any{42}, "Expected {username, password} with both as text"},
		{"null", []any{nil}, "Expected {username, password} with both as text"},
		{"string", []any{"eve"}, "Expected {username, password} with both as text"},
		{"array", []any{[]any{"eve", "pw"}}, "Expected {username, password} with both as text"},
		{"nested object", []any{map[string]any{"username": map[string]any{"a": 1}, "password": "pw"}}, "Expected {username, password} with both as text"},
		{"missing password", []any{map[string]any{"username": "eve"}}, "Expected {username, password} with both as text"},
		{"numeric password", []any{map[string]any{"username": "eve", "password": 123}}, "Expected {username, password} with both as text"},
	}
	for _, ev := range []string{"register", "login"} {
		for _, tt := range badCreds {
			t.Run(ev+"/"+tt.name, func(t *testing.T) {
				got := a.call(ev, tt.args...)
				wantAck(t, ev, got, map[string]any{"success": false, "message": tt.want})
			})
		}
	}

	badRegister := []struct {
		name, user, pw, want string
	}{
		{"empty username", "", "pw", "Username must not be empty"},
		{"100 KB username", long, "pw", "Username must be at most 64 characters"},
		{"65 characters", strings.Repeat("a", 65), "pw", "Username must be at most 64 characters"},
		{"space", "a b", "pw", "Username may contain only letters, digits, '_', '.' and '-'"},
		{"control character", "a\x07b", "pw", "Username may contain only letters, digits, '_', '.' and '-'"},
		{"markup", "<b>x</b>", "pw", "Username may contain only letters, digits, '_', '.' and '-'"},
		{"empty password", "newuser", "", "Password must not be empty"},
		{"73-byte password", "newuser", strings.Repeat("p", 73), "Password must be at most 72 bytes (bcrypt's limit)"},
	}
	for _, tt := range badRegister {
		t.Run("register/"+tt.name, func(t *testing.T) {
			wantAck(t, "register", a.call("register", creds(tt.user, tt.pw)),
				map[string]any{"success": false, "message": tt.want})
		})
	}
	for _, name := range []string{strings.Repeat("a", 64), "Ünïcødé_名前.x-1", "72-byte-pw"} {
		pw := "pw"
		if name == "72-byte-pw" {
			pw = strings.Repeat("p", 72)
		}
		wantAck(t, "register "+name, a.call("register", creds(name, pw)), success)
		wantAck(t, "login "+name, a.call("login", creds(name, pw)), success)
	}
	wantAck(t, "login 100 KB name", a.call("login", creds(long, "pw")), invalid)

	wantAck(t, "login", a.call("login", creds("eve", "pw")), success)
	badSend := []struct {
		name string
		args []any
		want string
	}{
		{"no payload", nil, "Message must be text"},
		{"number", []any{7}, "Message must be text"},
		{"null", []any{nil}, "Message must be text"},
		{"object", []any{map[string]any{"msg": "hi"}}, "Message must be text"},
		{"array", []any{[]any{"hi"}}, "Message must be text"},
		{"empty", []any{""}, "Message must not be empty"},
		{"whitespace", []any{" \n\t "}, "Message must not be empty"},
		{"too long", []any{strings.Repeat("é", 2001)}, "Message is 2001 characters; the limit is 2000"},
		{"id not object", []any{"hi", "k"}, "Message id must be a string of 1 to 128 characters"},
		{"id number", []any{"hi", map[string]any{"id": 5}}, "Message id must be a string of 1 to 128 characters"},
		{"id empty", []any{"hi", map[string]any{"id": ""}}, "Message id must be a string of 1 to 128 characters"},
		{"id too long", []any{"hi", map[string]any{"id": strings.Repeat("k", 129)}}, "Message id must be a string of 1 to 128 characters"},
	}
	for _, tt := range badSend {
		t.Run("send/"+tt.name, func(t *testing.T) {
			wantAck(t, "send", a.call("send message", tt.args...), map[string]any{"success": false, "message": tt.want})
		})
	}

	// Events without a callback: nothing to answer, nothing may break.
	a.conn.Emit("register", 1)
	a.conn.Emit("login", nil)
	a.conn.Emit("logout")
	a.conn.Emit("send message", map[string]any{"x": []any{1, 2}})
	a.conn.Emit("send message")
	a.conn.Emit("no such event", "x")

	msgs, err := e.store.RecentMessages(context.Background(), 0)
	if err != nil || len(msgs) != 0 {
		t.Errorf("bad sends stored %d messages: %v %v", len(msgs), msgs, err)
	}
	// The same socket and a fresh one still work (the bare logout above
	// did log the socket out).
	wantAck(t, "login again", a.call("login", creds("eve", "pw")), success)
	wantAck(t, "send after abuse", a.call("send message", "still here"), success)
	b := e.connect(t, "b", "websocket")
	_, hist := b.waitEvent("load all messages", nil)
	if !containsMsg(hist[0], "still here", "eve") {
		t.Errorf("history %v lacks the message sent after the bad input", hist)
	}
	for _, secret := range []string{`"pw"`, "password=", "$2a$", strings.Repeat("p", 72)} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("server log contains %q", secret)
		}
	}
}

func TestConcurrentRegistrationOverSockets(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	const n = 6
	clients := make([]*tclient, n)
	for i := range clients {
		clients[i] = e.connect(t, fmt.Sprint("c", i), "websocket")
	}
	acks := make([]map[string]any, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks[i] = c.call("register", creds("samename", fmt.Sprint("pw", i)))
		}()
	}
	wg.Wait()
	wins, winner := 0, -1
	for i, a := range acks {
		if a["success"] == true {
			wins++
			winner = i
		} else if a["message"] != "Username already taken" {
			t.Errorf("loser %d got %v", i, a)
		}
	}
	if wins != 1 {
		t.Fatalf("%d registrations succeeded, want 1: %v", wins, acks)
	}
	wantAck(t, "winner logs in", clients[0].call("login", creds("samename", fmt.Sprint("pw", winner))), success)
}

func TestHistoryLimit(t *testing.T) {
	for _, tt := range []struct {
		limit, stored, want int
	}{
		{3, 5, 3},
		{-1, 5, 5}, // main maps -history-limit 0 to -1: all
		{0, 120, 100},
	} {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			e := startServer(t, server.Config{HistoryLimit: tt.limit}, nil)
			for i := range tt.stored {
				if _, _, err := e.store.AddMessage(context.Background(), store.Message{Content: fmt.Sprint("m", i), Username: "u"}); err != nil {
					t.Fatal(err)
				}
			}
			c := e.connect(t, "c", "websocket")
			_, args := c.waitEvent("load all messages", nil)
			list := args[0].([]any)
			if len(list) != tt.want {
				t.Fatalf("got %d messages, want %d", len(list), tt.want)
			}
			last := list[len(list)-1].(map[string]any)
			if last["msg"] != fmt.Sprint("m", tt.stored-1) {
				t.Errorf("last message %v, want the newest (oldest first order)", last)
			}
		})
	}
}

func TestResendIsIdempotent(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	a := e.connect(t, "a", "websocket")
	watcher := e.connect(t, "w", "websocket")
	wantAck(t, "register", a.call("register", creds("ida", "pw")), success)
	wantAck(t, "login", a.call("login", creds("ida", "pw")), success)
	first := a.call("send message", "once", map[string]any{"id": "c-1"})
	again := a.call("send message", "once", map[string]any{"id": "c-1"})
	wantAck(t, "first", first, success)
	if again["success"] != true || again["id"] != first["id"] {
		t.Errorf("resend ack %v, want the first %v", again, first)
	}
	watcher.waitEvent("new message", msgIs("once", "ida"))
	time.Sleep(200 * time.Millisecond)
	if n := watcher.count("new message"); n != 1 {
		t.Errorf("resend broadcast %d times, want once", n)
	}
}

// TestNoGoroutineLeak connects, logs in, chats and disconnects a crowd, then
// checks the goroutine count returns to where it started.
func TestNoGoroutineLeak(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	warm := e.connect(t, "warm", "websocket")
	warm.waitEvent("load all messages", nil)
	warm.conn.Close()
	time.Sleep(300 * time.Millisecond)
	base := runtime.NumGoroutine()

	c := e.connect(t, "x", "websocket")
	wantAck(t, "register", c.call("register", creds("leaky", "pw")), success)
	for i := range 20 {
		s := e.connect(t, fmt.Sprint("s", i), "websocket")
		s.call("login", creds("leaky", "pw"))
		s.call("send message", fmt.Sprint("hi ", i))
		s.conn.Emit("login", 5) // no callback
		s.conn.Close()
	}
	c.conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d at start, %d after; stacks:\n%s", base, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
