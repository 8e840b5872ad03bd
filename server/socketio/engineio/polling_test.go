package engineio

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHandshakeV4(t *testing.T) {
	ts := startServer(t, Options{PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	code, body := ts.do(t, "GET", "EIO=4&transport=polling", "")
	if code != 200 || !strings.HasPrefix(body, `0{"sid":"`) ||
		!strings.HasSuffix(body, `","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}`) {
		t.Fatalf("%d %q", code, body)
	}
	if s := ts.session(t); s.Protocol() != 4 || s.Transport() != "polling" {
		t.Fatalf("protocol %d transport %s", s.Protocol(), s.Transport())
	}
}

func TestHandshakeV3(t *testing.T) {
	ts := startServer(t, Options{AllowEIO3: true, PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	code, body := ts.do(t, "GET", "EIO=3&transport=polling", "")
	i := strings.IndexByte(body, ':')
	if code != 200 || i < 0 || !strings.HasSuffix(body, `"pingInterval":300,"pingTimeout":200}`) ||
		body[:i] != fmt.Sprint(len(body)-i-1) {
		t.Fatalf("%d %q", code, body)
	}
	if s := ts.session(t); s.Protocol() != 3 {
		t.Fatal("protocol", s.Protocol())
	}
	// Without AllowEIO3, EIO=3 is refused.
	ts4 := startServer(t, Options{})
	if code, _ := ts4.do(t, "GET", "EIO=3&transport=polling", ""); code != 400 {
		t.Fatal("EIO=3 accepted without AllowEIO3:", code)
	}
}

func TestAcceptRefusesAndKeepsData(t *testing.T) {
	ts := startServer(t, Options{Accept: func(r *http.Request) (any, error) {
		if r.URL.Query().Get("token") != "ok" {
			return nil, errors.New("bad token")
		}
		return r.RemoteAddr, nil
	}})
	if code, body := ts.do(t, "GET", "EIO=4&transport=polling", ""); code != 403 || body != `{"code":4,"message":"bad token"}` {
		t.Fatalf("%d %s", code, body)
	}
	ts.do(t, "GET", "EIO=4&transport=polling&token=ok", "")
	if s := ts.session(t); !strings.HasPrefix(s.Data().(string), "127.0.0.1:") {
		t.Fatalf("Data() = %v", s.Data())
	}
}

func TestPollingSendReceive(t *testing.T) {
	ts := startServer(t, Options{})
	sid := ts.handshake(t, 4)
	s := ts.session(t)
	q := "EIO=4&transport=polling&sid=" + sid
	if code, body := ts.do(t, "POST", q, "4hello\x1ebAQIDBA==\x1e4é"); code != 200 || body != "ok" {
		t.Fatalf("POST: %d %s", code, body)
	}
	for _, want := range []string{"t:hello", "b:01020304", "t:é"} {
		if got := ts.rec.nextMsg(t); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	s.Send("one")
	s.SendBinary([]byte{1, 2})
	s.SendPrepared(Prepare("two", "three"))
	if code, body := ts.do(t, "GET", q, ""); code != 200 || body != "4one\x1ebAQI=\x1e4two\x1e4three" {
		t.Fatalf("GET: %d %q", code, body)
	}
	// A pending poll is answered when something is sent.
	done := make(chan string)
	go func() { _, b := ts.do(t, "GET", q, ""); done <- b }()
	time.Sleep(50 * time.Millisecond)
	s.Send("later")
	if b := <-done; b != "4later" {
		t.Fatalf("pending poll got %q", b)
	}
}

func TestPollingV3(t *testing.T) {
	ts := startServer(t, Options{AllowEIO3: true, PingInterval: 100 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
	sid := ts.handshake(t, 3)
	s := ts.session(t)
	q := "EIO=3&transport=polling&sid=" + sid
	if code, _ := ts.do(t, "POST", q, "6:4héllo10:b4AQIDBA==1:2"); code != 200 {
		t.Fatal(code)
	}
	for _, want := range []string{"t:héllo", "b:01020304"} {
		if got := ts.rec.nextMsg(t); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	s.Send("😀")
	s.SendBinary([]byte{1, 2, 3, 4})
	// The pong answers the client's ping.
	if code, body := ts.do(t, "GET", q, ""); code != 200 || body != "1:33:4😀10:b4AQIDBA==" {
		t.Fatalf("GET: %d %q", code, body)
	}
	// Client-driven heartbeat: pings keep the session, silence ends it
	// after pingInterval+pingTimeout.
	for i := 0; i < 4; i++ {
		time.Sleep(80 * time.Millisecond)
		if code, _ := ts.do(t, "POST", q, "1:2"); code != 200 {
			t.Fatalf("ping %d refused: %d", i, code)
		}
	}
	if got := ts.rec.nextClose(t); got != "ping timeout" {
		t.Fatalf("close reason %q", got)
	}
	ts.waitCount(t, 0)
}

func TestHeartbeatV4(t *testing.T) {
	ts := startServer(t, Options{PingInterval: 60 * time.Millisecond, PingTimeout: 60 * time.Millisecond})
	sid := ts.handshake(t, 4)
	q := "EIO=4&transport=polling&sid=" + sid
	for i := 0; i < 3; i++ {
		if code, body := ts.do(t, "GET", q, ""); code != 200 || body != "2" {
			t.Fatalf("poll %d: %d %q", i, code, body)
		}
		ts.do(t, "POST", q, "3")
	}
	// No pong: closed PingTimeout after the ping.
	start := time.Now()
	if code, body := ts.do(t, "GET", q, ""); body != "2" {
		t.Fatalf("poll: %d %q", code, body)
	}
	if got := ts.rec.nextClose(t); got != "ping timeout" {
		t.Fatalf("close reason %q", got)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("timed out after %v", d)
	}
	if code, _ := ts.do(t, "GET", q, ""); code != 400 {
		t.Fatal("poll after timeout:", code)
	}
	ts.waitCount(t, 0)
}

// TestPingTimeoutExact: a poll at pingInterval+pingTimeout after the
// handshake finds the session closed, whatever the wheel's lateness.
func TestPingTimeoutExact(t *testing.T) {
	ts := startServer(t, Options{PingInterval: 300 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	for i := 0; i < 3; i++ {
		sid := ts.handshake(t, 4)
		time.Sleep(500 * time.Millisecond)
		if code, body := ts.do(t, "GET", "EIO=4&transport=polling&sid="+sid, ""); code != 400 {
			t.Fatalf("run %d: %d %q", i, code, body)
		}
	}
}

func TestDuplicatePollClosesSession(t *testing.T) {
	ts := startServer(t, Options{})
	sid := ts.handshake(t, 4)
	q := "EIO=4&transport=polling&sid=" + sid
	first := make(chan string)
	go func() { c, b := ts.do(t, "GET", q, ""); first <- fmt.Sprint(c, " ", b) }()
	time.Sleep(50 * time.Millisecond)
	if code, _ := ts.do(t, "GET", q, ""); code != 400 {
		t.Fatal("second GET:", code)
	}
	if got := <-first; got != "200 1" {
		t.Fatalf("first GET: %s", got)
	}
	if code, _ := ts.do(t, "GET", q, ""); code != 400 {
		t.Fatal("GET after:", code)
	}
	if r := ts.rec.nextClose(t); r != "transport error" {
		t.Fatal(r)
	}
}

func TestParseErrorClosesSession(t *testing.T) {
	ts := startServer(t, Options{AllowEIO3: true})
	for _, c := range []struct{ eio, body string }{{"4", "abc"}, {"4", "4a\x1e"}, {"3", "4hello"}, {"3", "9:4"}} {
		sid := ts.handshake(t, map[string]int{"3": 3, "4": 4}[c.eio])
		q := "EIO=" + c.eio + "&transport=polling&sid=" + sid
		if code, _ := ts.do(t, "POST", q, c.body); code != 400 {
			t.Fatalf("%q: %d", c.body, code)
		}
		if code, _ := ts.do(t, "GET", q, ""); code != 400 {
			t.Fatalf("GET after %q: %d", c.body, code)
		}
		if r := ts.rec.nextClose(t); r != "parse error" {
			t.Fatal(r)
		}
	}
	ts.waitCount(t, 0)
}

func TestOversizedBody(t *testing.T) {
	ts := startServer(t, Options{MaxPayload: 100})
	sid := ts.handshake(t, 4)
	q := "EIO=4&transport=polling&sid=" + sid
	if code, _ := ts.do(t, "POST", q, "4"+strings.Repeat("x", 100)); code != 413 {
		t.Fatal(code)
	}
	// The request is refused, not the session (as with Node): the next
	// POST that fits is taken.
	if code, _ := ts.do(t, "POST", q, "4fits"); code != 200 {
		t.Fatalf("POST after a 413: %d", code)
	}
	// A chunked body (no Content-Length) is bounded too.
	req, _ := http.NewRequest("POST", ts.url+"?EIO=4&transport=polling&sid="+sid, struct{ *strings.Reader }{strings.NewReader("4" + strings.Repeat("y", 1000))})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatal("chunked:", resp.StatusCode)
	}
	if code, _ := ts.do(t, "POST", q, "4fits"); code != 200 {
		t.Fatalf("POST after a chunked 413: %d", code)
	}
}

func TestHostileRequests(t *testing.T) {
	ts := startServer(t, Options{})
	for _, c := range []struct {
		method, query string
		code          int
	}{
		{"GET", "transport=polling", 400},
		{"GET", "EIO=abc&transport=polling", 400},
		{"GET", "EIO=5&transport=polling", 400},
		{"GET", "EIO=4", 400},
		{"GET", "EIO=4&transport=abc", 400},
		{"POST", "EIO=4&transport=polling", 400},
		{"PUT", "EIO=4&transport=polling", 400},
		{"GET", "EIO=4&transport=polling&sid=nope", 400},
		{"POST", "EIO=4&transport=polling&sid=nope", 400},
		{"GET", "EIO=4&transport=websocket&sid=nope", 400},
		{"GET", "EIO=4&transport=websocket", 400}, // not a WebSocket handshake
	} {
		if code, body := ts.do(t, c.method, c.query, "garbage"); code != c.code {
			t.Errorf("%s %s: %d %s", c.method, c.query, code, body)
		}
	}
	// A session of the other protocol version.
	sid := ts.handshake(t, 4)
	if code, _ := ts.do(t, "GET", "EIO=3&transport=polling&sid="+sid, ""); code != 400 {
		t.Error("EIO=3 poll of an EIO=4 session:", code)
	}
}

func TestCORS(t *testing.T) {
	ts := startServer(t, Options{})
	req, _ := http.NewRequest("OPTIONS", ts.url+"?EIO=4&transport=polling", nil)
	req.Header.Set("Origin", "https://chat.example")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "https://chat.example" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Allow-Headers") != "content-type" {
		t.Fatalf("%d %v", resp.StatusCode, h)
	}
	req, _ = http.NewRequest("GET", ts.url+"?EIO=4&transport=polling", nil)
	req.Header.Set("Origin", "https://chat.example")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://chat.example" {
		t.Fatal(resp.Header)
	}
}

// TestServerCloseAnswersPolls: Close on a polling session without a poll
// keeps what was queued for the next poll, answered at once with the close
// packet; a pending poll is answered at once.
func TestServerCloseAnswersPolls(t *testing.T) {
	ts := startServer(t, Options{})
	sid := ts.handshake(t, 4)
	s := ts.session(t)
	q := "EIO=4&transport=polling&sid=" + sid
	s.Send("bye")
	s.Close("kicked")
	if r := ts.rec.nextClose(t); r != "kicked" {
		t.Fatal(r)
	}
	start := time.Now()
	if code, body := ts.do(t, "GET", q, ""); code != 200 || body != "4bye\x1e1" {
		t.Fatalf("%d %q", code, body)
	}
	if time.Since(start) > time.Second {
		t.Fatal("poll of a closing session not answered at once")
	}
	ts.waitCount(t, 0)

	sid = ts.handshake(t, 4)
	s = ts.session(t)
	done := make(chan string)
	go func() { c, b := ts.do(t, "GET", "EIO=4&transport=polling&sid="+sid, ""); done <- fmt.Sprint(c, " ", b) }()
	time.Sleep(50 * time.Millisecond)
	s.Close("kicked")
	if got := <-done; got != "200 1" {
		t.Fatal(got)
	}
	ts.waitCount(t, 0)
}

// TestClientClose: a POST "1" ends the session; the client's poll, pending
// or arriving right after, gets a NOOP.
func TestClientClose(t *testing.T) {
	ts := startServer(t, Options{})
	sid := ts.handshake(t, 4)
	q := "EIO=4&transport=polling&sid=" + sid
	var wg sync.WaitGroup
	wg.Add(1)
	var got string
	go func() { defer wg.Done(); c, b := ts.do(t, "GET", q, ""); got = fmt.Sprint(c, " ", b) }()
	time.Sleep(30 * time.Millisecond)
	ts.do(t, "POST", q, "1")
	wg.Wait()
	if got != "200 6" {
		t.Fatal(got)
	}
	if code, _ := ts.do(t, "GET", q, ""); code != 400 {
		t.Fatal(code)
	}
	if r := ts.rec.nextClose(t); r != "transport close" {
		t.Fatal(r)
	}
	// POST first, poll after.
	sid = ts.handshake(t, 4)
	q = "EIO=4&transport=polling&sid=" + sid
	ts.do(t, "POST", q, "1")
	if code, body := ts.do(t, "GET", q, ""); code != 200 || body != "6" {
		t.Fatal(code, body)
	}
	ts.waitCount(t, 0)
}

// TestAbandonedSessionsEnd: sessions whose clients vanish are all gone
// after the heartbeat.
func TestAbandonedSessionsEnd(t *testing.T) {
	ts := startServer(t, Options{AllowEIO3: true, PingInterval: 50 * time.Millisecond, PingTimeout: 50 * time.Millisecond})
	for i := 0; i < 50; i++ {
		ts.handshake(t, 3+i%2)
	}
	if n := ts.Count(); n != 50 {
		t.Fatal(n)
	}
	ts.waitCount(t, 0)
}

// TestSlowBody: a POST whose body does not arrive within PollTimeout is
// refused and ends its session.
func TestSlowBody(t *testing.T) {
	ts := startServer(t, Options{PollTimeout: 200 * time.Millisecond})
	sid := ts.handshake(t, 4)
	host := strings.TrimPrefix(strings.TrimSuffix(ts.url, "/engine.io/"), "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /engine.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n4only part", sid, host)
	start := time.Now()
	if r := ts.rec.nextClose(t); r != "transport error" {
		t.Fatal(r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
	ts.waitCount(t, 0)
}

func TestServerClose(t *testing.T) {
	ts := startServer(t, Options{})
	ts.handshake(t, 4)
	c := dialWS(t, ts, "EIO=4&transport=websocket")
	c.readText(t, false)
	ts.session(t)
	ts.session(t)
	ts.Close()
	for i := 0; i < 2; i++ {
		if r := ts.rec.nextClose(t); r != "server shutting down" {
			t.Fatal(r)
		}
	}
	if n := ts.Count(); n != 0 {
		t.Fatal(n)
	}
	if code, _ := ts.do(t, "GET", "EIO=4&transport=polling", ""); code != 503 {
		t.Fatal("handshake after Close:", code)
	}
}

// TestPollBatch: while packets keep coming, a polling session gets at most
// one answer per PollBatch, carrying everything queued meanwhile; a poll
// after a quiet spell is answered at once.
func TestPollBatch(t *testing.T) {
	const batch = 200 * time.Millisecond
	ts := startServer(t, Options{PollBatch: batch})
	sid := ts.handshake(t, 4)
	s := ts.session(t)
	q := "EIO=4&transport=polling&sid=" + sid

	s.Send("first")
	start := time.Now()
	if _, body := ts.do(t, "GET", q, ""); body != "4first" {
		t.Fatalf("first poll: %q", body)
	}
	if d := time.Since(start); d > batch/2 {
		t.Errorf("the first answer took %s: a quiet session's poll must be answered at once", d)
	}
	answered := time.Now()
	go func() {
		for i := range 5 {
			s.Send(fmt.Sprint("m", i))
			time.Sleep(10 * time.Millisecond)
		}
	}()
	_, body := ts.do(t, "GET", q, "")
	if d := time.Since(answered); d < batch-20*time.Millisecond {
		t.Errorf("second answer %s after the first, want about %s", d, batch)
	}
	if want := "4m0\x1e4m1\x1e4m2\x1e4m3\x1e4m4"; body != want {
		t.Errorf("second answer %q, want all five packets in one: %q", body, want)
	}

	time.Sleep(batch + 50*time.Millisecond) // quiet
	s.Send("after a pause")
	start = time.Now()
	if _, body := ts.do(t, "GET", q, ""); body != "4after a pause" {
		t.Fatalf("poll after a pause: %q", body)
	}
	if d := time.Since(start); d > batch/2 {
		t.Errorf("after a quiet spell the answer took %s, want at once", d)
	}
}

// TestPollBatchNeverHoldsPing: a ping that comes while messages are being
// batched goes out at once, with them; held for PollBatch it would eat the
// client's PingTimeout (with a batch longer than the timeout, every client
// in a busy room would be dropped).
func TestPollBatchNeverHoldsPing(t *testing.T) {
	const batch = 2 * time.Second
	ts := startServer(t, Options{PollBatch: batch, PingInterval: 300 * time.Millisecond, PingTimeout: time.Second})
	sid := ts.handshake(t, 4)
	s := ts.session(t)
	q := "EIO=4&transport=polling&sid=" + sid

	s.Send("first")
	if _, body := ts.do(t, "GET", q, ""); body != "4first" {
		t.Fatalf("first poll: %q", body)
	}
	s.Send("second") // held: the last answer went out just now
	start := time.Now()
	_, body := ts.do(t, "GET", q, "")
	if want := "4second\x1e2"; body != want {
		t.Fatalf("answer %q, want the held message and the ping: %q", body, want)
	}
	if d := time.Since(start); d > batch/2 {
		t.Errorf("the ping's answer took %s, want about PingInterval, not PollBatch", d)
	}
	if code, _ := ts.do(t, "POST", q, "3"); code != 200 {
		t.Fatalf("pong refused: %d", code)
	}
	select {
	case reason := <-ts.rec.closed:
		t.Fatalf("session closed (%s) although the pong came in time", reason)
	case <-time.After(200 * time.Millisecond):
	}
}
