package wstransport_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"

	"github.com/chatd/chat/server/timeouts"
	"github.com/chatd/chat/server/wstransport"
)

// server is a library Socket.IO server with our WebSocket transport; each
// new socket is handed to onConn.
func server(t *testing.T, b *wstransport.Builder, onConn func(*socket.Socket)) string {
	t.Helper()
	opts := socket.DefaultServerOptions()
	opts.SetPath("/socket.io")
	opts.SetTransports(types.NewSet[transports.TransportCtor](&transports.PollingBuilder{}, b))
	io := socket.NewServer(nil, opts)
	io.On("connection", func(args ...any) { onConn(args[0].(*socket.Socket)) })
	srv := httptest.NewServer(io.ServeHandler(opts))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { io.Close(nil) })
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/socket.io/?EIO=4&transport=websocket"
}

// dial opens an Engine.IO WebSocket session and connects to "/".
func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if m := read(t, c); !strings.HasPrefix(m, "0{") {
		t.Fatalf("open packet: %q", m)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("40")); err != nil {
		t.Fatal(err)
	}
	if m := read(t, c); !strings.HasPrefix(m, "40{") {
		t.Fatalf("connect answer: %q", m)
	}
	return c
}

func read(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, m, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(m)
}

// Frames of every length class decode, with gorilla's reader, to the
// payload that went in.
func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		for _, bin := range []bool{false, true} {
			frame := wstransport.AppendFrame([]byte("prefix"), payload, bin)
			if !bytes.HasPrefix(frame, []byte("prefix")) {
				t.Fatal("AppendFrame dropped what b held")
			}
			mt, got := decodeFrame(t, frame[len("prefix"):])
			want := websocket.TextMessage
			if bin {
				want = websocket.BinaryMessage
			}
			if mt != want || !bytes.Equal(got, payload) {
				t.Fatalf("length %d binary %v: got type %d, %d bytes", n, bin, mt, len(got))
			}
		}
	}
}

// decodeFrame reads one server frame with gorilla's client, through a
// WebSocket connection whose server side writes the raw bytes.
func decodeFrame(t *testing.T, frame []byte) (int, []byte) {
	t.Helper()
	srv := httptest.NewServer(nil)
	defer srv.Close()
	srv.Config.Handler = httpHandler(func(up *websocket.Conn) { up.NetConn().Write(frame) })
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, m, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("gorilla could not read the frame: %v", err)
	}
	return mt, m
}

// Events, acknowledgements and shared frames reach the client complete
// and in the order they were sent, however they are queued.
func TestOrderAcrossSendAndWriteFrame(t *testing.T) {
	const n = 2000
	url := server(t, &wstransport.Builder{}, func(s *socket.Socket) {
		tr := s.Conn().Transport().(*wstransport.Transport)
		go func() {
			for i := range n {
				if i%2 == 0 {
					s.Emit("n", i) // through the engine: Send
				} else {
					tr.WriteFrame(wstransport.MessageFrame(fmt.Appendf(nil, `2["n",%d]`, i)))
				}
			}
		}()
	})
	c := dial(t, url)
	for i := range n {
		m := read(t, c)
		if m == "2" { // a ping
			c.WriteMessage(websocket.TextMessage, []byte("3"))
			m = read(t, c)
		}
		if want := fmt.Sprintf(`42["n",%d]`, i); m != want {
			t.Fatalf("message %d: got %q, want %q", i, m, want)
		}
	}
}

// A client that reads nothing is disconnected once its queue outgrows the
// bound, and the hook hears of it; the server does not hold more.
func TestSlowPeerIsDisconnected(t *testing.T) {
	var slow atomic.Value
	closed := make(chan string, 1)
	start := make(chan struct{})
	frame := wstransport.MessageFrame([]byte(`2["big","` + strings.Repeat("y", 16<<10) + `"]`))
	b := &wstransport.Builder{MaxQueued: 256 << 10, OnSlowPeer: func(sid string) { slow.Store(sid) }}
	url := server(t, b, func(s *socket.Socket) {
		s.On("disconnect", func(args ...any) { closed <- fmt.Sprint(args...) })
		tr := s.Conn().Transport().(*wstransport.Transport)
		go func() {
			<-start
			// Bounded: 4,096 frames of 16 KiB is 64 MiB, far past any
			// socket buffer and the 256 KiB bound.
			for range 4096 {
				if !tr.WriteFrame(frame) {
					return
				}
			}
		}()
	})
	dial(t, url)
	// Only once the client has its handshake (a flood before it would
	// reset the connection under it). Not asked for with an event: the
	// library may refuse an event sent right after CONNECT (the connect
	// race the chat server's connectGate works around).
	close(start)
	// And never read again.
	select {
	case reason := <-closed:
		t.Logf("disconnected: %s", reason)
	case <-time.After(10 * time.Second):
		t.Fatal("a client that reads nothing was still connected after 10 s")
	}
	if slow.Load() == nil {
		t.Fatal("OnSlowPeer was not called")
	}
}

