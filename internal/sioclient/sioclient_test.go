package sioclient_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/internal/testproc"
	"github.com/chatd/chat/server"
	"github.com/chatd/chat/store/sqlite"
)

// The heartbeat of the test server: short, so that several pings (answered
// with pongs over POST) pass within a test.
const (
	pingInterval = 200 * time.Millisecond
	pingTimeout  = 300 * time.Millisecond
)

// chatServer is the real chat server in process, behind wrap.
func chatServer(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testproc.Log{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.New(server.Config{BcryptCost: 4, PingInterval: pingInterval, PingTimeout: pingTimeout}, st, log)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		st.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return hs.URL
}

// events collects what a connection receives.
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) on(name string, args []any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, name)
}

func (e *events) count(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, x := range e.list {
		if x == name {
			n++
		}
	}
	return n
}

func call(t *testing.T, c *sioclient.Conn, ev string, args ...any) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := c.Call(ctx, ev, args...)
	if err != nil {
		t.Fatalf("%s: %v", ev, err)
	}
	m, _ := a[0].(map[string]any)
	return m
}

func dial(t *testing.T, url, transport string, ev *events) *sioclient.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := sioclient.Dial(ctx, url, sioclient.Options{Transport: transport, OnEvent: ev.on, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("%s: %v", transport, err)
	}
	return c
}

