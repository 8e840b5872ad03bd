package hostile

// The harness: the chat server as a separate process, its metrics and
// memory, a well-behaved client that keeps chatting and measures its
// latency, and a raw Socket.IO client that can send anything.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatd/chat/internal/sioclient"
	"github.com/chatd/chat/internal/testproc"
	"github.com/gorilla/websocket"
)

// ---------------------------------------------------------------------------
// The server process.

type chatd struct {
	t    *testing.T
	cmd  *exec.Cmd
	pid  int
	port int
	base string // http://127.0.0.1:port
	logs *testproc.Log
	done chan struct{} // closed when the process has exited

	// http is the client for /metrics and /healthz. Keep-alives are off so
	// that no idle connection of ours holds a server goroutine.
	http *http.Client
}

// buildServer compiles the chat server into dir (testproc.BuildChatd).
func buildServer(t *testing.T, dir string) string {
	t.Helper()
	bin, err := testproc.BuildChatd(dir)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startChatd runs the server on a free loopback port with the embedded
// SQLite store in dir. Its environment is built from scratch, so that no
// variable of the caller's (MAX_CONNS_PER_IP, DATABASE_URL…) changes the
// limits under test.
func startChatd(t *testing.T, bin, dir string, extraEnv ...string) *chatd {
	t.Helper()
	port := testproc.FreePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"PORT=" + strconv.Itoa(port),
		"ADDR=127.0.0.1",
		"SQLITE_PATH=" + filepath.Join(dir, "chat.db"),
		"BCRYPT_COST=4",
		"LOG_LEVEL=info",
		// The attackers' addresses 127.0.0.2-10 stand for clients on
		// the internet, each its own address, not for proxies: by
		// default all of 127.0.0.0/8 is a trusted proxy, and clients
		// of a proxy that names none share no per-address limit.
		"TRUSTED_PROXIES=127.0.0.1",
	}, extraEnv...)
	logs := &testproc.Log{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &chatd{
		t: t, cmd: cmd, pid: cmd.Process.Pid, port: port, logs: logs,
		base: fmt.Sprintf("http://127.0.0.1:%d", port),
		done: make(chan struct{}),
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !s.running() {
			t.Fatalf("chatd exited during start-up:\n%s", logs.String())
		}
		if s.healthy() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("chatd not healthy within 30 s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server: SIGTERM, then SIGKILL if it has not exited in 10 s.
func (s *chatd) stop() {
	if !s.running() {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("chatd ignored SIGTERM for 10 s; killing it")
		s.cmd.Process.Kill()
		<-s.done
	}
}

// running reports whether the process started by the test is still the one
// alive: it has not exited (so it cannot have been restarted), and its PID
// answers signal 0.
func (s *chatd) running() bool {
	select {
	case <-s.done:
		return false
	default:
	}
	return syscall.Kill(s.pid, 0) == nil
}

func (s *chatd) healthy() bool {
	resp, err := s.http.Get(s.base + "/healthz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && strings.TrimSpace(string(b)) == "ok"
}

// metrics scrapes /metrics into name{labels} → value.
func (s *chatd) metrics() (map[string]float64, error) {
	resp, err := s.http.Get(s.base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

func (s *chatd) metric(name string) float64 {
	m, err := s.metrics()
	if err != nil {
		s.t.Errorf("scraping /metrics: %v", err)
		return -1
	}
	v, ok := m[name]
	if !ok {
		s.t.Errorf("/metrics has no %s", name)
		return -1
	}
	return v
}

func (s *chatd) goroutines() int { return int(s.metric("go_goroutines")) }

// procStatus reads a "kB" field (VmRSS, VmHWM) of /proc/<pid>/status, in
// bytes.
func (s *chatd) procStatus(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}

func (s *chatd) rss() int64 { return s.procStatus("VmRSS") }

// resetPeakRSS makes VmHWM start again from the current RSS (Linux ≥ 4.0),
// reporting whether it could.
func (s *chatd) resetPeakRSS() bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid), []byte("5"), 0) == nil
}

// rssSampler records the highest RSS seen every 5 ms until stopped: a
// second view of a peak next to VmHWM, which not every kernel lets us reset.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func (s *chatd) sampleRSS() *rssSampler {
	r := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	r.peak.Store(s.rss())
	go func() {
		defer close(r.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
				if v := s.rss(); v > r.peak.Load() {
					r.peak.Store(v)
				}
			}
		}
	}()
	return r
}

func (r *rssSampler) finish() int64 {
	close(r.stop)
	<-r.done
	return r.peak.Load()
}

// ---------------------------------------------------------------------------
// The well-behaved client.

// phase indexes the latency samples by attack.
type sample struct {
	phase int
	d     time.Duration
}

// chatter is a registered, logged-in user who sends a message every 100 ms
// during every attack and times the acknowledgement and the return of its
// own `new message`. If the server drops it, it notes it and reconnects.
type chatter struct {
	base, user, password string

	phase atomic.Int32

	mu      sync.Mutex
	conn    *sioclient.Conn
	connID  *int               // identifies conn to its OnClose
	tokens  []string           // every session token it was given
	drops   []drop             // every time the server dropped it
	closing bool               // finish has begun: a close is ours
	sent    map[string]sentMsg // text → when and in which phase
	acks    []sample
	echoes  []sample
	failed  map[int][]string // phase → what went wrong
	skipped map[int]int      // phase → ticks skipped because too many sends were in flight
	others  map[string]int   // user → `new message` from other users received

	stop    chan struct{}
	stopped chan struct{}
	wg      sync.WaitGroup // in-flight sends

	lastEvent time.Time // when the server last sent an event
}

// drop is the server closing the well-behaved client's connection.
type drop struct {
	at        time.Time
	phase     int
	sinceLast time.Duration // since the last event the server had sent it
	err       error
}

type sentMsg struct {
	at    time.Time
	phase int
	echo  bool
}

const chatEvery = 100 * time.Millisecond

// maxInFlight bounds the sends awaiting their acknowledgement; beyond it a
// tick is skipped (and counted), so a hung server cannot make the chatter
// pile up goroutines.
const maxInFlight = 50

func newChatter(t *testing.T, base, user, password string) *chatter {
	t.Helper()
	c := &chatter{
		base: base, user: user, password: password,
		sent: map[string]sentMsg{}, failed: map[int][]string{},
		skipped: map[int]int{}, others: map[string]int{},
		stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	if err := c.connect(true); err != nil {
		t.Fatalf("well-behaved client: %v", err)
	}
	go c.run()
	return c
}

// connect dials, registers the first time, and logs in.
func (c *chatter) connect(register bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id := new(int)
	conn, err := sioclient.Dial(ctx, c.base, sioclient.Options{OnEvent: c.onEvent, OnClose: func(err error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closing && c.connID == id {
			c.drops = append(c.drops, drop{at: time.Now(), phase: int(c.phase.Load()), sinceLast: time.Since(c.lastEvent), err: err})
		}
	}})
	if err != nil {
		return err
	}
	creds := map[string]any{"username": c.user, "password": c.password}
	if register {
		if a, err := conn.Call(ctx, "register", creds); err != nil || !success(a) {
			conn.Close()
			return fmt.Errorf("register: %v %v", a, err)
		}
	}
	a, err := conn.Call(ctx, "login", creds)
	token, _ := ackField(a, "token").(string)
	if err != nil || !success(a) || token == "" {
		conn.Close()
		return fmt.Errorf("login: %v %v", a, err)
	}
	c.mu.Lock()
	c.conn, c.connID = conn, id
	c.tokens = append(c.tokens, token)
	c.mu.Unlock()
	return nil
}

func (c *chatter) current() *sioclient.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

func (c *chatter) onEvent(name string, args []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastEvent = time.Now()
	if name != "new message" || len(args) == 0 {
		return
	}
	m, _ := args[0].(map[string]any)
	user, _ := m["user"].(string)
	text, _ := m["msg"].(string)
	if user != c.user {
		c.others[user]++
		return
	}
	s, ok := c.sent[text]
	if !ok || s.echo {
		c.failed[s.phase] = append(c.failed[s.phase], fmt.Sprintf("unexpected or repeated echo %q", text))
		return
	}
	s.echo = true
	c.sent[text] = s
	c.echoes = append(c.echoes, sample{s.phase, time.Since(s.at)})
}

func (c *chatter) run() {
	defer close(c.stopped)
	tick := time.NewTicker(chatEvery)
	defer tick.Stop()
	var inFlight atomic.Int32
	for n := 0; ; n++ {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		phase := int(c.phase.Load())
		conn := c.current()
		select {
		case <-conn.Done():
			// Dropped (noted by OnClose): back, as a user would be.
			if err := c.connect(false); err != nil {
				c.mu.Lock()
				c.failed[phase] = append(c.failed[phase], "reconnecting: "+err.Error())
				c.mu.Unlock()
			}
			continue
		default:
		}
		if inFlight.Load() >= maxInFlight {
			c.mu.Lock()
			c.skipped[phase]++
			c.mu.Unlock()
			continue
		}
		text := fmt.Sprintf("%s says %d", c.user, n)
		start := time.Now()
		c.mu.Lock()
		c.sent[text] = sentMsg{at: start, phase: phase}
		c.mu.Unlock()
		inFlight.Add(1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer inFlight.Add(-1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a, err := conn.Call(ctx, "send message", text)
			d := time.Since(start)
			c.mu.Lock()
			defer c.mu.Unlock()
			if err != nil || !success(a) {
				c.failed[phase] = append(c.failed[phase], fmt.Sprintf("send %q: ack %v, err %v", text, a, err))
				return
			}
			c.acks = append(c.acks, sample{phase, d})
		}()
	}
}

// finish stops sending, waits (bounded) for the last acknowledgements and
// echoes, and closes the connection.
func (c *chatter) finish() {
	close(c.stop)
	<-c.stopped
	c.wg.Wait() // each send is bounded by its 10 s context
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && c.missingEchoes() > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	c.mu.Lock()
	c.closing = true
	conn := c.conn
	c.mu.Unlock()
	conn.Close()
}

func (c *chatter) missingEchoes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.sent {
		if !s.echo {
			n++
		}
	}
	return n
}

// stats returns the p50 and p99 of acknowledgement and echo latency in a
// phase, the number of sends, and what went wrong.
func (c *chatter) stats(phase int) (ack, echo [2]time.Duration, sent int, failed []string, skipped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pick := func(ss []sample) [2]time.Duration {
		var ds []time.Duration
		for _, s := range ss {
			if s.phase == phase {
				ds = append(ds, s.d)
			}
		}
		return [2]time.Duration{percentile(ds, 50), percentile(ds, 99)}
	}
	for _, s := range c.sent {
		if s.phase == phase {
			sent++
			if !s.echo {
				failed = append(failed, fmt.Sprintf("message sent at %s never came back", s.at.Format("15:04:05.000")))
			}
		}
	}
	return pick(c.acks), pick(c.echoes), sent, append(failed, c.failed[phase]...), c.skipped[phase]
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := (len(ds)*p + 99) / 100 // nearest rank
	return ds[max(i-1, 0)]
}

// ---------------------------------------------------------------------------
// Acknowledgements.

func success(a []any) bool {
	return ackField(a, "success") == true
}

func ackField(a []any, key string) any {
	if len(a) == 0 {
		return nil
	}
	m, _ := a[0].(map[string]any)
	return m[key]
}

// ---------------------------------------------------------------------------
// The raw client: Engine.IO v4 over WebSocket, by hand.

type dialOpts struct {
	local   string // source address, 127.0.0.x; empty for any
	connect bool   // send the Socket.IO CONNECT and wait for its answer
}

// rawConn is one WebSocket connection to /socket.io/. Without start it
// reads nothing: the peer stays silent, its pings unanswered.
type rawConn struct {
	ws  *websocket.Conn
	sid string // Socket.IO session id after CONNECT

	wmu sync.Mutex

	mu      sync.Mutex
	waiters map[uint64]chan string // ack id → ack payload
	acks    map[string]int         // acks nobody waited for, by their message (or success)
	frames  []string               // the first frames received, for reports
	err     error                  // why reading stopped

	done chan struct{}
}

var errDialRefused = errors.New("socket.io connect refused")

func dialRaw(ctx context.Context, base string, o dialOpts) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	u.Scheme = "ws"
	u.Path = "/socket.io/"
	u.RawQuery = "EIO=4&transport=websocket"
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if o.local != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.local)}
	}
	d := websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 10 * time.Second,
		ReadBufferSize: 4096, WriteBufferSize: 4096}
	ws, _, err := d.DialContext(ctx, u.String(), nil)
	if err != nil {
		return nil, err
	}
	c := &rawConn{ws: ws, waiters: map[uint64]chan string{}, acks: map[string]int{}}
	if dl, ok := ctx.Deadline(); ok {
		ws.SetReadDeadline(dl)
	}
	_, open, err := ws.ReadMessage()
	if err != nil || len(open) == 0 || open[0] != '0' {
		ws.Close()
		return nil, fmt.Errorf("engine.io open: %q %v", open, err)
	}
	if o.connect {
		if err := c.send("40"); err != nil {
			ws.Close()
			return nil, err
		}
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				ws.Close()
				return nil, fmt.Errorf("socket.io connect: %w", err)
			}
			s := string(msg)
			if s == "2" {
				c.send("3")
				continue
			}
			if strings.HasPrefix(s, "40") {
				var ok struct{ SID string }
				json.Unmarshal(msg[2:], &ok)
				c.sid = ok.SID
				break
			}
			ws.Close()
			if strings.HasPrefix(s, "44") {
				return nil, fmt.Errorf("%w: %s", errDialRefused, s)
			}
			return nil, fmt.Errorf("socket.io connect: unexpected %.60q", s)
		}
	}
	ws.SetReadDeadline(time.Time{})
	return c, nil
}

