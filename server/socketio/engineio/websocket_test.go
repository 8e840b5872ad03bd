package engineio

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWebSocketDirect(t *testing.T) {
	ts := startServer(t, Options{PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	open := c.readText(t, false)
	if !strings.HasPrefix(open, `0{"sid":"`) || !strings.Contains(open, `"upgrades":[]`) {
		t.Fatal(open)
	}
	s := ts.session(t)
	if s.Transport() != "websocket" {
		t.Fatal(s.Transport())
	}
	c.text("4hello")
	c.send(opBinary, []byte{1, 2, 3})
	// A fragmented text message.
	c.c.Write(maskedFrame(0x01, []byte("4frag")))
	c.c.Write(maskedFrame(0x80, []byte("ment")))
	for _, want := range []string{"t:hello", "b:010203", "t:fragment"} {
		if got := ts.rec.nextMsg(t); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	s.Send("out")
	s.SendBinary([]byte{9})
	s.SendPrepared(Prepare("p1", "p2"))
	if got := c.readText(t, true); got != "4out" {
		t.Fatal(got)
	}
	f, _ := c.read(time.Second)
	if f.op != opBinary || !bytes.Equal(f.payload, []byte{9}) {
		t.Fatalf("%+v", f)
	}
	for _, want := range []string{"4p1", "4p2"} {
		if got := c.readText(t, true); got != want {
			t.Fatal(got)
		}
	}
	// WebSocket ping → pong, through the same queue.
	c.send(opPing, []byte("hi"))
	for {
		f, err := c.read(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if f.op == opPong {
			if string(f.payload) != "hi" {
				t.Fatal(f.payload)
			}
			break
		}
	}
	// The client's close packet ends it.
	c.text("1")
	if r := ts.rec.nextClose(t); r != "transport close" {
		t.Fatal(r)
	}
	ts.waitCount(t, 0)
}

func maskedFrame(b0 byte, payload []byte) []byte {
	b := []byte{b0, 0x80 | byte(len(payload)), 0, 0, 0, 0}
	return append(b, payload...) // zero mask: payload as is
}

func TestWebSocketV3(t *testing.T) {
	ts := startServer(t, Options{AllowEIO3: true, PingInterval: 100 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
	c := dialWS(t, ts, "EIO=3&transport=websocket")
	c.readText(t, false)
	s := ts.session(t)
	c.send(opBinary, []byte{4, 7, 8})
	if got := ts.rec.nextMsg(t); got != "b:0708" {
		t.Fatal(got)
	}
	s.SendBinary([]byte{5})
	f, _ := c.read(time.Second)
	if f.op != opBinary || !bytes.Equal(f.payload, []byte{4, 5}) {
		t.Fatalf("%+v", f)
	}
	c.text("2")
	if got := c.readText(t, false); got != "3" {
		t.Fatal(got)
	}
	// No more pings: ping timeout after 200 ms.
	if r := ts.rec.nextClose(t); r != "ping timeout" {
		t.Fatal(r)
	}
	ts.waitCount(t, 0)
}

func TestWebSocketHeartbeatV4(t *testing.T) {
	ts := startServer(t, Options{PingInterval: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	c.readText(t, false)
	for i := 0; i < 3; i++ {
		if got := c.readText(t, false); got != "2" {
			t.Fatal(got)
		}
		c.text("3")
	}
	if r := ts.rec.nextClose(t); r != "ping timeout" {
		t.Fatal(r)
	}
	ts.waitCount(t, 0)
}

// TestUpgradeKeepsOrder sends numbered messages without pause while a
// polling session upgrades: the client must get each exactly once, in
// order, part by polling and the rest by WebSocket.
func TestUpgradeKeepsOrder(t *testing.T) {
	var refused atomic.Int32
	ts := startServer(t, Options{OnUpgradeRefused: func(*Session, string) { refused.Add(1) }})
	sid := ts.handshake(t, 4)
	s := ts.session(t)
	q := "EIO=4&transport=polling&sid=" + sid
	const n = 2000
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				s.Send(fmt.Sprint(i))
			} else {
				s.SendPrepared(Prepare(fmt.Sprint(i)))
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond) // ~100 ms in all: the upgrade happens meanwhile
			}
		}
		<-stop
	}()
	var got []string
	viaWS := 0
	take := func(payload string) {
		for _, p := range strings.Split(payload, "\x1e") {
			if p == "" || p[0] != '4' {
				continue // noop, ping
			}
			got = append(got, p[1:])
		}
	}
	_, body := ts.do(t, "GET", q, "")
	take(body)
	// A poll waits while the probe runs, as a client's would.
	pollDone := make(chan string)
	go func() { _, b := ts.do(t, "GET", q, ""); pollDone <- b }()
	c := dialWS(t, ts, "EIO=4&transport=websocket&sid="+sid)
	c.text("2probe")
	if p := c.readText(t, false); p != "3probe" {
		t.Fatal(p)
	}
	take(<-pollDone)
	// The client has paused polling: now "5".
	c.text("5")
	for len(got) < n {
		m := c.readText(t, true)
		if m[0] == '4' {
			got = append(got, m[1:])
			viaWS++
		}
	}
	close(stop)
	<-sent
	for i, m := range got {
		if m != fmt.Sprint(i) {
			t.Fatalf("message %d is %q (of %d)", i, m, len(got))
		}
	}
	if s.Transport() != "websocket" || refused.Load() != 0 {
		t.Fatal(s.Transport(), refused.Load())
	}
	t.Logf("%d of %d messages by polling, %d by WebSocket", n-viaWS, n, viaWS)
	if code, _ := ts.do(t, "GET", q, ""); code != 400 {
		t.Fatal("poll after upgrade:", code)
	}
}

// TestPollDuringUpgrade is the official suite's "ignores HTTP requests
// with same sid after upgrade": "2probe" and "5" back to back, then a
// poll; the poll must be refused, never answered 200.
func TestPollDuringUpgrade(t *testing.T) {
	ts := startServer(t, Options{})
	for i := 0; i < 20; i++ {
		sid := ts.handshake(t, 4)
		ts.session(t)
		c := dialWS(t, ts, "EIO=4&transport=websocket&sid="+sid)
		c.text("2probe")
		c.text("5")
		if code, body := ts.do(t, "GET", "EIO=4&transport=polling&sid="+sid, ""); code != 400 {
			t.Fatalf("run %d: %d %q", i, code, body)
		}
		c.text("4hello")
		if m := ts.rec.nextMsg(t); m != "t:hello" {
			t.Fatal(m)
		}
	}
}

func TestFailedProbeReported(t *testing.T) {
	reasons := make(chan string, 4)
	ts := startServer(t, Options{OnUpgradeRefused: func(_ *Session, r string) { reasons <- r }})
	sid := ts.handshake(t, 4)
	s := ts.session(t)
	c := dialWS(t, ts, "EIO=4&transport=websocket&sid="+sid)
	c.text("4not a probe")
	select {
	case r := <-reasons:
		if r != "invalid upgrade packet" {
			t.Fatal(r)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no report")
	}
	// The session goes on polling.
	s.Send("still here")
	if code, body := ts.do(t, "GET", "EIO=4&transport=polling&sid="+sid, ""); code != 200 || body != "4still here" {
		t.Fatal(code, body)
	}
	// A second WebSocket during an upgrade is accepted then closed.
	c2 := dialWS(t, ts, "EIO=4&transport=websocket&sid="+sid)
	c3 := dialWS(t, ts, "EIO=4&transport=websocket&sid="+sid)
	f, err := c3.read(3 * time.Second)
	if err != nil || f.op != opClose {
		t.Fatalf("%+v %v", f, err)
	}
	_ = c2
	if r := <-reasons; r != "upgrade under way" {
		t.Fatal(r)
	}
}

// TestSlowPeerQueueBound: a peer that takes nothing while more than
// MaxQueued piles up is cut off and reported.
func TestSlowPeerQueueBound(t *testing.T) {
	slow := make(chan *Session, 1)
	ts := startServer(t, Options{MaxQueued: 256 << 10, OnSlowPeer: func(s *Session) { slow <- s }})
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	c.readText(t, false)
	s := ts.session(t)
	p := Prepare(strings.Repeat("x", 64<<10))
	deadline := time.Now().Add(5 * time.Second)
	for len(slow) == 0 && time.Now().Before(deadline) {
		s.SendPrepared(p)
	}
	select {
	case got := <-slow:
		if got != s {
			t.Fatal("wrong session")
		}
	case <-time.After(time.Second):
		t.Fatal("not cut off")
	}
	if r := ts.rec.nextClose(t); r != "transport error" {
		t.Fatal(r)
	}
	ts.waitCount(t, 0)
}

// TestSlowPeerWriteTimeout: a peer that takes no byte of pending data
// for WriteTimeout is cut off, even with the queue under its bound.
func TestSlowPeerWriteTimeout(t *testing.T) {
	slow := make(chan *Session, 1)
	ts := startServer(t, Options{MaxQueued: 64 << 20, WriteTimeout: 200 * time.Millisecond, OnSlowPeer: func(s *Session) { slow <- s }})
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	c.readText(t, false)
	s := ts.session(t)
	s.SendPrepared(Prepare(strings.Repeat("y", 16<<20)))
	select {
	case <-slow:
	case <-time.After(3 * time.Second):
		t.Fatal("not cut off")
	}
	ts.waitCount(t, 0)
}

// TestFramesNeverInterleave writes a large frame to a slow reader while
// the engine pings, the client's WebSocket pings are answered and small
// messages and shared frames are sent from other goroutines; the client
// parses the byte stream and every frame must be intact.
func TestFramesNeverInterleave(t *testing.T) {
	ts := startServer(t, Options{PingInterval: 5 * time.Millisecond, PingTimeout: 10 * time.Second, MaxQueued: 256 << 20, WriteTimeout: 10 * time.Second})
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	c.readText(t, false)
	// A slow reader: 16 KiB a millisecond. (Shrinking SO_RCVBUF after
	// the connection is up stalls loopback TCP instead: the window stays
	// below the MSS.)
	c.r = bufio.NewReaderSize(&throttled{r: c.r, chunk: 16 << 10, pause: time.Millisecond}, 4096)
	s := ts.session(t)

	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	shared := Prepare("shared-1", "shared-2")
	var wg sync.WaitGroup
	const bigs = 3
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := 0; i < bigs; i++ {
			s.Send(string(big))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			s.Send(fmt.Sprint("small-", i))
			s.SendPrepared(shared)
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			c.send(opPing, []byte(fmt.Sprint(i)))
			time.Sleep(2 * time.Millisecond)
		}
	}()

	var bigsSeen, smalls, shareds, pings, pongs int
	nextPong := 0
	// Until two engine pings as well: how many go out while the big frames
	// do depends on when the reader gets to the first (it answers, then
	// the next is due), so the count is not fixed; a second is certain.
	for bigsSeen < bigs || smalls < 200 || pongs < 100 || shareds < 400 || pings < 2 {
		f, err := c.read(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d big, %d small, %d pongs: %v", bigsSeen, smalls, pongs, err)
		}
		if !f.fin {
			t.Fatal("fragmented server frame")
		}
		switch {
		case f.op == opPong:
			if string(f.payload) != fmt.Sprint(nextPong) {
				t.Fatalf("pong %q, want %d", f.payload, nextPong)
			}
			nextPong++
			pongs++
		case f.op != opText:
			t.Fatalf("unexpected opcode %#x", f.op)
		case string(f.payload) == "2":
			pings++
			_ = c.text("3")
		case len(f.payload) == len(big)+1:
			if f.payload[0] != '4' || !bytes.Equal(f.payload[1:], big) {
				t.Fatal("large frame corrupted")
			}
			bigsSeen++
		case strings.HasPrefix(string(f.payload), "4small-"):
			if string(f.payload) != fmt.Sprint("4small-", smalls) {
				t.Fatalf("got %q, want small-%d", f.payload, smalls)
			}
			smalls++
		case string(f.payload) == "4shared-1" || string(f.payload) == "4shared-2":
			shareds++
		default:
			t.Fatalf("unexpected frame %q", f.payload[:min(len(f.payload), 40)])
		}
	}
	wg.Wait()
	if pings < 2 || shareds != 400 {
		t.Errorf("pings %d, shared frames %d", pings, shareds)
	}
	t.Logf("frames: %d big, %d small, %d shared, %d engine pings, %d pongs", bigsSeen, smalls, shareds, pings, pongs)
}

// TestHostileWebSocket: garbage frames and oversized messages end the
// session, never the server.
func TestHostileWebSocket(t *testing.T) {
	ts := startServer(t, Options{MaxPayload: 1000})
	cases := [][]byte{
		{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'},               // unmasked
		{0xF1, 0x80},                                        // reserved bits
		{0x83, 0x80, 0, 0, 0, 0},                            // reserved opcode
		{0x81, 0x80 | 127, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 2}, // 2^63-ish length
		{0x80, 0x80, 0, 0, 0, 0},                            // continuation without start
		append([]byte{0x81, 0x83, 0, 0, 0, 0}, "zzz"...),    // not an Engine.IO packet
		append([]byte{0x82, 0x80 | 126, 0x04, 0x00, 0, 0, 0, 0}, make([]byte, 1024)...), // > MaxPayload
	}
	for i, b := range cases {
		c := dialWS(t, ts, "EIO=4&transport=websocket")
		c.readText(t, false)
		ts.session(t)
		c.c.Write(b)
		if r := ts.rec.nextClose(t); r != "transport error" && r != "parse error" {
			t.Fatalf("case %d: %s", i, r)
		}
	}
	ts.waitCount(t, 0)
}

// TestCountReturnsToZero opens many sessions of every kind and ends them
// every way; the count must come back to 0. The heartbeat gives the 60
// sessions 2 s to be counted before the idle ones time out (with 200 ms, a
// loaded CI machine lost two of them before the count), and still ends
// the rest within waitCount's 5 s.
func TestCountReturnsToZero(t *testing.T) {
	ts := startServer(t, Options{AllowEIO3: true, PingInterval: time.Second, PingTimeout: time.Second})
	var clients []*wsClient
	for i := 0; i < 30; i++ {
		c := dialWS(t, ts, fmt.Sprintf("EIO=%d&transport=websocket", 3+i%2))
		c.readText(t, false)
		clients = append(clients, c)
		ts.session(t)
	}
	for i := 0; i < 30; i++ {
		sid := ts.handshake(t, 3+i%2)
		ts.session(t)
		if i%3 == 0 {
			c := dialWS(t, ts, fmt.Sprintf("EIO=%d&transport=websocket&sid=%s", 3+i%2, sid))
			c.text("2probe")
			c.readText(t, false)
			c.text("5")
			clients = append(clients, c)
		}
	}
	if n := ts.Count(); n != 60 {
		t.Fatal(n)
	}
	for i, c := range clients {
		if i%2 == 0 {
			c.c.Close()
		}
	}
	ts.waitCount(t, 0)
}

// throttled reads at most chunk bytes a call, pausing before each.
type throttled struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (t *throttled) Read(p []byte) (int, error) {
	time.Sleep(t.pause)
	return t.r.Read(p[:min(len(p), t.chunk)])
}

// panicky panics on every message.
type panicky struct{ closed chan string }

func (p panicky) OnMessage(*Session, []byte, bool)  { panic("handler bug") }
func (p panicky) OnClose(_ *Session, reason string) { p.closed <- reason }

func TestHandlerPanicEndsOnlyItsSession(t *testing.T) {
	h := panicky{closed: make(chan string, 1)}
	ts := startServer(t, Options{OnOpen: func(s *Session) { s.SetHandler(h) }})
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	c.readText(t, false)
	c.text("4boom")
	select {
	case <-h.closed:
	case <-time.After(3 * time.Second):
		t.Fatal("session not closed")
	}
	ts.waitCount(t, 0)
}

func TestCloseInOnOpen(t *testing.T) {
	closed := make(chan string, 2)
	ts := startServer(t, Options{OnClose: func(_ *Session, r string) { closed <- r }, OnOpen: func(s *Session) { s.Close("refused") }})
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	if _, err := c.read(3 * time.Second); err == nil {
		t.Fatal("WebSocket of a session closed in OnOpen got a frame")
	}
	ts.do(t, "GET", "EIO=4&transport=polling", "")
	for i := 0; i < 2; i++ {
		if r := <-closed; r != "refused" {
			t.Fatal(r)
		}
	}
	ts.waitCount(t, 1) // the polling one waits for its last poll
}

// TestSecondWebSocketDuringUpgrade is the official suite's "ignores
// WebSocket connection with same sid after upgrade": a second WebSocket for
// the sid, opened right after the first one's "2probe" and "5", is closed,
// and the first carries the session. It failed about once in 20 suite
// runs while the first WebSocket was attached only after its handshake
// was answered: a second one could get in between and take its place.
func TestSecondWebSocketDuringUpgrade(t *testing.T) {
	ts := startServer(t, Options{})
	for i := range 200 {
		sid := ts.handshake(t, 4)
		ts.session(t)
		q := "EIO=4&transport=websocket&sid=" + sid
		c1 := dialWS(t, ts, q)
		c1.text("2probe")
		c1.text("5")
		c2 := dialWS(t, ts, q)
		for {
			f, err := c2.read(3 * time.Second)
			if err != nil || f.op == opClose {
				break
			}
			if f.op == opText {
				t.Fatalf("run %d: the second WebSocket got %q", i, f.payload)
			}
		}
		c1.text("4hello")
		if m := ts.rec.nextMsg(t); m != "t:hello" {
			t.Fatalf("run %d: %q", i, m)
		}
		c1.c.Close()
		c2.c.Close()
	}
}

// TestCloseRightAfterPollerStart: a server closed right after its first
// WebSocket started nbio's pollers closes. Without waitPollers, nbio
// v1.6.8 forgot a Stop that came before a poller's goroutine ran and
// Close hung for ever (7 of 8 start-close pairs in a row here).
func TestCloseRightAfterPollerStart(t *testing.T) {
	for i := range 200 {
		srv := NewServer(Options{})
		if _, err := srv.poller(); err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() {
			srv.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("start-close pair %d: Close still waiting for nbio after 10 s", i)
		}
	}
}