// What is queued before the server closes a socket still reaches the
// client: here an event and the DISCONNECT packet.
func TestCloseWritesWhatIsQueued(t *testing.T) {
	url := server(t, &wstransport.Builder{}, func(s *socket.Socket) {
		s.Emit("bye", "see you")
		s.Disconnect(true)
	})
	c := dial(t, url)
	var got []string
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, m, err := c.ReadMessage()
		if err != nil {
			break
		}
		got = append(got, string(m))
	}
	if len(got) < 2 || got[0] != `42["bye","see you"]` || got[1] != "41" {
		t.Fatalf("before the close the client got %q, want the event then 41", got)
	}
}

type httpHandler func(*websocket.Conn)

func (h httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	h(c)
	time.Sleep(100 * time.Millisecond) // let the client read before the close
}

// A delivery that fails (here: the peer's queue outgrew its bound) must
// not run the engine's close chain on the caller's goroutine: the
// application may be delivering under a lock its disconnect handler takes,
// as the chat hub does. Found by the hostile-client suite, where it stopped
// the sender's socket for good.
func TestFailedWriteDoesNotDeadlockTheCaller(t *testing.T) {
	var mu sync.Mutex // the application's lock: held while delivering, taken on disconnect
	disconnected := make(chan struct{})
	transport := make(chan *wstransport.Transport, 1)
	url := server(t, &wstransport.Builder{MaxQueued: 64 << 10}, func(s *socket.Socket) {
		s.On("disconnect", func(...any) {
			mu.Lock()
			mu.Unlock()
			close(disconnected)
		})
		transport <- s.Conn().Transport().(*wstransport.Transport)
	})
	dial(t, url) // and never read again
	tr := <-transport

	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		mu.Lock()
		defer mu.Unlock()
		frame := wstransport.MessageFrame([]byte(`2["big","` + strings.Repeat("z", 16<<10) + `"]`))
		// Bounded: the socket buffers and the 64 KiB bound are full long
		// before 64 MiB.
		for i := 0; i < 4096 && tr.WriteFrame(frame); i++ {
		}
	}()
	select {
	case <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("a failed delivery under the application's lock never returned: deadlock")
	}
	select {
	case <-disconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("the socket of the slow peer was never disconnected")
	}
}

// A peer that stops reading is cut off by the connection's write deadline
// (package timeouts) even when no queue bound applies, and reported as
// slow.
func TestPeerPastWriteDeadlineIsReportedSlow(t *testing.T) {
	slow := make(chan string, 1)
	start := make(chan struct{})
	frame := wstransport.MessageFrame([]byte(`2["big","` + strings.Repeat("w", 16<<10) + `"]`))
	b := &wstransport.Builder{MaxQueued: -1, OnSlowPeer: func(sid string) { slow <- sid }}
	opts := socket.DefaultServerOptions()
	opts.SetPath("/socket.io")
	opts.SetTransports(types.NewSet[transports.TransportCtor](&transports.PollingBuilder{}, b))
	io := socket.NewServer(nil, opts)
	io.On("connection", func(args ...any) {
		tr := args[0].(*socket.Socket).Conn().Transport().(*wstransport.Transport)
		go func() {
			<-start
			// Bounded: 64 MiB in all, stops at the first refusal.
			for range 4096 {
				if !tr.WriteFrame(frame) {
					return
				}
			}
		}()
	})
	srv := httptest.NewServer(timeouts.Wrap(io.ServeHandler(opts), 0, 300*time.Millisecond))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { io.Close(nil) })
	dial(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/socket.io/?EIO=4&transport=websocket")
	close(start) // and never read again
	select {
	case <-slow:
	case <-time.After(10 * time.Second):
		t.Fatal("a peer that reads nothing was not reported slow within 10 s")
	}
}