func (c *rawConn) send(frame string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, []byte(frame))
}

// sendAll writes text frames back to back in one write(2), so that the
// server reads them all at once, as fast as it can decode them.
func (c *rawConn) sendAll(frames []string) error {
	var buf bytes.Buffer
	for _, f := range frames {
		if err := writeFrame(&buf, websocket.TextMessage, true, []byte(f)); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	conn := c.ws.UnderlyingConn()
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := conn.Write(buf.Bytes())
	return err
}

func (c *rawConn) sendBinary(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// start reads in the background: answers pings, hands acks to their
// waiters and counts the rest by answer.
func (c *rawConn) start() {
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		for {
			_, msg, err := c.ws.ReadMessage()
			if err != nil {
				c.mu.Lock()
				c.err = err
				c.mu.Unlock()
				return
			}
			s := string(msg)
			c.mu.Lock()
			if len(c.frames) < 20 {
				c.frames = append(c.frames, clip(s, 120))
			}
			c.mu.Unlock()
			switch {
			case s == "2":
				c.send("3")
			case strings.HasPrefix(s, "43"):
				c.onAck(s[2:])
			}
		}
	}()
}

func (c *rawConn) onAck(s string) {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	id, err := strconv.ParseUint(s[:n], 10, 64)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.waiters[id]; err == nil && ch != nil {
		delete(c.waiters, id)
		ch <- s[n:]
		return
	}
	var a []any
	json.Unmarshal([]byte(s[n:]), &a)
	key := fmt.Sprint(ackField(a, "message"))
	if success(a) {
		key = "success"
	}
	c.acks[key]++
}

// call sends `42<id>[event, args...]` and waits for its ack. It returns
// the ack's JSON, or an error if the connection ends or timeout passes.
func (c *rawConn) call(id uint64, timeout time.Duration, event string, args ...any) (string, error) {
	b, err := json.Marshal(append([]any{event}, args...))
	if err != nil {
		return "", err
	}
	return c.callRaw(id, timeout, "42"+strconv.FormatUint(id, 10)+string(b))
}

// callRaw sends frame, which must ask for ack id, and waits for that ack.
func (c *rawConn) callRaw(id uint64, timeout time.Duration, frame string) (string, error) {
	return c.await(id, timeout, func() error { return c.send(frame) })
}

// callBinary sends a binary frame, the last attachment of an event that
// asked for ack id, and waits for that ack.
func (c *rawConn) callBinary(id uint64, timeout time.Duration, b []byte) (string, error) {
	return c.await(id, timeout, func() error { return c.sendBinary(b) })
}

func (c *rawConn) await(id uint64, timeout time.Duration, send func() error) (string, error) {
	ch := make(chan string, 1)
	c.mu.Lock()
	c.waiters[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, id)
		c.mu.Unlock()
	}()
	if err := send(); err != nil {
		return "", err
	}
	select {
	case a := <-ch:
		return a, nil
	case <-c.done:
		return "", fmt.Errorf("closed: %v", c.readErr())
	case <-time.After(timeout):
		return "", errHung
	}
}

