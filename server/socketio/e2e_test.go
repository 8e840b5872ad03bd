package socketio

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/gorilla/websocket"
)

// startReal serves a Server on the real engine, behind httptest on
// 127.0.0.1, and returns its base URL.
func startReal(t testing.TB, o Options) (*Server, string) {
	t.Helper()
	if o.Engine.PingInterval == 0 {
		o.Engine.PingInterval, o.Engine.PingTimeout = time.Second, 2*time.Second
	}
	o.Engine.AllowEIO3 = true
	srv := NewServer(o)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return srv, hs.URL
}

// rawWS is a bare Engine.IO WebSocket client: the tests write packets the
// way a client at its worst would, back to back.
type rawWS struct {
	t  testing.TB
	ws *websocket.Conn
}

func dialRaw(t testing.TB, base string, eio int) *rawWS {
	t.Helper()
	u := strings.Replace(base, "http", "ws", 1) + fmt.Sprintf("/socket.io/?EIO=%d&transport=websocket", eio)
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	r := &rawWS{t: t, ws: ws}
	if open := r.next(); !strings.HasPrefix(open, "0{") {
		t.Fatalf("open packet %q", open)
	}
	return r
}

func (r *rawWS) send(s string) {
	r.t.Helper()
	if err := r.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawWS) sendBin(b []byte) {
	r.t.Helper()
	if err := r.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next message that is not a ping (answered) ; binary
// ones as "bin:" + content.
func (r *rawWS) next() string {
	r.t.Helper()
	for {
		s, err := r.read(5 * time.Second)
		if err != nil {
			r.t.Fatal(err)
		}
		if s == "2" {
			r.send("3")
			continue
		}
		return s
	}
}

func (r *rawWS) read(d time.Duration) (string, error) {
	r.ws.SetReadDeadline(time.Now().Add(d))
	typ, b, err := r.ws.ReadMessage()
	if err != nil {
		return "", err
	}
	if typ == websocket.BinaryMessage {
		return "bin:" + string(b), nil
	}
	return string(b), nil
}

// closed reports whether the server closes the connection within d
// (pings answered meanwhile).
func (r *rawWS) closed(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		s, err := r.read(time.Until(deadline))
		if err != nil {
			return !strings.Contains(err.Error(), "timeout")
		}
		if s == "2" {
			r.ws.WriteMessage(websocket.TextMessage, []byte("3"))
		}
	}
	return false
}