// TestPolling: a polling client and a WebSocket client chat through the
// real server, the polling one survives many heartbeats (the server's pings
// answered with pongs over POST), and Close leaves no goroutine behind.
func TestPolling(t *testing.T) {
	var polls, posts atomic.Int64
	url := chatServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("transport") == "polling" {
				if r.Method == http.MethodGet {
					polls.Add(1)
				} else {
					posts.Add(1)
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	var pe, we events
	p := dial(t, url, "polling", &pe)
	w := dial(t, url, "websocket", &we)
	if p.SID == "" {
		t.Fatal("no Socket.IO session id")
	}
	for _, x := range []struct {
		c    *sioclient.Conn
		name string
	}{{p, "poller"}, {w, "socket"}} {
		if a := call(t, x.c, "register", map[string]any{"username": x.name, "password": "pw"}); a["success"] != true {
			t.Fatalf("register %s: %v", x.name, a)
		}
		if a := call(t, x.c, "login", map[string]any{"username": x.name, "password": "pw"}); a["success"] != true {
			t.Fatalf("login %s: %v", x.name, a)
		}
	}
	// Several Calls at once: their packets share POSTs, never overlap.
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a := call(t, p, "send message", "hello "+string(rune('a'+i))); a["success"] != true {
				t.Errorf("send: %v", a)
			}
		}()
	}
	wg.Wait()
	if a := call(t, w, "send message", "hi"); a["success"] != true {
		t.Fatalf("send: %v", a)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pe.count("new message") < 6 || we.count("new message") < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("new message: poller saw %d, socket %d, want 6 each", pe.count("new message"), we.count("new message"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Stay connected through many ping intervals.
	time.Sleep(8 * (pingInterval + pingTimeout))
	if err := p.Err(); err != nil {
		t.Fatalf("polling connection ended while idle: %v", err)
	}
	if a := call(t, p, "send message", "still here"); a["success"] != true {
		t.Fatalf("send after idling: %v", a)
	}
	if n := polls.Load(); n < 8 {
		t.Errorf("only %d polls over %v of pings", n, 8*(pingInterval+pingTimeout))
	}
	t.Logf("polling: %d GETs, %d POSTs", polls.Load(), posts.Load())
	p.Close()
	w.Close()
	if !errorsIs(p.Err(), sioclient.ErrClosed) {
		t.Errorf("after Close: %v", p.Err())
	}
	if _, err := p.Call(context.Background(), "send message", "x"); err == nil {
		t.Error("Call on a closed connection succeeded")
	}
	// Everything of the client ends, its connections included: the server
	// answers the outstanding poll when the session closes.
	deadline = time.Now().Add(5 * time.Second)
	for {
		left := clientGoroutines()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d client goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientGoroutines returns the stacks of goroutines of this package or of
// an HTTP client connection.
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "chat/internal/sioclient.(") || strings.Contains(g, "net/http.(*persistConn)") {
			out = append(out, g)
		}
	}
	return out
}

// hangWriter holds a response in progress once hung is set.
type hangWriter struct {
	http.ResponseWriter
	r    *http.Request
	hung *atomic.Bool
	hold func(*http.Request)
}

func (w *hangWriter) WriteHeader(code int) {
	if w.hung.Load() {
		w.hold(w.r)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *hangWriter) Write(b []byte) (int, error) {
	if w.hung.Load() {
		w.hold(w.r)
	}
	return w.ResponseWriter.Write(b)
}

func (w *hangWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func errorsIs(err, target error) bool { return err == target }

// TestPollingHungServer: when the server stops answering, the connection
// ends after its ping interval + timeout, while the requests already sent
// stay out until RequestTimeout, as a browser's do (a proxy counts an
// upstream failure only when such a request times out).
func TestPollingHungServer(t *testing.T) {
	// A SIGSTOPped server: from the moment hung is set, nothing is
	// answered, neither new requests nor those in progress.
	var hung atomic.Bool
	var mu sync.Mutex
	open := map[string]bool{} // requests held: method+sid+time → still open
	release := make(chan struct{})
	hold := func(r *http.Request) {
		key := fmt.Sprintf("%s %s %v", r.Method, r.URL.RawQuery, time.Now().UnixNano())
		mu.Lock()
		open[key] = true
		mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		mu.Lock()
		open[key] = false
		mu.Unlock()
	}
	url := chatServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hung.Load() {
				io.Copy(io.Discard, r.Body) // so that the server notices the client leaving
				hold(r)
				return
			}
			h.ServeHTTP(&hangWriter{w, r, &hung, hold}, r)
		})
	})
	counts := func() (held, stillOpen int, which []string) {
		mu.Lock()
		defer mu.Unlock()
		for k, o := range open {
			held++
			if o {
				stillOpen++
				which = append(which, k)
			}
		}
		return
	}
	defer close(release)
	var closed atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	const reqTimeout = 3 * time.Second
	c, err := sioclient.Dial(ctx, url, sioclient.Options{Transport: "polling", RequestTimeout: reqTimeout,
		OnClose: func(err error) { closed.Store(err) }})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * pingInterval)
	hung.Store(true)
	t0 := time.Now()
	select {
	case <-c.Done():
	case <-time.After(10 * (pingInterval + pingTimeout)):
		t.Fatal("the connection outlived a silent server")
	}
	took := time.Since(t0)
	if took > 2*(pingInterval+pingTimeout)+500*time.Millisecond {
		t.Errorf("a silent server was noticed after %v, want about %v", took, pingInterval+pingTimeout)
	}
	if err, _ := closed.Load().(error); err == nil || !strings.Contains(err.Error(), "no packet") {
		t.Errorf("OnClose got %v", closed.Load())
	}
	// The poll that was out, and the close the client sent, are still
	// waiting: nothing cancelled them.
	if held, stillOpen, _ := counts(); held < 1 || stillOpen != held {
		t.Errorf("after the connection ended: %d requests held by the hung server, %d of them still open; want ≥1, all", held, stillOpen)
	}
	c.Close() // returns at once
	// RequestTimeout plus room for a loaded machine (the race detector,
	// other test packages on the same cores) to notice the closed
	// connections: what matters is that they end, not to the second.
	deadline := time.Now().Add(reqTimeout + 10*time.Second)
	for {
		held, stillOpen, which := counts()
		if stillOpen == 0 {
			t.Logf("hung server noticed after %v; %d requests left out until RequestTimeout", took.Round(time.Millisecond), held)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d held requests still open after RequestTimeout: %v", stillOpen, held, which)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