var errHung = errors.New("no answer and not closed")

func (c *rawConn) readErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *rawConn) ackCounts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps(c.acks)
}

func (c *rawConn) close() {
	c.ws.Close()
	if c.done != nil {
		<-c.done
	}
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:n], len(s))
}

// ---------------------------------------------------------------------------
// Raw HTTP, for requests net/http would not send or whose answer it might
// lose: a body the server refuses while we are still writing it.

// rawPost sends a POST of size bytes of filler (after prefix) to path and
// returns the response status. With chunked, no Content-Length is sent.
// The body is written concurrently with reading the answer, since the
// server may answer, and close, before reading it.
func rawPost(addr, path, prefix string, size int, chunked bool) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	hdr := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: text/plain;charset=UTF-8\r\n"
	if chunked {
		hdr += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		hdr += "Content-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	}
	wrote := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		w.WriteString(hdr)
		chunk := []byte(strings.Repeat("x", 64<<10))
		left := size
		var first []byte
		if prefix != "" {
			first = []byte(prefix)
		}
		var err error
		for left > 0 && err == nil {
			b := chunk
			if first != nil {
				b, first = first, nil
			}
			b = b[:min(len(b), left)]
			if chunked {
				_, err = fmt.Fprintf(w, "%x\r\n%s\r\n", len(b), b)
			} else {
				_, err = w.Write(b)
			}
			left -= len(b)
		}
		if err == nil && chunked {
			_, err = w.WriteString("0\r\n\r\n")
		}
		if err == nil {
			err = w.Flush()
		}
		wrote <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		<-wrote
		return 0, err
	}
	resp.Body.Close()
	conn.Close() // ends the writer if the server stopped reading
	<-wrote
	return resp.StatusCode, nil
}

