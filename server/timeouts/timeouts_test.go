package timeouts_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"weak"

	"github.com/chatd/chat/server/timeouts"
	"github.com/gorilla/websocket"
)

// A client that announces a body and stops sending it is cut off soon
// after the body timeout; without the deadline net/http waits forever.
func TestStalledBodyIsCutOff(t *testing.T) {
	bodyErr := make(chan error, 1)
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		bodyErr <- err
	}), 300*time.Millisecond, 0)
	srv := httptest.NewServer(h)
	defer srv.Close()

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhello")

	select {
	case err := <-bodyErr:
		if err == nil {
			t.Fatal("the handler read a whole body that was never sent")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was still reading the stalled body after 5 s")
	}
	if !closedWithin(c, 5*time.Second) {
		t.Fatal("the server kept the connection of a stalled body open")
	}
	t.Logf("stalled body cut off after %s", time.Since(start).Round(10*time.Millisecond))
}

// Requests without a body get no read deadline: a long-poll GET that the
// handler holds longer than the body timeout is answered normally, and
// the keep-alive connection serves the next request.
func TestRequestsWithoutBodyAreNotCut(t *testing.T) {
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "late answer")
	}), 200*time.Millisecond, 0)
	srv := httptest.NewServer(h)
	defer srv.Close()
	for i := range 2 {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "late answer" {
			t.Fatalf("request %d: got %q", i, b)
		}
	}
}

// A whole body that arrives in time is read as usual.
func TestBodyInTime(t *testing.T) {
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(b)
	}), time.Second, 0)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL, "text/plain", strings.NewReader("42[\"send message\",\"hi\"]"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != `42["send message","hi"]` {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

// wsPair serves one WebSocket behind Wrap with the given write timeout:
// serve runs on the server's side and its result arrives on the channel;
// the client's side is returned.
func wsPair(t *testing.T, write time.Duration, serve func(*websocket.Conn) error) (*websocket.Conn, <-chan error) {
	t.Helper()
	result := make(chan error, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			result <- err
			return
		}
		defer ws.Close()
		result <- serve(ws)
	}), 0, write))
	t.Cleanup(srv.Close)
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, result
}

// A WebSocket peer that never reads makes the server's writes fail once
// the kernel buffers are full and the write timeout has passed, so the
// server can drop it and what it queued for it. gorilla/websocket sets a
// zero write deadline before every frame; this checks that it does not
// undo ours.
func TestWebSocketPeerThatNeverReads(t *testing.T) {
	_, writeErr := wsPair(t, 300*time.Millisecond, func(ws *websocket.Conn) error {
		frame := []byte(strings.Repeat("x", 64<<10))
		// Bounded: 64 MiB is far more than loopback buffers hold.
		for range 1024 {
			if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
				return err
			}
		}
		return errors.New("wrote 64 MiB to a peer that reads nothing")
	})
	select {
	case err := <-writeErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("the server's write ended with %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server was still writing to a peer that reads nothing after 10 s")
	}
}

// A WebSocket peer that reads keeps its connection however long it lasts:
// the deadline is per write, not per connection.
func TestWebSocketPeerThatReadsIsKept(t *testing.T) {
	c, done := wsPair(t, 200*time.Millisecond, func(ws *websocket.Conn) error {
		for i := range 8 {
			time.Sleep(100 * time.Millisecond) // 800 ms in all, past the 200 ms deadline
			if err := ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "m%d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	for i := range 8 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, m, err := c.ReadMessage()
		if err != nil || string(m) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: %q %v", i, m, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}

// The deadline of one write does not outlive it: a non-blocking write
// through SyscallConn (how package wstransport delivers most frames) works
// long after the last Write's deadline would have passed.
func TestDeadlineEndsWithItsWrite(t *testing.T) {
	result := make(chan error, 1)
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			result <- err
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\n")
		if err := brw.Flush(); err != nil { // a Write, with its deadline
			result <- err
			return
		}
		time.Sleep(400 * time.Millisecond) // past that deadline
		sc, ok := c.(syscall.Conn)
		if !ok {
			result <- errors.New("the hijacked connection does not expose SyscallConn")
			return
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			result <- err
			return
		}
		var werr error
		if err := rc.Write(func(fd uintptr) bool {
			_, werr = syscall.Write(int(fd), []byte("late"))
			return true
		}); err != nil {
			result <- fmt.Errorf("raw write after the deadline: %w", err)
			return
		}
		result <- werr
	}), 0, 200*time.Millisecond)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	select {
	case err := <-result:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not finish")
	}
}

// After a WebSocket hijack the wrapper lets go of net/http's response:
// the Engine.IO library keeps the ResponseWriter it was given for the life
// of the connection, and through it net/http's buffers (about 8 KiB) stayed
// reachable for every idle WebSocket.
func TestHijackReleasesResponse(t *testing.T) {
	// With a write deadline and without one (WRITE_TIMEOUT off).
	for _, write := range []time.Duration{time.Second, 0} {
		t.Run(write.String(), func(t *testing.T) { testHijackReleasesResponse(t, write) })
	}
}

func testHijackReleasesResponse(t *testing.T, write time.Duration) {
	var kept http.ResponseWriter // what the library holds on to
	var released weak.Pointer[byte]
	done := make(chan error, 1)
	h := timeouts.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner := w.(interface{ Unwrap() http.ResponseWriter }).Unwrap()
		// A weak pointer to net/http's response value itself.
		released = weak.Make((*byte)(reflect.ValueOf(inner).UnsafePointer()))
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			done <- err
			return
		}
		c.Close()
		kept = w
		done <- nil
	}), 0, write)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50 && released.Value() != nil; i++ {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if released.Value() != nil {
		t.Fatal("net/http's response (and its buffers) is still reachable through the hijacked ResponseWriter")
	}
	if _, err := kept.Write([]byte("x")); !errors.Is(err, http.ErrHijacked) {
		t.Fatalf("writing to the kept ResponseWriter after the hijack: %v, want http.ErrHijacked", err)
	}
}

// closedWithin reports whether the peer closes c within d, discarding
// whatever it sends first (an error response).
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, bufio.NewReader(c))
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
