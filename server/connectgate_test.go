package server_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/server"
)

// TestConnectRace emits the moment each connection is acknowledged, as
// socket.io-client does with emits buffered before connecting. Without
// connectGate the library force-closes some of these connections (see
// connectgate.go) and their events are lost.
func TestConnectRace(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	const n = 150
	lost := 0
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := sioclient.Dial(ctx, e.url, sioclient.Options{})
		if err != nil {
			cancel()
			t.Fatalf("dial %d: %v", i, err)
		}
		if _, err := c.Call(ctx, "logout"); err != nil {
			lost++
			t.Logf("connection %d: first event lost: %v", i, err)
		}
		cancel()
		c.Close()
	}
	if lost > 0 {
		t.Errorf("%d of %d first events lost to the connect race", lost, n)
	}
}

// TestHeartbeatRace holds connections through many ping cycles with a
// timeout shorter than the interval, the configuration in which the
// library's heartbeat race (see heartbeatWorkaround) closed healthy
// sessions; with the workaround every connection survives.
func TestHeartbeatRace(t *testing.T) {
	if testing.Short() {
		t.Skip("holds connections for 3 s")
	}
	e := startServer(t, server.Config{PingInterval: 100 * time.Millisecond, PingTimeout: 50 * time.Millisecond}, nil)
	const n = 40
	conns := make([]*sioclient.Conn, n)
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := sioclient.Dial(ctx, e.url, sioclient.Options{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		t.Cleanup(func() { c.Close() })
	}
	time.Sleep(3 * time.Second) // 30 ping cycles
	dropped := 0
	for _, c := range conns {
		if c.Err() != nil {
			dropped++
		}
	}
	if dropped > 0 {
		t.Errorf("%d of %d healthy connections closed by the server within 30 ping cycles", dropped, n)
	}
}

// TestSecondConnectCloses sends a second CONNECT to "/" the moment the first
// is acknowledged. Node closes such a connection; without the gate holding
// the second CONNECT back, the library sometimes finds no socket yet and
// connects a second one instead.
func TestSecondConnectCloses(t *testing.T) {
	e := startServer(t, server.Config{}, nil)
	wsURL := "ws" + strings.TrimPrefix(e.url, "http") + "/socket.io/?EIO=4&transport=websocket"
	const n = 100
	alive := 0
	for i := range n {
		c, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, open, err := c.ReadMessage(); err != nil || !strings.HasPrefix(string(open), "0{") {
			t.Fatalf("connection %d: engine open: %q %v", i, open, err)
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("40")); err != nil {
			t.Fatal(err)
		}
		if _, ack, err := c.ReadMessage(); err != nil || !strings.HasPrefix(string(ack), "40{") {
			t.Fatalf("connection %d: connect ack: %q %v", i, ack, err)
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("40")); err != nil {
			t.Fatal(err)
		}
		// Anything but the end of the connection (a second connect ack, a
		// ping, the history) within 2 s means it stayed open.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					alive++
					t.Logf("connection %d: still open 2 s after a second CONNECT", i)
				}
				break
			}
			if strings.HasPrefix(string(msg), "40{") {
				alive++
				t.Logf("connection %d: second CONNECT acknowledged: %q", i, msg)
				break
			}
		}
		c.Close()
	}
	if alive > 0 {
		t.Errorf("%d of %d connections survived a second CONNECT to /", alive, n)
	}
}