// pollOpen starts an Engine.IO long-polling session and returns its sid.
func pollOpen(hc *http.Client, base string) (string, error) {
	resp, err := hc.Get(base + "/socket.io/?EIO=4&transport=polling")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || len(b) == 0 || b[0] != '0' {
		return "", fmt.Errorf("polling handshake: %s %q", resp.Status, clip(string(b), 100))
	}
	var open struct{ SID string }
	if err := json.Unmarshal(b[1:], &open); err != nil || open.SID == "" {
		return "", fmt.Errorf("polling handshake %q: %v", b, err)
	}
	return open.SID, nil
}

// pollOpenEIO3 opens a long-polling session as socket.io-client 2.x does
// and returns its id. The answer is a v3 payload, `<length>:0{"sid":…}`.
func pollOpenEIO3(hc *http.Client, base string) (string, error) {
	resp, err := hc.Get(base + "/socket.io/?EIO=3&transport=polling")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`^\d+:0\{.*?"sid":"([^"]+)"`).FindSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		return "", fmt.Errorf("EIO=3 polling handshake: %s %q", resp.Status, clip(string(b), 100))
	}
	return string(m[1]), nil
}

func pollPost(hc *http.Client, base, sid, body string) (int, string, error) {
	resp, err := hc.Post(base+"/socket.io/?EIO=4&transport=polling&sid="+url.QueryEscape(sid),
		"text/plain;charset=UTF-8", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), nil
}