// TestRealConnectThenEmit: over the real engine, 1,000 clients each call
// an event the moment they are connected (sioclient, WebSocket and
// polling), and 200 raw clients write the CONNECT and an event in one
// go: every event finds its handler.
func TestRealConnectThenEmit(t *testing.T) {
	var handled atomic.Int64
	_, base := startReal(t, Options{OnConnection: func(s *Socket) {
		s.On("first", func(args []any, ack func(...any)) {
			handled.Add(1)
			if ack != nil {
				ack("ok", s.ID())
			}
		})
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const n = 1000
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tr := "websocket"
			if i%4 == 3 {
				tr = "polling"
			}
			c, err := sioclient.Dial(ctx, base, sioclient.Options{Transport: tr})
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				failed.Add(1)
				return
			}
			defer c.Close()
			a, err := c.Call(ctx, "first")
			if err != nil || len(a) != 2 || a[0] != "ok" || a[1] != c.SID {
				t.Errorf("client %d (%s): %v %v", i, tr, a, err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	for i := 0; i < 200; i++ {
		r := dialRaw(t, base, 4)
		// One write: the CONNECT and the event arrive together.
		r.send("40")
		r.send(`421["first"]`)
		ack := r.next()
		if !strings.HasPrefix(ack, `40{"sid":"`) {
			t.Fatalf("raw %d: %q", i, ack)
		}
		if got := r.next(); !strings.HasPrefix(got, `431["ok",`) {
			t.Fatalf("raw %d: %q", i, got)
		}
		r.ws.Close()
	}
	if want := int64(n) - failed.Load() + 200; handled.Load() != want {
		t.Errorf("%d events handled, want %d", handled.Load(), want)
	}
}

func TestRealV2(t *testing.T) {
	_, base := startReal(t, Options{OnConnection: echo, Namespaces: []string{"/custom"}})
	r := dialRaw(t, base, 3)
	if got := r.next(); got != "40" {
		t.Fatalf("v2 connect: %q", got)
	}
	if got := r.next(); got != `42["auth",{}]` {
		t.Fatalf("v2 auth: %q", got)
	}
	r.send(`42["message",1,"2",{"3":[true]}]`)
	if got := r.next(); got != `42["message-back",1,"2",{"3":[true]}]` {
		t.Errorf("v2 echo: %q", got)
	}
	r.send(`40/custom?token=abc,`)
	if got := r.next(); got != "40/custom," {
		t.Errorf("v2 custom: %q", got)
	}
	if got := r.next(); got != `42/custom,["auth",{"token":"abc"}]` {
		t.Errorf("v2 custom auth: %q", got)
	}
	// EIO3 binary over WebSocket: the attachment is a binary frame whose
	// first byte is the Engine.IO type 4.
	r.send(`451-7["message-with-ack",{"_placeholder":true,"num":0}]`)
	r.sendBin([]byte{4, 1, 2, 3})
	if got := r.next(); got != `461-7[{"_placeholder":true,"num":0}]` {
		t.Errorf("v2 binary ack: %q", got)
	}
	if got := r.next(); got != "bin:\x04\x01\x02\x03" {
		t.Errorf("v2 attachment: %q", got)
	}
}

func TestRealV5(t *testing.T) {
	reasons := make(chan string, 10)
	_, base := startReal(t, Options{Namespaces: []string{"/custom"}, OnConnection: func(s *Socket) {
		echo(s)
		s.OnDisconnect(func(reason string) { reasons <- s.Namespace() + " " + reason })
	}})
	r := dialRaw(t, base, 4)
	r.send(`40{"token":"123"}`)
	if got := r.next(); !strings.HasPrefix(got, `40{"sid":"`) {
		t.Fatalf("connect: %q", got)
	}
	if got := r.next(); got != `42["auth",{"token":"123"}]` {
		t.Fatalf("auth: %q", got)
	}
	r.send(`452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`)
	r.sendBin([]byte{1, 2, 3})
	r.sendBin([]byte{4, 5, 6})
	want := []string{`452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`, "bin:\x01\x02\x03", "bin:\x04\x05\x06"}
	for _, w := range want {
		if got := r.next(); got != w {
			t.Errorf("binary echo: %q, want %q", got, w)
		}
	}
	r.send("40/random")
	if got := r.next(); got != `44/random,{"message":"Invalid namespace"}` {
		t.Errorf("unknown namespace: %q", got)
	}
	r.send("40/custom,")
	r.next()
	r.next()
	r.send("41/custom,")
	if got := <-reasons; got != "/custom client namespace disconnect" {
		t.Errorf("got %q", got)
	}
	r.send("41")
	if got := <-reasons; got != "/ client namespace disconnect" {
		t.Errorf("got %q", got)
	}
	if !r.closed(3 * time.Second) {
		t.Error("the connection stayed open without a socket")
	}

	// Transport close.
	r = dialRaw(t, base, 4)
	r.send("40")
	r.next()
	r.ws.Close()
	select {
	case got := <-reasons:
		if got != "/ transport close" {
			t.Errorf("got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("no OnDisconnect after the transport closed")
	}

	// Bad input.
	r = dialRaw(t, base, 4)
	r.send("40")
	r.next()
	r.next()
	r.send(`42{}`)
	if !r.closed(3 * time.Second) {
		t.Error("bad input left the connection open")
	}
	if got := <-reasons; got != "/ parse error" {
		t.Errorf("got %q", got)
	}
}

func TestRealConnectTimeout(t *testing.T) {
	_, base := startReal(t, Options{ConnectTimeout: 200 * time.Millisecond})
	r := dialRaw(t, base, 4)
	start := time.Now()
	if !r.closed(3 * time.Second) {
		t.Fatal("not closed")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
}

// TestRealBroadcast: PrepareEvent's packet reaches WebSocket and polling
// clients alike, in order with the sockets' own events.
func TestRealBroadcast(t *testing.T) {
	var mu sync.Mutex
	var socks []*Socket
	srv, base := startReal(t, Options{OnConnection: func(s *Socket) {
		mu.Lock()
		socks = append(socks, s)
		mu.Unlock()
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type got struct {
		mu     sync.Mutex
		events []string
	}
	var clients []*got
	for _, tr := range []string{"websocket", "polling", "websocket"} {
		g := &got{}
		c, err := sioclient.Dial(ctx, base, sioclient.Options{Transport: tr, OnEvent: func(name string, args []any) {
			b, _ := appendJSON(nil, args)
			g.mu.Lock()
			g.events = append(g.events, name+string(b))
			g.mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, g)
	}
	p, err := PrepareEvent("new message", map[string]any{"msg": "<b>&</b>"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, s := range socks {
		s.Emit("own", 1)
		s.EmitPrepared(p)
		s.Emit("own", 2)
	}
	mu.Unlock()
	srv.Emit("get users", []string{"a"})
	want := []string{`own[1]`, `new message[{"msg":"<b>&</b>"}]`, `own[2]`, `get users[["a"]]`}
	for i, g := range clients {
		deadline := time.Now().Add(5 * time.Second)
		for {
			g.mu.Lock()
			ev := append([]string(nil), g.events...)
			g.mu.Unlock()
			if len(ev) >= len(want) {
				if strings.Join(ev, "\n") != strings.Join(want, "\n") {
					t.Errorf("client %d got %q", i, ev)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("client %d got %q", i, ev)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRealNoIdleGoroutines: connected, idle sockets hold no goroutine of
// this package.
func TestRealNoIdleGoroutines(t *testing.T) {
	_, base := startReal(t, Options{OnConnection: echo})
	var rs []*rawWS
	for i := 0; i < 50; i++ {
		r := dialRaw(t, base, 4)
		r.send("40")
		r.next()
		r.next()
		rs = append(rs, r)
	}
	// Executors of earlier tests' sockets may still be returning.
	deadline := time.Now().Add(3 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		stacks := string(buf[:runtimeStack(buf)])
		n := strings.Count(stacks, "socketio.(*serial).run")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d executor goroutines for %d idle sockets", n, len(rs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
