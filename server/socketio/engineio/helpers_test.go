package engineio

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Handler that records what each session receives.
type recorder struct {
	mu     sync.Mutex
	msgs   []string // "t:<text>" or "b:<hex>"
	closes []string
	msgCh  chan string
	closed chan string
}

func newRecorder() *recorder {
	return &recorder{msgCh: make(chan string, 4096), closed: make(chan string, 16384)}
}

func (r *recorder) OnMessage(s *Session, data []byte, binary bool) {
	m := "t:" + string(data)
	if binary {
		m = fmt.Sprintf("b:%x", data)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.msgCh <- m
}

func (r *recorder) OnClose(s *Session, reason string) {
	r.mu.Lock()
	r.closes = append(r.closes, reason)
	r.mu.Unlock()
	r.closed <- reason
}

func (r *recorder) nextMsg(t *testing.T) string {
	t.Helper()
	select {
	case m := <-r.msgCh:
		return m
	case <-time.After(3 * time.Second):
		t.Fatal("no message within 3 s")
		return ""
	}
}

func (r *recorder) nextClose(t *testing.T) string {
	t.Helper()
	select {
	case m := <-r.closed:
		return m
	case <-time.After(3 * time.Second):
		t.Fatal("no close within 3 s")
		return ""
	}
}

// testServer is an engine behind httptest, on 127.0.0.1.
type testServer struct {
	*Server
	rec      *recorder
	url      string // http://127.0.0.1:port/engine.io/
	sessions chan *Session
}

func startServer(t testing.TB, o Options) *testServer {
	t.Helper()
	ts := &testServer{rec: newRecorder(), sessions: make(chan *Session, 16384)}
	if o.OnOpen == nil {
		o.OnOpen = func(s *Session) {
			s.SetHandler(ts.rec)
			ts.sessions <- s
		}
	}
	ts.Server = NewServer(o)
	hs := httptest.NewServer(ts.Server)
	ts.url = hs.URL + "/engine.io/"
	t.Cleanup(func() {
		ts.Server.Close()
		hs.Close()
	})
	return ts
}

func (ts *testServer) session(t testing.TB) *Session {
	t.Helper()
	select {
	case s := <-ts.sessions:
		return s
	case <-time.After(3 * time.Second):
		t.Fatal("no session opened within 3 s")
		return nil
	}
}

func (ts *testServer) do(t testing.TB, method, query, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+"?"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, query, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// handshake opens a polling session and returns its sid.
func (ts *testServer) handshake(t testing.TB, eio int) string {
	t.Helper()
	code, body := ts.do(t, "GET", fmt.Sprintf("EIO=%d&transport=polling", eio), "")
	if code != 200 {
		t.Fatalf("handshake: %d %s", code, body)
	}
	i := strings.Index(body, `"sid":"`)
	if i < 0 {
		t.Fatalf("handshake: no sid in %q", body)
	}
	sid := body[i+7:]
	return sid[:strings.IndexByte(sid, '"')]
}

func (ts *testServer) waitCount(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for ts.Count() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Count() = %d, want %d", ts.Count(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wsClient is a raw WebSocket client: it parses the server's byte stream
// itself, so tests see exactly the frames written.
type wsClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialWS(t testing.TB, ts *testServer, query string) *wsClient {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimSuffix(ts.url, "/engine.io/"), "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	fmt.Fprintf(c, "GET /engine.io/?%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		query, host, base64.StdEncoding.EncodeToString(k[:]))
	r := bufio.NewReaderSize(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		c.Close()
		t.Fatalf("WebSocket handshake: %q %v", status, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return &wsClient{c: c, r: r}
}

// send writes one masked client frame.
func (w *wsClient) send(op byte, payload []byte) error {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	_, err := w.c.Write(b)
	return err
}

func (w *wsClient) text(s string) error { return w.send(opText, []byte(s)) }

// rawFrame is one server frame as read off the wire.
type rawFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// read reads one server frame and checks its header is well formed.
func (w *wsClient) read(timeout time.Duration) (rawFrame, error) {
	_ = w.c.SetReadDeadline(time.Now().Add(timeout))
	var f rawFrame
	var h [2]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		return f, err
	}
	if h[0]&0x70 != 0 {
		return f, fmt.Errorf("reserved bits set: %#x", h[0])
	}
	f.fin = h[0]&0x80 != 0
	f.op = h[0] & 0x0F
	if h[1]&0x80 != 0 {
		return f, fmt.Errorf("server frame masked")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.r, b[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.r, b[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	switch f.op {
	case opText, opBinary, opClose, opPong, opPing:
	default:
		return f, fmt.Errorf("bad opcode %#x", f.op)
	}
	if n > 1<<30 {
		return f, fmt.Errorf("frame length %d", n)
	}
	f.payload = make([]byte, n)
	_, err := io.ReadFull(w.r, f.payload)
	return f, err
}

// readText reads frames until a text frame and returns it, answering the
// engine's pings if pong is set.
func (w *wsClient) readText(t testing.TB, pong bool) string {
	t.Helper()
	for {
		f, err := w.read(3 * time.Second)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if f.op != opText {
			continue
		}
		if pong && string(f.payload) == "2" {
			_ = w.text("3")
			continue
		}
		return string(f.payload)
	}
}