func pollGet(hc *http.Client, base, sid string) (int, string, error) {
	resp, err := hc.Get(base + "/socket.io/?EIO=4&transport=polling&sid=" + url.QueryEscape(sid))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

// collectGarbage makes the server run n garbage collections, by the only
// means a client has: making it allocate. Scraping /metrics allocates and
// has no other effect. Without this, a server that has gone quiet after an
// attack collects only at the runtime's forced GC, every two minutes, and
// until then its RSS still holds what the attack left as garbage. It
// returns the heap still allocated after the last collection (the live
// heap, plus what was allocated since), and how many scrapes it took.
func (s *chatd) collectGarbage(n int, limit time.Duration) (liveHeap int64, scrapes int, err error) {
	m, err := s.metrics()
	if err != nil {
		return -1, 0, err
	}
	target := m["go_gc_duration_seconds_count"] + float64(n)
	// Keep-alive for speed; closed at the end so no idle connection of
	// ours holds a server goroutine.
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for range 50 {
			resp, err := hc.Get(s.base + "/metrics")
			if err != nil {
				return -1, scrapes, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			scrapes++
		}
		m, err := s.metrics()
		if err != nil {
			return -1, scrapes, err
		}
		if m["go_gc_duration_seconds_count"] >= target {
			return int64(m["go_memstats_heap_alloc_bytes"]), scrapes, nil
		}
	}
	return -1, scrapes, fmt.Errorf("%d collections not done after %d scrapes in %s", n, scrapes, limit)
}

// writeFrame writes one client WebSocket frame by hand: opcode op, FIN as
// given, masked with the all-zero key (so the payload goes out as is, with
// no per-byte work on our side).
func writeFrame(w io.Writer, op byte, fin bool, payload []byte) error {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	hdr := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n < 1<<16:
		hdr = append(hdr, 0x80|126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 0x80|127)
		for i := 7; i >= 0; i-- {
			hdr = append(hdr, byte(uint64(n)>>(8*i)))
		}
	}
	hdr = append(hdr, 0, 0, 0, 0) // mask key
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// ponger sends an unsolicited Engine.IO PONG every 2 s on each connection
// it holds, from one goroutine. The server takes any PONG as a sign of
// life and postpones its next PING, so these connections stay up without
// reading anything: a client that is alive but never listens.
type ponger struct {
	mu    sync.Mutex
	conns []*rawConn
	stop  chan struct{}
	done  chan struct{}
}

func newPonger() *ponger {
	p := &ponger{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.mu.Lock()
			conns := slices.Clone(p.conns)
			p.mu.Unlock()
			for _, c := range conns {
				// A hand-written frame on the raw connection: a failed
				// gorilla write would leave the connection unusable.
				c.wmu.Lock()
				nc := c.ws.NetConn()
				nc.SetWriteDeadline(time.Now().Add(time.Second))
				writeFrame(nc, websocket.TextMessage, true, []byte("3"))
				c.wmu.Unlock()
			}
		}
	}()
	return p
}

