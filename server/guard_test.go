package server_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/server"
)

var tooMany = map[string]any{"success": false, "message": "Too many attempts, please wait a minute and try again"}

func TestAuthLimits(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		e := startServer(t, server.Config{Limits: server.Limits{AuthPerIP: 0.01, AuthBurstPerIP: 3}}, nil)
		c := e.connect(t, "c", "websocket")
		wantAck(t, "1", c.call("register", creds("r1", "pw")), success)
		wantAck(t, "2", c.call("login", creds("r1", "pw")), success)
		wantAck(t, "3", c.call("login", creds("r1", "bad")), invalid)
		wantAck(t, "4 (over the limit)", c.call("register", creds("r2", "pw")), tooMany)
		wantAck(t, "5 (over the limit)", c.call("login", creds("r1", "pw")), tooMany)
	})
	t.Run("per username", func(t *testing.T) {
		e := startServer(t, server.Config{Limits: server.Limits{LoginPerUser: 0.01, LoginBurstPerUser: 2}}, nil)
		c := e.connect(t, "c", "websocket")
		wantAck(t, "register", c.call("register", creds("target", "pw")), success)
		wantAck(t, "guess 1", c.call("login", creds("target", "a")), invalid)
		wantAck(t, "guess 2", c.call("login", creds("target", "b")), invalid)
		// Even the right password is refused now: the guesser cannot tell.
		wantAck(t, "guess 3", c.call("login", creds("target", "pw")), tooMany)
		wantAck(t, "register someone else", c.call("register", creds("other", "pw")), success)
		wantAck(t, "other user unaffected", c.call("login", creds("other", "pw")), success)
	})
}

func TestMessageRateLimit(t *testing.T) {
	e := startServer(t, server.Config{Limits: server.Limits{MessagesPerUser: 0.01, MessageBurst: 3}}, nil)
	c := e.connect(t, "c", "websocket")
	wantAck(t, "register", c.call("register", creds("chatty", "pw")), success)
	wantAck(t, "login", c.call("login", creds("chatty", "pw")), success)
	for i := range 3 {
		wantAck(t, "within burst", c.call("send message", "m"+string(rune('0'+i))), success)
	}
	wantAck(t, "over the limit", c.call("send message", "one too many"),
		map[string]any{"success": false, "message": "You are sending messages too fast; please slow down"})
}

// A socket that asks for history pages faster than the limit is refused
// with a clear answer, and another socket keeps its own allowance.
func TestHistoryPageRateLimit(t *testing.T) {
	e := startServer(t, server.Config{Limits: server.Limits{PagesPerSocket: 0.01, PageBurst: 3}}, nil)
	c := e.connect(t, "c", "websocket")
	page := map[string]any{"before": 1_000_000, "limit": 5}
	for i := range 3 {
		if got := c.call("load older messages", page); got["success"] != true {
			t.Fatalf("page %d within the burst: %v", i, got)
		}
	}
	wantAck(t, "over the limit", c.call("load older messages", page),
		map[string]any{"success": false, "message": "You are loading history too fast; please wait a moment"})
	other := e.connect(t, "other", "websocket")
	if got := other.call("load older messages", page); got["success"] != true {
		t.Fatalf("another socket's first page: %v", got)
	}
}

func TestConnectionsPerAddress(t *testing.T) {
	e := startServer(t, server.Config{Limits: server.Limits{ConnsPerIP: 2}}, nil)
	a := e.connect(t, "a", "websocket")
	e.connect(t, "b", "websocket")
	a.waitEvent("load all messages", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	third, err := sioclient.Dial(ctx, e.url, sioclient.Options{})
	if err == nil {
		select {
		case <-third.Done():
		case <-ctx.Done():
			t.Fatal("a third connection from one address stayed connected")
		}
	}
	// Leaving frees a place.
	a.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := sioclient.Dial(ctx, e.url, sioclient.Options{})
		if err == nil {
			if _, err := c.Call(ctx, "logout"); err == nil {
				c.Close()
				return
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("no place freed after a disconnect")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOriginCheck(t *testing.T) {
	e := startServer(t, server.Config{Limits: server.Limits{AllowedOrigins: []string{"https://chat.example.com"}}}, nil)
	host := strings.TrimPrefix(e.url, "http://")
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + host, true},
		{"https://chat.example.com", true},
		{"http://evil.example", false},
		{"null", false},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := sioclient.Dial(ctx, e.url, sioclient.Options{Header: h})
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("websocket from origin %q: err %v, want allowed=%v", tt.origin, err, tt.ok)
			}
			req, _ := http.NewRequest("GET", e.url+"/socket.io/?EIO=4&transport=polling", nil)
			req.Header = h
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if (resp.StatusCode == 200) != tt.ok {
				t.Errorf("polling from origin %q: status %d, want allowed=%v", tt.origin, resp.StatusCode, tt.ok)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	c := e.connect(t, "c", "websocket")
	wantAck(t, "register", c.call("register", creds("metric", "pw")), success)
	wantAck(t, "login", c.call("login", creds("metric", "pw")), success)
	wantAck(t, "send", c.call("send message", "counted"), success)
	c.waitEvent("new message", msgIs("counted", "metric"))
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"chat_connected_sockets 1", "chat_logged_in_users 1", "chat_messages_stored_total 1",
		"chat_messages_delivered_total 1", "chat_send_ack_seconds_count 1", `chat_logins_total{outcome="ok"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestMalformedPollingPayloadClosesSession: the library ignores a malformed
// payload posted over long-polling (see package pollfix); ours closes the
// session, as the Engine.IO protocol requires.
func TestMalformedPollingPayloadClosesSession(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	resp, err := http.Get(e.url + "/socket.io/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	i := strings.Index(string(b), `"sid":"`)
	if i < 0 {
		t.Fatalf("no sid in %q", b)
	}
	sid := string(b[i+7:])
	sid = sid[:strings.IndexByte(sid, '"')]
	u := e.url + "/socket.io/?EIO=4&transport=polling&sid=" + sid
	post, err := http.Post(u, "text/plain;charset=UTF-8", strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != 400 {
		t.Errorf("POST abc: status %d, want 400", post.StatusCode)
	}
	get, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != 400 {
		t.Errorf("poll after a malformed payload: status %d, want 400 (session closed)", get.StatusCode)
	}
}

// TestOriginBehindProxyPort: nginx passes Host without its port ($host), so
// a page at http://host:8080 upgrades with Origin host:8080 and Host host.
// The library's own same-origin check refused that; the guard allows it.
func TestOriginBehindProxyPort(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	h := http.Header{}
	h.Set("Origin", "http://127.0.0.1:8080")
	h.Set("Host", "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/socket.io/?EIO=4&transport=websocket", nil)
	req.Host = "127.0.0.1"
	req.Header = h.Clone()
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("upgrade from a page behind nginx on another port: %s, want 101", resp.Status)
	}
}
