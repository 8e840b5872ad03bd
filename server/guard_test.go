package server_test

import (
	"context"
	"fmt"
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
		c := e.connectFrom(t, "c", "203.0.113.7")
		wantAck(t, "1", c.call("register", creds("r1", "pw")), success)
		wantAck(t, "2", c.call("login", creds("r1", "pw")), success)
		wantAck(t, "3", c.call("login", creds("r1", "bad")), invalid)
		wantAck(t, "4 (over the limit)", c.call("register", creds("r2", "pw")), tooMany)
		wantAck(t, "5 (over the limit)", c.call("login", creds("r1", "pw")), tooMany)
		// A second tab of the same address shares its allowance; another
		// address has its own.
		wantAck(t, "same address, new socket", e.connectFrom(t, "c2", "203.0.113.7").call("login", creds("r1", "pw")), tooMany)
		wantAck(t, "another address", e.connectFrom(t, "d", "198.51.100.9").call("login", creds("r1", "pw")), success)
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
	const addr = "203.0.113.7"
	a := e.connectFrom(t, "a", addr)
	e.connectFrom(t, "b", addr)
	a.waitEvent("load all messages", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if other := e.connectFrom(t, "other address", "198.51.100.9"); other.call("logout")["success"] != false {
		t.Fatal("another address was refused")
	}
	third, err := sioclient.Dial(ctx, e.url, sioclient.Options{Header: forwardedFor(addr)})
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
		c, err := sioclient.Dial(ctx, e.url, sioclient.Options{Header: forwardedFor(addr)})
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

// TestOriginCheck: with an allow-list, other sites' pages are refused, and
// the server's own page passes whatever Host a proxy passes on.
func TestOriginCheck(t *testing.T) {
	e := startServer(t, server.Config{Limits: server.Limits{AllowedOrigins: []string{"https://chat.example.com"}}}, nil)
	host := strings.TrimPrefix(e.url, "http://")
	tests := []struct {
		name, origin, fetchSite string
		ok                      bool
	}{
		{"no origin (not a browser)", "", "", true},
		{"own origin", "http://" + host, "", true},
		{"listed", "https://chat.example.com", "", true},
		{"other site", "http://evil.example", "", false},
		{"other site, cross-site fetch", "http://evil.example", "cross-site", false},
		{"null", "null", "", false},
		// The report's nginx block passes Host "backend": the page's
		// Origin cannot match it, but the browser says same-origin.
		{"own page behind a proxy", "http://chat.internal:8080", "same-origin", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			if tt.fetchSite != "" {
				h.Set("Sec-Fetch-Site", tt.fetchSite)
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
	if n := strings.Count(e.logs.String(), "refused a connection from another site's page"); n == 0 {
		t.Error("refusals were not logged")
	}
}

// TestOriginAnyByDefault: without an allow-list every page may connect, as
// with Node's socket.io, whatever Host the proxy passed (the report's
// nginx block sends "backend").
func TestOriginAnyByDefault(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	for _, origin := range []string{"http://localhost", "http://evil.example", "null"} {
		req, _ := http.NewRequest("GET", e.url+"/socket.io/?EIO=4&transport=polling", nil)
		req.Host = "backend"
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("polling handshake from %q with Host backend: status %d, want 200", origin, resp.StatusCode)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := sioclient.Dial(ctx, e.url, sioclient.Options{Header: http.Header{"Origin": {origin}}})
		cancel()
		if err != nil {
			t.Errorf("websocket from %q: %v", origin, err)
			continue
		}
		c.Close()
	}
}

// TestProxyWithoutForwardedFor: behind a proxy that names no client (the
// report's nginx block), every client has the proxy's address. They must
// not be treated as one client: no per-address connection cap or login
// allowance applies, the proxy's login budget does, the proxy is logged
// once and its connections are counted.
func TestProxyWithoutForwardedFor(t *testing.T) {
	e := startServer(t, server.Config{Limits: server.Limits{
		ConnsPerIP: 2, AuthPerIP: 0.01, AuthBurstPerIP: 1,
		AuthPerProxy: 0.01, AuthBurstPerProxy: 6,
	}}, nil)
	var cs []*tclient
	for i := range 5 {
		c := e.connect(t, fmt.Sprint("user", i), "websocket")
		wantAck(t, fmt.Sprint("register ", i), c.call("register", creds(fmt.Sprint("user", i), "pw")), success)
		cs = append(cs, c)
	}
	for i, c := range cs {
		if got := c.call("logout"); got["success"] != false {
			t.Fatalf("client %d behind the proxy is not connected: %v", i, got)
		}
	}
	wantAck(t, "6th attempt, within the proxy's budget", cs[0].call("login", creds("user0", "pw")), success)
	wantAck(t, "7th attempt, over the proxy's budget", cs[1].call("login", creds("user1", "pw")), tooMany)
	// A client that a proxy does name keeps its own allowance.
	named := e.connectFrom(t, "named", "203.0.113.7")
	wantAck(t, "named client", named.call("login", creds("user2", "pw")), success)

	if n := strings.Count(e.logs.String(), "sends no X-Forwarded-For"); n != 1 {
		t.Errorf("the proxy was logged %d times, want once:\n%s", n, e.logs.String())
	}
	m := metricsText(t, e.url)
	for _, want := range []string{"chat_unforwarded_connections_total 5", `chat_rate_limited_total{limit="auth_per_proxy"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func metricsText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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

// TestMalformedPollingPayloadClosesSession: a malformed payload posted over
// long-polling closes the session, as the Engine.IO protocol requires (the
// library the server once ran on ignored it and kept the session).
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