func (p *ponger) add(c *rawConn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *ponger) close() {
	close(p.stop)
	<-p.done
}

// observer is an idle, healthy client: it answers every PING at once and
// notes when, so that if the server drops it the report can say whether
// it had answered.
type observer struct {
	rc *rawConn

	mu     sync.Mutex
	events []string // the last few pings, pongs and the close
	closed bool

	done chan struct{}
}

func newObserver(ctx context.Context, base, local string) (*observer, error) {
	rc, err := dialRaw(ctx, base, dialOpts{local: local, connect: true})
	if err != nil {
		return nil, err
	}
	o := &observer{rc: rc, done: make(chan struct{})}
	note := func(s string) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.events = append(o.events, fmt.Sprintf("%s %s", time.Now().Format("15:04:05.000"), s))
		if len(o.events) > 6 {
			o.events = o.events[1:]
		}
	}
	go func() {
		defer close(o.done)
		for {
			_, msg, err := rc.ws.ReadMessage()
			if err != nil {
				o.mu.Lock()
				o.closed = true
				o.mu.Unlock()
				note("closed by the server: " + err.Error())
				return
			}
			if len(msg) == 1 && msg[0] == '2' {
				note("PING received")
				err := rc.send("3")
				note(fmt.Sprintf("PONG sent (err %v)", err))
			}
		}
	}()
	return o, nil
}

// dropped returns what happened last if the server closed the connection.
func (o *observer) dropped() (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.events, " | "), o.closed
}

func (o *observer) close() {
	o.rc.ws.Close()
	<-o.done
}
